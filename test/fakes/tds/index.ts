/** A fake SQL Server (TDS 7.4) for the mssql applier's tests; see server.ts. */
export { start, type FakeTdsServer, type StatementRecord } from './server.js';
export type { ContainedUserOptions, LoginOptions, ServerPermission } from './catalog.js';
