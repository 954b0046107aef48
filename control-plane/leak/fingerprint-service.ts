import type { Pool } from 'pg';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { AuditBatcher } from '../audit/audit-batcher.js';
import { isGlobalAdmin, rolesAllowing } from '../auth/authorize.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { ProjectService } from '../vault/project-service.js';
import type { VersionStore } from '../vault/version-store.js';

export interface FingerprintMatch {
  /** Index of the candidate in the request. */
  index: number;
  projectId: string;
  project: string;
  secretId: string;
  secret: string;
  version: number;
  label: string | null;
  state: string;
  leaked: boolean;
}

/** Candidates per request (each up to 1 KiB): a scan sends its tokens in batches. */
export const MAX_CANDIDATES = 1000;

/**
 * Finds which candidate strings are values this vault manages, by keyed fingerprint
 * (HMAC-SHA256 under each project's fingerprint key): one HMAC per candidate and
 * project and one indexed lookup per project — nothing is decrypted. Candidates are
 * never stored or logged; the audit record holds counts only.
 */
export class FingerprintService {
  constructor(
    private readonly pool: Pool,
    private readonly projects: ProjectService,
    private readonly versions: VersionStore,
    private readonly audit: AuditBatcher,
  ) {}

  async match(caller: AuthIdentity, sourceIp: string, candidates: string[], projectName?: string): Promise<FingerprintMatch[]> {
    const scope = await this.projectsInScope(caller, projectName);
    const values = candidates.map((c) => Buffer.from(c, 'utf8'));
    const matches: FingerprintMatch[] = [];
    try {
      for (const project of scope) {
        const fingerprints = await Promise.all(values.map((v) => this.versions.fingerprint(this.pool, project.project_id, v)));
        const byHex = new Map<string, number[]>();
        fingerprints.forEach((f, i) => byHex.set(f.toString('hex'), [...(byHex.get(f.toString('hex')) ?? []), i]));
        const rows = (await this.pool.query<{ secret_id: string; name: string; version: number; label: string | null; state: string; leaked_at: Date | null; fingerprint: Buffer }>(
          `SELECT v.secret_id, s.name, v.version, v.label, v.state, v.leaked_at, v.fingerprint
             FROM secret_versions v JOIN secrets s ON s.secret_id = v.secret_id
            WHERE s.project_id = $1 AND v.fingerprint = ANY($2::bytea[])
            ORDER BY s.name, v.version`, [project.project_id, fingerprints],
        )).rows;
        for (const row of rows) {
          for (const index of byHex.get(row.fingerprint.toString('hex')) ?? []) {
            matches.push({ index, projectId: project.project_id, project: project.name, secretId: row.secret_id, secret: row.name, version: row.version, label: row.label, state: row.state, leaked: row.leaked_at !== null });
          }
        }
      }
    } finally {
      for (const v of values) v.fill(0);
    }
    await this.audit.append({
      identityId: caller.identityId, sourceIp, action: 'fingerprint.match', projectId: scope.length === 1 ? scope[0]?.project_id ?? null : null,
      outcome: 'success', detail: { candidates: candidates.length, matches: matches.length, projects: scope.length },
    });
    return matches;
  }

  /** The projects whose values the caller may match: one named project, or every project it holds `secret.match` in. */
  private async projectsInScope(caller: AuthIdentity, projectName: string | undefined): Promise<Array<{ project_id: string; name: string }>> {
    if (projectName !== undefined) {
      const project = await this.projects.resolve(caller, projectName);
      if (rolesAllowing(caller, 'secret.match', project.project_id).length === 0) throw new SikkerError('ERR_AUTH_FORBIDDEN', 'your grants do not allow secret.match in this project');
      return [project];
    }
    const all = (await this.pool.query<{ project_id: string; name: string }>('SELECT project_id, name FROM projects ORDER BY name')).rows;
    const scope = isGlobalAdmin(caller) ? all : all.filter((p) => rolesAllowing(caller, 'secret.match', p.project_id).length > 0);
    if (scope.length === 0) throw new SikkerError('ERR_AUTH_FORBIDDEN', 'your grants do not allow secret.match in any project');
    return scope;
  }
}
