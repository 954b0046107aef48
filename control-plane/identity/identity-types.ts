import type { KeyObject } from 'node:crypto';
import type { BlockList } from 'node:net';
import type { Role } from '../../shared/protocol/api.js';

export interface Grant {
  /** null: the grant covers the whole control plane. */
  projectId: string | null;
  projectName: string | null;
  role: Role;
}

/** What the authenticator needs to know about a caller. */
export interface AuthIdentity {
  identityId: string;
  name: string;
  publicKey: KeyObject;
  publicKeyText: string;
  disabled: boolean;
  cidrs: string[];
  /** null when no CIDR restriction applies. */
  allowedSources: BlockList | null;
  grants: Grant[];
}
