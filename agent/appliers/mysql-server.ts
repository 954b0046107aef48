/**
 * What a MySQL-protocol server can do, from `SELECT VERSION()` and `SHOW GRANTS`
 * text alone (pure functions, no driver: tested without a server).
 */

/** The server flavour and the password features the applier relies on. */
export interface MysqlServer {
  flavour: 'mysql' | 'mariadb';
  /** As the server reported it, e.g. `10.11.19-MariaDB-0+deb12u1`, `8.0.36`. */
  version: string;
  /** `RETAIN CURRENT PASSWORD` / `DISCARD OLD PASSWORD` (MySQL ≥ 8.0.14). */
  dual: boolean;
  /** `ALTER USER USER() … REPLACE '<current>'` (MySQL ≥ 8.0.13). */
  replaceClause: boolean;
}

/**
 * Classifies `SELECT VERSION()` output. MariaDB says so in the string (also behind
 * the old `5.5.5-` replication prefix); everything else (Oracle MySQL, Percona,
 * cloud builds) is treated as MySQL. An unparsable version supports nothing optional.
 */
export function describeMysqlServer(version: string): MysqlServer {
  const mariadb = /mariadb/i.test(version);
  const numbers = /(\d+)\.(\d+)\.(\d+)/.exec(version.replace(/^5\.5\.5-/, ''));
  const [major, minor, patch] = numbers === null ? [0, 0, 0] : [Number(numbers[1]), Number(numbers[2]), Number(numbers[3])];
  const atLeast = (a: number, b: number, c: number) => major > a || (major === a && (minor > b || (minor === b && patch >= c)));
  return {
    flavour: mariadb ? 'mariadb' : 'mysql',
    version,
    dual: !mariadb && atLeast(8, 0, 14),
    replaceClause: !mariadb && atLeast(8, 0, 13),
  };
}

/**
 * What the login must be allowed to do:
 * - `alter-others`: change another account's password — global CREATE USER,
 *   or UPDATE on `*.*` / `mysql`.*, or ALL PRIVILEGES on those.
 * - `dual-self`: keep one's own old password — APPLICATION_PASSWORD_ADMIN (or CREATE USER).
 * - `none`: changing one's own password needs nothing.
 */
export type MysqlPasswordPrivilege = 'alter-others' | 'dual-self' | 'none';

/**
 * Reads `SHOW GRANTS` lines for the current user. Privileges that arrive only
 * through roles are not visible there, so a login that holds them through a role
 * is reported as lacking them (a false "no": preflight says so, apply would work).
 */
export function grantsAllowPasswordChange(grants: readonly string[], need: MysqlPasswordPrivilege): boolean {
  if (need === 'none') return true;
  for (const line of grants) {
    const match = /^GRANT\s+(.+?)\s+ON\s+(\S+)\s+TO\s/i.exec(line.trim());
    if (match === null) continue;
    const privileges = (match[1] ?? '').split(',').map((p) => p.trim().toUpperCase());
    const scope = (match[2] ?? '').replace(/`/g, '');
    const global = scope === '*.*';
    const all = privileges.includes('ALL PRIVILEGES') || privileges.includes('ALL');
    if (global && (all || privileges.includes('CREATE USER'))) return true;
    if (need === 'alter-others' && (global || scope === 'mysql.*') && (all || privileges.includes('UPDATE'))) return true;
    if (need === 'dual-self' && global && privileges.includes('APPLICATION_PASSWORD_ADMIN')) return true;
  }
  return false;
}
