/**
 * The server's token stream (MS-TDS 2.2.7), as tedious 19 parses it: LOGINACK,
 * ENVCHANGE, ERROR, COLMETADATA + ROW (NVARCHAR and INTN columns only),
 * RETURNSTATUS and the three DONE tokens with a 64-bit row count (TDS ≥ 7.2).
 */

const TOKEN = {
  COLMETADATA: 0x81,
  RETURNSTATUS: 0x79,
  ERROR: 0xaa,
  LOGINACK: 0xad,
  ROW: 0xd1,
  ENVCHANGE: 0xe3,
  DONE: 0xfd,
  DONEPROC: 0xfe,
  DONEINPROC: 0xff,
} as const;

export const DONE_STATUS = { FINAL: 0x00, MORE: 0x01, ERROR: 0x02, COUNT: 0x10, ATTN: 0x20 } as const;

/** Current-command codes in DONE tokens. */
export const CUR_CMD = { SELECT: 0xc1, EXECUTE: 0xe0, NONE: 0x00 } as const;

/** TDS 7.4 as LOGINACK carries it (big-endian). */
export const TDS_7_4 = 0x74000004;

/** SQL_Latin1_General_CP1_CI_AS: LCID 0x0409, flags 0xD0 (ignore case, accents…), sort id 52. */
export const COLLATION = Buffer.from([0x09, 0x04, 0xd0, 0x00, 0x34]);

export type ColumnType = 'nvarchar' | 'int';
export interface Column {
  name: string;
  type: ColumnType;
}
export type Value = string | number | null;

const NVARCHAR = 0xe7;
const INTN = 0x26;
const NULLABLE = 0x0001;

function bVarChar(text: string): Buffer {
  const body = Buffer.from(text, 'ucs2');
  return Buffer.concat([Buffer.from([text.length]), body]);
}

function usVarChar(text: string): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16LE(text.length);
  return Buffer.concat([head, Buffer.from(text, 'ucs2')]);
}

function withLength(token: number, body: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head.writeUInt8(token, 0);
  head.writeUInt16LE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** Builds one response message's token stream. */
export class TokenStream {
  private readonly parts: Buffer[] = [];

  loginAck(progName: string, version: [number, number, number]): this {
    const fixed = Buffer.alloc(5);
    fixed.writeUInt8(1, 0); // interface: SQL_TSQL
    fixed.writeUInt32BE(TDS_7_4, 1);
    const [major, minor, build] = version;
    const progVersion = Buffer.from([major, minor, (build >> 8) & 0xff, build & 0xff]);
    this.parts.push(withLength(TOKEN.LOGINACK, Buffer.concat([fixed, bVarChar(progName), progVersion])));
    return this;
  }

  /** ENVCHANGE with B_VARCHAR values: 1 database, 2 language, 4 packet size. */
  envChange(type: 1 | 2 | 4, newValue: string, oldValue: string): this {
    this.parts.push(withLength(TOKEN.ENVCHANGE, Buffer.concat([Buffer.from([type]), bVarChar(newValue), bVarChar(oldValue)])));
    return this;
  }

  /** ENVCHANGE 7: the SQL collation tedious uses for (VAR)CHAR parameters. */
  collation(): this {
    this.parts.push(withLength(TOKEN.ENVCHANGE, Buffer.concat([Buffer.from([7, COLLATION.length]), COLLATION, Buffer.from([0])])));
    return this;
  }

  error(number: number, message: string, options: { state?: number; severity?: number; procName?: string } = {}): this {
    const fixed = Buffer.alloc(6);
    fixed.writeUInt32LE(number, 0);
    fixed.writeUInt8(options.state ?? 1, 4);
    fixed.writeUInt8(options.severity ?? 16, 5);
    const line = Buffer.alloc(4);
    line.writeUInt32LE(1);
    this.parts.push(withLength(TOKEN.ERROR, Buffer.concat([fixed, usVarChar(message), bVarChar('sikker-fake-tds'), bVarChar(options.procName ?? ''), line])));
    return this;
  }

  resultSet(columns: readonly Column[], rows: readonly (readonly Value[])[]): this {
    const head = Buffer.alloc(3);
    head.writeUInt8(TOKEN.COLMETADATA, 0);
    head.writeUInt16LE(columns.length, 1);
    this.parts.push(head, ...columns.map(columnMetadata));
    for (const row of rows) {
      this.parts.push(Buffer.from([TOKEN.ROW]), ...columns.map((column, i) => columnValue(column, row[i] ?? null)));
    }
    return this;
  }

  returnStatus(value: number): this {
    const body = Buffer.alloc(5);
    body.writeUInt8(TOKEN.RETURNSTATUS, 0);
    body.writeInt32LE(value, 1);
    this.parts.push(body);
    return this;
  }

  done(kind: 'DONE' | 'DONEPROC' | 'DONEINPROC', status: number, curCmd: number, rowCount = 0): this {
    const body = Buffer.alloc(13);
    body.writeUInt8(TOKEN[kind], 0);
    body.writeUInt16LE(status, 1);
    body.writeUInt16LE(curCmd, 3);
    body.writeBigUInt64LE(BigInt(rowCount), 5);
    this.parts.push(body);
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function columnMetadata(column: Column): Buffer {
  const fixed = Buffer.alloc(6);
  fixed.writeUInt32LE(0, 0); // user type
  fixed.writeUInt16LE(NULLABLE, 4);
  const typeInfo = column.type === 'int'
    ? Buffer.from([INTN, 4])
    : Buffer.concat([Buffer.from([NVARCHAR, 0x00, 0x01]), COLLATION]); // nvarchar(128): 256 bytes
  return Buffer.concat([fixed, typeInfo, bVarChar(column.name)]);
}

function columnValue(column: Column, value: Value): Buffer {
  if (column.type === 'int') {
    if (value === null) return Buffer.from([0]);
    const body = Buffer.alloc(5);
    body.writeUInt8(4, 0);
    body.writeInt32LE(Number(value), 1);
    return body;
  }
  if (value === null) return Buffer.from([0xff, 0xff]);
  const text = Buffer.from(String(value), 'ucs2');
  const head = Buffer.alloc(2);
  head.writeUInt16LE(text.length);
  return Buffer.concat([head, text]);
}
