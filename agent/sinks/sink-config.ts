/** One configured place the agent may write a delivered secret to. */
export interface SinkConfig {
  /** What commands name (`DeliverPayload.sink`). */
  name: string;
  /** Absolute path of the file; its directory must exist and be writable by the agent. */
  path: string;
  /** raw: the value as is; env: `NAME='value'` (POSIX shell quoting); json: {project, secret, version, value}. */
  format: 'raw' | 'env' | 'json';
  /** Variable name for the env format. */
  envName: string;
  /** File mode, 0o600 or 0o640. */
  mode: number;
  /** argv run after the file is written (no shell), or null. */
  reloadCommand: readonly string[] | null;
  reloadTimeoutMs: number;
}
