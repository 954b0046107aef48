/**
 * RPC requests (MS-TDS 2.2.6.6) as tedious's `execSql` sends them: ALL_HEADERS,
 * the special procedure id 10 (sp_executesql), then parameters. Only the types
 * the applier binds are understood: NVARCHAR (short or PLP `max`) and INTN.
 */
import { readUcs2 } from './packets.js';

export const SP_EXECUTESQL = 10;

export type RpcValue = string | number | null;

export interface RpcParameter {
  name: string;
  type: 'nvarchar' | 'int';
  value: RpcValue;
}

export interface RpcCall {
  procId: number | undefined;
  procName: string | undefined;
  parameters: RpcParameter[];
}

/** A parameter of a type the fake does not implement (the server would answer error 8009-ish). */
export class RpcTypeError extends Error {}

const NVARCHAR = 0xe7;
const INTN = 0x26;
const PLP_NULL = 0xffffffffffffffffn;

class Cursor {
  constructor(readonly buffer: Buffer, public offset = 0) {}
  need(bytes: number): void {
    if (this.offset + bytes > this.buffer.length) throw new Error('RPC request is truncated');
  }
  u8(): number {
    this.need(1);
    return this.buffer.readUInt8(this.offset++);
  }
  u16(): number {
    this.need(2);
    const value = this.buffer.readUInt16LE(this.offset);
    this.offset += 2;
    return value;
  }
  u32(): number {
    this.need(4);
    const value = this.buffer.readUInt32LE(this.offset);
    this.offset += 4;
    return value;
  }
  u64(): bigint {
    this.need(8);
    const value = this.buffer.readBigUInt64LE(this.offset);
    this.offset += 8;
    return value;
  }
  bytes(length: number): Buffer {
    this.need(length);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
  ucs2(chars: number): string {
    const value = readUcs2(this.buffer, this.offset, chars);
    this.offset += chars * 2;
    return value;
  }
  get done(): boolean {
    return this.offset >= this.buffer.length;
  }
}

/** Skips ALL_HEADERS (its first DWORD is its own total length). Shared with SQL batches. */
export function skipAllHeaders(payload: Buffer): number {
  if (payload.length < 4) throw new Error('request has no ALL_HEADERS');
  const total = payload.readUInt32LE(0);
  if (total < 4 || total > payload.length) throw new Error('ALL_HEADERS length is inconsistent');
  return total;
}

export function parseRpc(payload: Buffer): RpcCall {
  const cursor = new Cursor(payload, skipAllHeaders(payload));
  const nameLength = cursor.u16();
  let procId: number | undefined;
  let procName: string | undefined;
  if (nameLength === 0xffff) procId = cursor.u16();
  else procName = cursor.ucs2(nameLength);
  cursor.u16(); // option flags
  const parameters: RpcParameter[] = [];
  while (!cursor.done) parameters.push(readParameter(cursor));
  return { procId, procName, parameters };
}

function readParameter(cursor: Cursor): RpcParameter {
  const name = cursor.ucs2(cursor.u8());
  cursor.u8(); // status flags (BY_REF_VALUE for OUTPUT parameters)
  const type = cursor.u8();
  if (type === INTN) {
    const max = cursor.u8();
    const length = cursor.u8();
    if (length === 0) return { name, type: 'int', value: null };
    if (length !== 4 || max !== 4) throw new RpcTypeError(`INTN of ${length} bytes`);
    return { name, type: 'int', value: cursor.bytes(4).readInt32LE(0) };
  }
  if (type !== NVARCHAR) throw new RpcTypeError(`data type 0x${type.toString(16)}`);
  const maxLength = cursor.u16();
  cursor.bytes(5); // collation
  if (maxLength !== 0xffff) {
    const length = cursor.u16();
    if (length === 0xffff) return { name, type: 'nvarchar', value: null };
    if (length > maxLength || length % 2 !== 0) throw new Error('NVARCHAR value longer than its declared size');
    return { name, type: 'nvarchar', value: cursor.ucs2(length / 2) };
  }
  const total = cursor.u64();
  if (total === PLP_NULL) return { name, type: 'nvarchar', value: null };
  const chunks: Buffer[] = [];
  for (let chunk = cursor.u32(); chunk !== 0; chunk = cursor.u32()) chunks.push(cursor.bytes(chunk));
  return { name, type: 'nvarchar', value: Buffer.concat(chunks).toString('ucs2') };
}
