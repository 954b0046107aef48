import { isIP } from 'node:net';

function ipv4Bytes(address: string): number[] {
  return address.split('.').map(Number);
}

function ipv6Bytes(address: string): number[] | null {
  let text = address;
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (v4Tail?.[1] !== undefined) {
    tail = ipv4Bytes(v4Tail[1]);
    text = `${text.slice(0, -v4Tail[1].length)}0:0`;
  }
  const [head = '', rest] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const missing = 8 - headGroups.length - restGroups.length;
  if (missing < 0 || (rest === undefined && missing !== 0)) return null;
  const groups = [...headGroups, ...Array<string>(missing).fill('0'), ...restGroups].map((g) => parseInt(g, 16));
  const bytes = groups.flatMap((g) => [(g >> 8) & 0xff, g & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/**
 * True for a network in CIDR notation whose host bits are all zero (10.0.0.0/8, not
 * 10.0.0.1/8), IPv4 or IPv6. What PostgreSQL's `cidr` type accepts, checked up front
 * so a typo is a clear validation error rather than a database failure.
 */
export function isNetworkCidr(value: string): boolean {
  const parts = value.split('/');
  if (parts.length !== 2 || !/^\d{1,3}$/.test(parts[1] ?? '')) return false;
  const address = parts[0] ?? '';
  const prefix = Number(parts[1]);
  const family = isIP(address);
  if (family === 0 || prefix > (family === 4 ? 32 : 128)) return false;
  const bytes = family === 4 ? ipv4Bytes(address) : ipv6Bytes(address);
  if (bytes === null) return false;
  for (let bit = prefix; bit < bytes.length * 8; bit += 1) {
    if (((bytes[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1) return false;
  }
  return true;
}
