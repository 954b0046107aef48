/**
 * What `sikker scan` reports. A finding says where something secret-shaped or
 * vault-managed sits and what it is — never the value itself: no type here has a
 * field that could carry matched text.
 */

/** Shapes recognised without the vault, most specific first (see shape-detectors.ts). */
export const SHAPE_KINDS = [
  'private-key',
  'jwt',
  'aws-access-key-id',
  'aws-secret-access-key',
  'github-token',
  'gitlab-token',
  'slack-token',
  'stripe-live-key',
  'google-api-key',
  'connection-string',
  'password-assignment',
] as const;

export type ShapeKind = (typeof SHAPE_KINDS)[number];

/** A value this vault manages, found by keyed fingerprint on the server. */
export const MANAGED_SECRET = 'managed-secret';

export type FindingKind = ShapeKind | typeof MANAGED_SECRET;

/** A shape found on one line: where the value starts (1-based column) and what it is. */
export interface ShapeHit {
  kind: ShapeKind;
  column: number;
}

/** The vault's names for a managed value (names and states, no value). */
export interface ManagedSecretRef {
  project: string;
  secret: string;
  version: number;
  label: string | null;
  state: string;
  leaked: boolean;
}

/** One reported finding. `source` orders findings by the order sources were scanned. */
export interface Finding {
  path: string;
  source: number;
  line: number;
  column: number;
  kind: FindingKind;
  managed?: ManagedSecretRef;
}
