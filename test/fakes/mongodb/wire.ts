/**
 * MongoDB wire-protocol framing for the fake server: the 16-byte message
 * header, OP_MSG (every command since 3.6), and the legacy OP_QUERY / OP_REPLY
 * pair. The 7.x driver still opens every connection with an OP_QUERY
 * `ismaster` on `admin.$cmd` (before that reply it cannot know the server's
 * wire version), then switches to OP_MSG. Compression is never offered, so
 * OP_COMPRESSED is a protocol error here.
 */
import { deserialize, serialize, type Document } from 'bson';

export const OP_REPLY = 1;
export const OP_QUERY = 2004;
export const OP_MSG = 2013;

const HEADER_BYTES = 16;
/** The maxMessageSizeBytes the fake advertises (same as mongod). */
export const MAX_MESSAGE_BYTES = 48_000_000;

const MSG_CHECKSUM_PRESENT = 1 << 0;
const MSG_MORE_TO_COME = 1 << 1;

/** One command as the server received it. */
export interface WireRequest {
  requestId: number;
  /** OP_QUERY: the reply must be an OP_REPLY. */
  legacy: boolean;
  /** The database the command runs in (`$db`, or the OP_QUERY namespace's database). */
  db: string;
  /** The command document, with OP_MSG document sequences merged in as arrays. */
  body: Document;
  /** OP_MSG moreToCome: the client expects no reply (unacknowledged writes). */
  moreToCome: boolean;
}

/** A frame the fake cannot understand: the connection is closed, as mongod does. */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

/** Splits a TCP byte stream into whole messages. */
export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);

  /** Adds `chunk`; returns every message now complete. Throws WireError on a bad length. */
  push(chunk: Buffer): Buffer[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const frames: Buffer[] = [];
    while (this.buffered.length >= 4) {
      const length = this.buffered.readInt32LE(0);
      if (length < HEADER_BYTES || length > MAX_MESSAGE_BYTES) throw new WireError(`invalid message length ${length}`);
      if (this.buffered.length < length) break;
      frames.push(this.buffered.subarray(0, length));
      this.buffered = this.buffered.subarray(length);
    }
    return frames;
  }
}

/** Parses one complete message. Throws WireError for anything but OP_MSG and OP_QUERY commands. */
export function parseRequest(frame: Buffer): WireRequest {
  const requestId = frame.readInt32LE(4);
  const opCode = frame.readInt32LE(12);
  if (opCode === OP_MSG) return parseMsg(frame, requestId);
  if (opCode === OP_QUERY) return parseQuery(frame, requestId);
  throw new WireError(`unsupported opCode ${opCode}`);
}

function readDocument(frame: Buffer, offset: number, end: number): { doc: Document; next: number } {
  if (offset + 4 > end) throw new WireError('truncated document');
  const size = frame.readInt32LE(offset);
  if (size < 5 || offset + size > end) throw new WireError('document overruns its section');
  return { doc: deserialize(frame.subarray(offset, offset + size)), next: offset + size };
}

function parseMsg(frame: Buffer, requestId: number): WireRequest {
  const flags = frame.readUInt32LE(HEADER_BYTES);
  const end = frame.length - (flags & MSG_CHECKSUM_PRESENT ? 4 : 0);
  let offset = HEADER_BYTES + 4;
  let body: Document | undefined;
  const sequences: Record<string, Document[]> = {};
  while (offset < end) {
    const kind = frame[offset++];
    if (kind === 0) {
      if (body !== undefined) throw new WireError('two body sections');
      ({ doc: body, next: offset } = readDocument(frame, offset, end));
    } else if (kind === 1) {
      const sectionEnd = offset + frame.readInt32LE(offset);
      const nameEnd = frame.indexOf(0, offset + 4);
      if (sectionEnd > end || nameEnd < 0 || nameEnd >= sectionEnd) throw new WireError('bad document sequence');
      const identifier = frame.toString('utf8', offset + 4, nameEnd);
      const docs: Document[] = [];
      for (let pos = nameEnd + 1; pos < sectionEnd;) {
        const { doc, next } = readDocument(frame, pos, sectionEnd);
        docs.push(doc);
        pos = next;
      }
      sequences[identifier] = docs;
      offset = sectionEnd;
    } else {
      throw new WireError(`unknown OP_MSG section kind ${String(kind)}`);
    }
  }
  if (body === undefined) throw new WireError('OP_MSG without a body');
  const db = body['$db'];
  if (typeof db !== 'string' || db === '') throw new WireError('OP_MSG body without $db');
  return { requestId, legacy: false, db, body: { ...body, ...sequences }, moreToCome: (flags & MSG_MORE_TO_COME) !== 0 };
}

function parseQuery(frame: Buffer, requestId: number): WireRequest {
  const nameStart = HEADER_BYTES + 4;
  const nameEnd = frame.indexOf(0, nameStart);
  if (nameEnd < 0) throw new WireError('OP_QUERY without a namespace');
  const namespace = frame.toString('utf8', nameStart, nameEnd);
  if (!namespace.endsWith('.$cmd')) throw new WireError('legacy OP_QUERY is accepted for commands only');
  // numberToSkip and numberToReturn follow the namespace; commands ignore them
  const { doc } = readDocument(frame, nameEnd + 1 + 8, frame.length);
  const body = typeof doc['$query'] === 'object' && doc['$query'] !== null ? (doc['$query'] as Document) : doc;
  return { requestId, legacy: true, db: namespace.slice(0, -'.$cmd'.length), body, moreToCome: false };
}

let nextResponseId = 1;

/** Encodes `reply` as the answer to `request`: OP_REPLY for OP_QUERY, OP_MSG otherwise. */
export function encodeReply(request: WireRequest, reply: Document): Buffer {
  const doc = serialize(reply);
  const prefix = request.legacy ? Buffer.alloc(20) : Buffer.alloc(5);
  if (request.legacy) {
    // responseFlags 0, cursorID 0, startingFrom 0, numberReturned 1
    prefix.writeInt32LE(1, 16);
  }
  // OP_MSG: flagBits 0, then section kind 0 (the zeroed fifth byte)
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeInt32LE(HEADER_BYTES + prefix.length + doc.length, 0);
  header.writeInt32LE(nextResponseId++ & 0x7fffffff, 4);
  header.writeInt32LE(request.requestId, 8);
  header.writeInt32LE(request.legacy ? OP_REPLY : OP_MSG, 12);
  return Buffer.concat([header, prefix, doc]);
}
