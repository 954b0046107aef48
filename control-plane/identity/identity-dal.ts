import { BlockList, isIPv4 } from 'node:net';
import type { Queryable } from '../db/queryable.js';
import { importPublicKey } from '../../shared/signing/ed25519-keys.js';
import type { Role } from '../../shared/protocol/api.js';
import type { AuthIdentity, Grant } from './identity-types.js';

interface IdentityRow {
  identity_id: string;
  name: string;
  public_key: string;
  allowed_cidrs: string[] | string;
  disabled_at: Date | null;
  created_at: Date;
  grants: Array<{ project_id: string | null; project_name: string | null; role: Role }> | null;
}

const SELECT_IDENTITY = `
  SELECT i.identity_id, i.name, i.public_key, i.allowed_cidrs::text[] AS allowed_cidrs, i.disabled_at, i.created_at,
    (SELECT json_agg(json_build_object('project_id', g.project_id, 'project_name', p.name, 'role', g.role))
       FROM grants g LEFT JOIN projects p ON p.project_id = g.project_id WHERE g.identity_id = i.identity_id) AS grants
  FROM identities i`;

export function buildBlockList(cidrs: string[]): BlockList | null {
  if (cidrs.length === 0) return null;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address = '', prefix = ''] = cidr.split('/');
    list.addSubnet(address, Number(prefix), isIPv4(address) ? 'ipv4' : 'ipv6');
  }
  return list;
}

/** Whether `sourceIp` (IPv4-mapped IPv6 included) falls in `list`; no list allows every address. */
export function sourceAllowed(list: BlockList | null, sourceIp: string): boolean {
  if (list === null) return true;
  const ip = sourceIp.startsWith('::ffff:') && isIPv4(sourceIp.slice(7)) ? sourceIp.slice(7) : sourceIp;
  return list.check(ip, isIPv4(ip) ? 'ipv4' : 'ipv6');
}

function toIdentity(row: IdentityRow): AuthIdentity & { createdAt: Date } {
  const cidrs = Array.isArray(row.allowed_cidrs) ? row.allowed_cidrs : [];
  const grants: Grant[] = (row.grants ?? []).map((g) => ({ projectId: g.project_id, projectName: g.project_name, role: g.role }));
  return {
    identityId: row.identity_id, name: row.name, publicKey: importPublicKey(row.public_key), publicKeyText: row.public_key,
    disabled: row.disabled_at !== null, cidrs, allowedSources: buildBlockList(cidrs), grants, createdAt: row.created_at,
  };
}

export async function findIdentity(db: Queryable, identityId: string): Promise<(AuthIdentity & { createdAt: Date }) | null> {
  const row = (await db.query<IdentityRow>({ name: 'identity-by-id', text: `${SELECT_IDENTITY} WHERE i.identity_id = $1`, values: [identityId] })).rows[0];
  return row === undefined ? null : toIdentity(row);
}

export async function listIdentities(db: Queryable): Promise<Array<AuthIdentity & { createdAt: Date }>> {
  return (await db.query<IdentityRow>(`${SELECT_IDENTITY} ORDER BY i.created_at`)).rows.map(toIdentity);
}
