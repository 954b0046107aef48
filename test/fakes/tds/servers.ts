/**
 * The servers the mssql applier tests run against, behind one shape: the fake
 * TDS server (always), or a real SQL Server given by an admin URL
 * (`SIKKER_TEST_MSSQL_URL=mssql://sa:…@host:1433[?tls=require]`). Logins are
 * uniquely named and, on a real server, dropped in teardown.
 */
import { randomBytes } from 'node:crypto';
import type { Test } from 'tap';
import { MssqlSession } from '../../../agent/appliers/mssql-session.js';
import { quoteName, quoteNString } from '../../../agent/appliers/mssql-sql.js';
import type { TargetTls } from '../../../agent/appliers/target.js';
import type { ServerPermission } from './catalog.js';
import { start, type FakeTdsServer } from './server.js';

export interface TestLoginOptions {
  /** CHECK_POLICY; default OFF so that any test password is accepted. */
  checkPolicy?: boolean;
  permissions?: readonly ServerPermission[];
}

export interface MssqlTestServer {
  label: string;
  host: string;
  port: number;
  adminUrl: string;
  tls: TargetTls;
  /** The fake itself (for tests that look inside it), or undefined on a real server. */
  fake: FakeTdsServer | undefined;
  uniqueName(label: string): string;
  createLogin(t: Test, label: string, password: string, options?: TestLoginOptions): Promise<string>;
  close(): Promise<void>;
}

const prefix = `sk_ms_${randomBytes(3).toString('hex')}`;
let counter = 0;
const uniqueName = (label: string) => `${prefix}_${label}_${counter++}`;

/** The fake, with a sysadmin login the applier's admin URL names. */
export async function fakeServer(): Promise<MssqlTestServer> {
  const fake = await start();
  const admin = { user: 'sikker_admin', password: `Adm1n-${randomBytes(12).toString('base64url')}` };
  fake.addLogin(admin.user, admin.password, { sysadmin: true });
  return {
    label: 'fake-tds',
    host: '127.0.0.1',
    port: fake.port,
    adminUrl: `mssql://${admin.user}:${encodeURIComponent(admin.password)}@127.0.0.1:${fake.port}`,
    tls: { mode: 'disable' },
    fake,
    uniqueName,
    async createLogin(_t, label, password, options = {}) {
      const name = uniqueName(label);
      fake.addLogin(name, password, { checkPolicy: options.checkPolicy ?? false, permissions: options.permissions ?? [] });
      return name;
    },
    close: () => fake.stop(),
  };
}

/** A real server; its admin login must be sysadmin (or hold CONTROL SERVER). */
export async function realServer(adminUrl: string): Promise<MssqlTestServer> {
  const url = new URL(adminUrl);
  const tlsMode = url.searchParams.get('tls') ?? 'disable';
  if (tlsMode !== 'disable' && tlsMode !== 'require' && tlsMode !== 'verify-full') throw new Error('SIKKER_TEST_MSSQL_URL: tls must be disable, require or verify-full');
  const tls: TargetTls = { mode: tlsMode };
  const host = url.hostname;
  const port = Number(url.port || 1433);
  const admin = await MssqlSession.open({
    host, port, user: decodeURIComponent(url.username), password: decodeURIComponent(url.password), database: undefined, tls,
    connectTimeoutMs: 10_000, statementTimeoutMs: 15_000,
  });
  return {
    label: 'sql-server',
    host,
    port,
    adminUrl,
    tls,
    fake: undefined,
    uniqueName,
    async createLogin(t, label, password, options = {}) {
      const name = uniqueName(label);
      const policy = options.checkPolicy === true ? 'ON' : 'OFF';
      await admin.batch(`CREATE LOGIN ${quoteName(name)} WITH PASSWORD = ${quoteNString(password)}, CHECK_POLICY = ${policy}`);
      for (const permission of options.permissions ?? []) await admin.batch(`GRANT ${permission} TO ${quoteName(name)}`);
      t.teardown(async () => {
        const sessions = await admin.query('SELECT session_id FROM sys.dm_exec_sessions WHERE original_login_name = @name', { name });
        for (const row of sessions) await admin.batch(`KILL ${Number(row['session_id'])}`).catch(() => undefined);
        await admin.batch(`DROP LOGIN ${quoteName(name)}`);
      });
      return name;
    },
    close: () => admin.close(),
  };
}
