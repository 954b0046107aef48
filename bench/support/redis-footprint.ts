/**
 * How much Redis memory the keys under one prefix take: `MEMORY USAGE <key> SAMPLES 0`
 * (exact for aggregates, not estimated from 5 elements) summed over a SCAN of the
 * prefix, grouped into key families (ids replaced by `*`) so a table can show what
 * holds the bytes. Also `INFO memory` used_memory, which covers the whole server.
 */
import type { Redis } from 'ioredis';

export interface KeyFamily {
  /** The key with the prefix dropped and ids replaced by `*`, e.g. `bull:rotation:*`. */
  family: string;
  keys: number;
  bytes: number;
  /** Stream entries (XLEN) or sorted-set members (ZCARD) when the family is one key of that type. */
  entries: number | null;
}

export interface PrefixFootprint {
  keys: number;
  bytes: number;
  families: KeyFamily[];
}

const ID_PATTERNS: RegExp[] = [
  /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, // uuids
  /[A-Za-z0-9_-]{22,}/g, // base64url nonces and the like
  /(?<=:)\d+(?=:|$)/g, // numeric job ids
  /(?<=:)repeat:[^:]+(?=:|$)/g, // job scheduler ids
  /(?<=:)sched-\d+(?=:|$)/g,
];

function familyOf(key: string, prefix: string): string {
  let rest = key.slice(prefix.length);
  for (const re of ID_PATTERNS) rest = rest.replace(re, '*');
  return rest;
}

/** Sums MEMORY USAGE over every key starting with `prefix` (SCAN, so it never blocks the server). */
export async function prefixFootprint(redis: Redis, prefix: string): Promise<PrefixFootprint> {
  if (prefix === '') throw new Error('prefixFootprint: refusing an empty prefix');
  const pattern = `${prefix.replace(/[\\*?[\]^]/g, (c) => `\\${c}`)}*`;
  const families = new Map<string, KeyFamily>();
  let keys = 0;
  let bytes = 0;
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    for (const key of batch) {
      const usage = Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
      if (!Number.isFinite(usage) || usage === 0) continue; // expired between SCAN and MEMORY USAGE
      keys += 1;
      bytes += usage;
      const name = familyOf(key, prefix);
      const family = families.get(name) ?? { family: name, keys: 0, bytes: 0, entries: null };
      family.keys += 1;
      family.bytes += usage;
      if (family.keys === 1) family.entries = await entriesOf(redis, key);
      else family.entries = null;
      families.set(name, family);
    }
  } while (cursor !== '0');
  return { keys, bytes, families: [...families.values()].sort((a, b) => b.bytes - a.bytes) };
}

async function entriesOf(redis: Redis, key: string): Promise<number | null> {
  const type = await redis.type(key);
  if (type === 'stream') return redis.xlen(key);
  if (type === 'zset') return redis.zcard(key);
  return null;
}

/** `used_memory` from INFO memory (the whole server: other users' keys move it too). */
export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  const match = /^used_memory:(\d+)/m.exec(info);
  if (match === null || match[1] === undefined) throw new Error('INFO memory has no used_memory');
  return Number(match[1]);
}

/** The footprint as table lines, largest family first. */
export function footprintLines(title: string, f: PrefixFootprint, limit = 12): string[] {
  const lines = [`${title}: ${f.keys} keys, ${f.bytes} bytes`];
  for (const family of f.families.slice(0, limit)) {
    const entries = family.entries === null ? '' : ` (${family.entries} entries)`;
    lines.push(`  ${family.family.padEnd(44)}${String(family.keys).padStart(7)} keys${String(family.bytes).padStart(10)} B${entries}`);
  }
  if (f.families.length > limit) lines.push(`  … ${f.families.length - limit} more families`);
  return lines;
}
