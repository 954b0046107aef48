/**
 * TDS packet framing (MS-TDS 2.2.3): every message travels as packets with an
 * 8-byte header (type, status, big-endian length, spid, packet id, window); the
 * last packet of a message has status bit 0x01 (EOM).
 */

/** Packet types the fake reads or writes. */
export const PACKET = {
  SQL_BATCH: 0x01,
  RPC_REQUEST: 0x03,
  TABULAR_RESULT: 0x04,
  ATTENTION: 0x06,
  LOGIN7: 0x10,
  PRELOGIN: 0x12,
} as const;

const HEADER_LENGTH = 8;
const STATUS_EOM = 0x01;
/** A message larger than this is a broken client (or an attack on the fake): the connection is dropped. */
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface Message {
  type: number;
  payload: Buffer;
}

/** Reassembles messages from a byte stream. Throws on a malformed header or an oversized message. */
export class MessageReader {
  private buffered: Buffer = Buffer.alloc(0);
  private parts: Buffer[] = [];
  private partsLength = 0;

  push(chunk: Buffer): Message[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const messages: Message[] = [];
    while (this.buffered.length >= HEADER_LENGTH) {
      const length = this.buffered.readUInt16BE(2);
      if (length < HEADER_LENGTH) throw new Error(`TDS packet length ${length} is shorter than its header`);
      if (this.buffered.length < length) break;
      const type = this.buffered.readUInt8(0);
      const status = this.buffered.readUInt8(1);
      this.parts.push(this.buffered.subarray(HEADER_LENGTH, length));
      this.partsLength += length - HEADER_LENGTH;
      if (this.partsLength > MAX_MESSAGE_BYTES) throw new Error('TDS message too large');
      this.buffered = this.buffered.subarray(length);
      if ((status & STATUS_EOM) !== 0) {
        messages.push({ type, payload: Buffer.concat(this.parts) });
        this.parts = [];
        this.partsLength = 0;
      }
    }
    return messages;
  }
}

/** Splits `payload` into packets of at most `packetSize` bytes (header included). */
export function encodeMessage(type: number, payload: Buffer, packetSize: number, spid: number): Buffer {
  const room = packetSize - HEADER_LENGTH;
  const packets: Buffer[] = [];
  let packetId = 1;
  for (let offset = 0; offset < payload.length || packets.length === 0; offset += room) {
    const body = payload.subarray(offset, offset + room);
    const last = offset + room >= payload.length;
    const header = Buffer.alloc(HEADER_LENGTH);
    header.writeUInt8(type, 0);
    header.writeUInt8(last ? STATUS_EOM : 0, 1);
    header.writeUInt16BE(HEADER_LENGTH + body.length, 2);
    header.writeUInt16BE(spid, 4);
    header.writeUInt8(packetId, 6);
    packetId = (packetId + 1) % 256;
    packets.push(header, body);
  }
  return Buffer.concat(packets);
}

/** Reads UCS-2 text: `chars` characters at `offset`. Throws when the buffer is too short. */
export function readUcs2(buffer: Buffer, offset: number, chars: number): string {
  const end = offset + chars * 2;
  if (end > buffer.length) throw new Error('TDS string runs past the end of the message');
  return buffer.toString('ucs2', offset, end);
}
