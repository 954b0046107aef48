/**
 * After a leak (outside any timed window): proof with fresh logins that every leaked
 * password is refused and every current one logs in, and every leak report through
 * the API says `neutralised`.
 */
import { postgresLogsIn } from '../../test/support/postgres-login.js';
import type { TestClient } from '../../test/support/test-client.js';
import { inLanes, type FleetTarget } from './leak-fleet.js';

export interface CredentialCheck {
  checked: number;
  oldRefused: number;
  newLogsIn: number;
  /** Secrets whose current version is still the leaked (adopted) one. */
  notRotated: number;
  /** Up to five target names that failed a check, with what failed. */
  failures: string[];
}

/** For every target: the leaked password is refused, the current version (read through the API) logs in. */
export async function checkCredentials(admin: TestClient, project: string, port: number, targets: readonly FleetTarget[], lanes: number): Promise<CredentialCheck> {
  const out: CredentialCheck = { checked: 0, oldRefused: 0, newLogsIn: 0, notRotated: 0, failures: [] };
  const fail = (what: string): void => {
    if (out.failures.length < 5) out.failures.push(what);
  };
  await inLanes(targets, lanes, async (t) => {
    const current = (await admin.ok('GET', `/v1/projects/${project}/secrets/${t.secret}`)) as { value: string; version: number };
    out.checked += 1;
    if (current.version <= 1 || current.value === t.adopted) {
      out.notRotated += 1;
      fail(`${t.name}: current version ${current.version} is the leaked one`);
    }
    if (await postgresLogsIn(port, t.role, t.adopted, 10_000)) fail(`${t.name}: the leaked password still logs in`);
    else out.oldRefused += 1;
    if (await postgresLogsIn(port, t.role, current.value, 10_000)) out.newLogsIn += 1;
    else fail(`${t.name}: the current password (version ${current.version}) is refused`);
  });
  return out;
}

/** GET …/leaks/:leakId for each id; counts by reported state. */
export async function reportStates(admin: TestClient, project: string, leakIds: readonly string[], lanes: number): Promise<Record<string, number>> {
  const states: Record<string, number> = {};
  await inLanes(leakIds, lanes, async (id) => {
    const report = (await admin.ok('GET', `/v1/projects/${project}/leaks/${id}`)) as { state: string };
    states[report.state] = (states[report.state] ?? 0) + 1;
  });
  return states;
}
