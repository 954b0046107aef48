/**
 * Checks DESIGN.md's rotation invariant continuously while a test kills things:
 * "at every instant, some non-revoked version in the vault logs in to the database".
 *
 * Every ~50 ms: list the secret's non-revoked versions straight from the control
 * plane's database (works while the control plane is down), try a fresh login with
 * each one whose value is known, then list again. A sample counts only when the list
 * did not change meanwhile (otherwise a rotation step raced the logins) and every
 * listed version's value is known (values are fetched once per version through the
 * API, so while the control plane is down a brand-new version makes samples
 * inconclusive rather than wrong). A counted sample where nothing logs in is a violation.
 */
import pg from 'pg';

export interface InvariantReport {
  samples: number;
  inconclusive: number;
  violations: Array<{ at: string; versions: number[] }>;
}

export interface InvariantCheckerOptions {
  /** The control plane's database. */
  databaseUrl: string;
  secretId: string;
  /** Fetches one version's value through the API; throws while the control plane cannot answer. */
  fetchValue(version: number): Promise<string>;
  /** A fresh login as the version's user: true when accepted. */
  logsIn(user: string | null, password: string): Promise<boolean>;
  intervalMs?: number;
}

export function startInvariantChecker(o: InvariantCheckerOptions): { stop(): Promise<InvariantReport> } {
  const report: InvariantReport = { samples: 0, inconclusive: 0, violations: [] };
  const values = new Map<number, string>();
  const db = new pg.Client({ connectionString: o.databaseUrl });
  db.on('error', () => undefined);
  let running = true;
  const list = async (): Promise<Array<{ version: number; db_user: string | null }>> =>
    (await db.query("SELECT version, db_user FROM secret_versions WHERE secret_id = $1 AND state = 'active' ORDER BY version", [o.secretId])).rows;
  const loop = (async () => {
    await db.connect();
    while (running) {
      try {
        const before = await list();
        for (const v of before) {
          if (!values.has(v.version)) await o.fetchValue(v.version).then((value) => values.set(v.version, value), () => undefined);
        }
        if (before.some((v) => !values.has(v.version))) {
          report.inconclusive += 1;
        } else {
          let anyLogsIn = false;
          for (const v of before) {
            if (await o.logsIn(v.db_user, values.get(v.version) as string)) {
              anyLogsIn = true;
              break;
            }
          }
          const after = await list();
          if (JSON.stringify(after) !== JSON.stringify(before)) report.inconclusive += 1;
          else {
            report.samples += 1;
            if (!anyLogsIn) report.violations.push({ at: new Date().toISOString(), versions: before.map((v) => v.version) });
          }
        }
      } catch {
        report.inconclusive += 1;
      }
      await new Promise((r) => setTimeout(r, o.intervalMs ?? 50));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop.catch(() => undefined);
      await db.end().catch(() => undefined);
      return report;
    },
  };
}
