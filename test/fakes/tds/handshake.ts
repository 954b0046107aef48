/**
 * PRELOGIN (MS-TDS 2.2.6.5) and LOGIN7 (2.2.6.4) as tedious sends them. The fake
 * offers no TLS: its PRELOGIN answer says ENCRYPT_NOT_SUP whatever the client asked.
 */
import { readUcs2 } from './packets.js';

const PRELOGIN = { VERSION: 0x00, ENCRYPTION: 0x01, INSTOPT: 0x02, THREADID: 0x03, MARS: 0x04, TERMINATOR: 0xff } as const;
export const ENCRYPT = { OFF: 0x00, ON: 0x01, NOT_SUP: 0x02, REQ: 0x03 } as const;

/** The fake claims SQL Server 2022 (16.0.4135). */
export const SERVER_VERSION: [number, number, number] = [16, 0, 4135];
export const SERVER_VERSION_TEXT = `${SERVER_VERSION.join('.')}.4`;

/** The ENCRYPTION option the client sent, or undefined when absent. */
export function preloginEncryption(payload: Buffer): number | undefined {
  let offset = 0;
  while (offset < payload.length && payload[offset] !== PRELOGIN.TERMINATOR) {
    if (offset + 5 > payload.length) throw new Error('PRELOGIN option table is truncated');
    const token = payload.readUInt8(offset);
    const dataOffset = payload.readUInt16BE(offset + 1);
    const dataLength = payload.readUInt16BE(offset + 3);
    if (dataOffset + dataLength > payload.length) throw new Error('PRELOGIN option runs past the end');
    if (token === PRELOGIN.ENCRYPTION && dataLength >= 1) return payload.readUInt8(dataOffset);
    offset += 5;
  }
  return undefined;
}

/** The server's PRELOGIN answer: version, ENCRYPT_NOT_SUP, no instance, no MARS. */
export function preloginResponse(): Buffer {
  const version = Buffer.alloc(6);
  version.writeUInt8(SERVER_VERSION[0], 0);
  version.writeUInt8(SERVER_VERSION[1], 1);
  version.writeUInt16BE(SERVER_VERSION[2], 2);
  const options: [number, Buffer][] = [
    [PRELOGIN.VERSION, version],
    [PRELOGIN.ENCRYPTION, Buffer.from([ENCRYPT.NOT_SUP])],
    [PRELOGIN.INSTOPT, Buffer.from([0])],
    [PRELOGIN.THREADID, Buffer.alloc(0)],
    [PRELOGIN.MARS, Buffer.from([0])],
  ];
  const table = Buffer.alloc(options.length * 5 + 1);
  let dataOffset = table.length;
  options.forEach(([token, data], i) => {
    table.writeUInt8(token, i * 5);
    table.writeUInt16BE(dataOffset, i * 5 + 1);
    table.writeUInt16BE(data.length, i * 5 + 3);
    dataOffset += data.length;
  });
  table.writeUInt8(PRELOGIN.TERMINATOR, table.length - 1);
  return Buffer.concat([table, ...options.map(([, data]) => data)]);
}

export interface Login7 {
  tdsVersion: number;
  packetSize: number;
  userName: string;
  /** Unscrambled. Held only to compare with the stored password; never logged. */
  password: string;
  database: string;
  appName: string;
}

/** Offsets of the (offset, length) pairs in LOGIN7's fixed part. */
const FIELD = { userName: 40, password: 44, appName: 48, database: 68 } as const;
const FIXED_LENGTH = 94;

/** Parses LOGIN7. Throws on a truncated or inconsistent payload. */
export function parseLogin7(payload: Buffer): Login7 {
  if (payload.length < FIXED_LENGTH || payload.readUInt32LE(0) !== payload.length) throw new Error('LOGIN7 length does not match its message');
  const text = (at: number): string => readUcs2(payload, payload.readUInt16LE(at), payload.readUInt16LE(at + 2));
  const passwordOffset = payload.readUInt16LE(FIELD.password);
  const passwordLength = payload.readUInt16LE(FIELD.password + 2) * 2;
  if (passwordOffset + passwordLength > payload.length) throw new Error('LOGIN7 password runs past the end');
  return {
    tdsVersion: payload.readUInt32LE(4),
    packetSize: payload.readUInt32LE(8),
    userName: text(FIELD.userName),
    password: unscramble(payload.subarray(passwordOffset, passwordOffset + passwordLength)).toString('ucs2'),
    database: text(FIELD.database),
    appName: text(FIELD.appName),
  };
}

/** The client XORs each byte with 0xA5 after swapping its nibbles; undo both. */
function unscramble(scrambled: Buffer): Buffer {
  const plain = Buffer.alloc(scrambled.length);
  for (let i = 0; i < scrambled.length; i++) {
    const byte = (scrambled[i] ?? 0) ^ 0xa5;
    plain[i] = ((byte & 0x0f) << 4) | (byte >> 4);
  }
  return plain;
}
