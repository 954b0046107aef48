import type { Command } from 'commander';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { AddTargetRequest, Target, TargetList, TargetName, TestTargetRequest } from '../../shared/protocol/rotation-api.js';
import { ProjectName } from '../../shared/protocol/api.js';
import { collect, parseWholeNumber, parseWith, projectPath } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { formatTable, orDash } from './output.js';
import { isInteractive, readSecretText, stripOneNewline } from '../../shared/terminal/stdin-input.js';

export interface TargetRef {
  project: string;
  name: string;
}

/** Parses `PROJECT/TARGET` strictly (ERR_VALIDATION otherwise). */
export function parseTargetRef(text: string): TargetRef {
  const parts = text.split('/');
  if (parts.length !== 2) throw new SikkerError('ERR_VALIDATION', 'target must be given as PROJECT/TARGET, e.g. payments/orders-db');
  return { project: parseWith(ProjectName, parts[0], 'project name'), name: parseWith(TargetName, parts[1], 'target name') };
}

export function targetPath(ref: TargetRef): string {
  return `${projectPath(ref.project)}/targets/${encodeURIComponent(ref.name)}`;
}

interface AddOptions {
  engine: string;
  host: string;
  port?: string;
  database?: string;
  user: string;
  secret: string;
  agent: string;
  adminConnection?: string;
  self?: boolean;
  tls: string;
  tlsServerName?: string;
  alternateUser?: string;
  sink?: string[];
  mysqlAccountHost?: string;
  redisPasswordMode?: string;
  authDatabase?: string;
  mongodbCommand?: string;
  mssqlPrincipal?: string;
  adopt?: boolean;
}

const DEFAULT_PORTS: Record<string, number> = { postgres: 5432, mysql: 3306, redis: 6379, mongodb: 27017, mssql: 1433 };

/** Registers `sikker target add|list|show|test`. */
export function registerTargetCommands(program: Command, ctx: CliContext): void {
  const target = ctx.group(program, 'target', 'database users whose passwords SikkerKey rotates');

  ctx.leaf(target, 'add <project/target>', 'register a database user, the secret holding its password and the agent that manages it')
    .requiredOption('--engine <engine>', 'postgres, mysql (MySQL or MariaDB), redis, mongodb or mssql')
    .requiredOption('--host <host>', 'database host as the agent reaches it')
    .option('--port <port>', 'database port (default: the engine\'s)')
    .option('--database <name>', 'PostgreSQL: database to connect to (default postgres)')
    .requiredOption('--user <name>', 'the database user to rotate')
    .requiredOption('--secret <name>', 'the secret in this project that holds the password (created if missing)')
    .requiredOption('--agent <agent-id>', 'the agent that applies rotations (sikker agent list)')
    .option('--admin-connection <name>', 'an admin connection configured on the agent\'s host (adminConnections in its config)')
    .option('--self', 'the user changes its own password, logging in with the current one (needs --adopt or a current version)')
    .option('--tls <mode>', 'disable, require or verify-full', 'disable')
    .option('--tls-server-name <name>', 'verify-full: the name the server certificate must carry')
    .option('--alternate-user <name>', 'the partner account for the alternate strategy')
    .option('--sink <name>', 'a sink on the agent that receives each new password (repeatable)', collect)
    .option('--mysql-account-host <host>', "MySQL: the host part of 'user'@'host'")
    .option('--redis-password-mode <mode>', 'redis: acl (default) or requirepass (the default user, no ACLs)')
    .option('--auth-database <name>', 'mongodb: the database the user is defined in (default admin)')
    .option('--mongodb-command <name>', 'mongodb: a custom rotation command configured on the agent (mongodbCommands), instead of updateUser')
    .option('--mssql-principal <kind>', 'mssql: login (default) or contained-user (with --database)')
    .option('--adopt', 'read the password that logs in now from stdin and store it as the current version (no rotation)')
    .action(async (ref: string, opts: AddOptions, cmd: Command) => {
      const { project, name } = parseTargetRef(ref);
      if ((opts.adminConnection === undefined) === (opts.self !== true)) throw new SikkerError('ERR_VALIDATION', 'give exactly one of --admin-connection NAME and --self');
      const port = opts.port === undefined ? DEFAULT_PORTS[opts.engine] : parseWholeNumber(opts.port, '--port');
      const adoptPassword = opts.adopt === true ? await readPassword(ctx) : undefined;
      const body = parseWith(AddTargetRequest, {
        name, secret: opts.secret, agentId: opts.agent, sinks: opts.sink ?? [],
        ...(opts.alternateUser === undefined ? {} : { alternateUser: opts.alternateUser }),
        ...(adoptPassword === undefined ? {} : { adoptPassword }),
        connection: {
          engine: opts.engine, host: opts.host, port, user: opts.user,
          ...(opts.database === undefined ? {} : { database: opts.database }),
          tls: { mode: opts.tls, ...(opts.tlsServerName === undefined ? {} : { serverName: opts.tlsServerName }) },
          privilege: opts.self === true ? { mode: 'self' } : { mode: 'admin', adminConnection: opts.adminConnection },
          ...(opts.mysqlAccountHost === undefined ? {} : { mysqlAccountHost: opts.mysqlAccountHost }),
          ...(opts.redisPasswordMode === undefined ? {} : { redisPasswordMode: opts.redisPasswordMode }),
          ...(opts.authDatabase === undefined ? {} : { authDatabase: opts.authDatabase }),
          ...(opts.mongodbCommand === undefined ? {} : { mongodbCommand: opts.mongodbCommand }),
          ...(opts.mssqlPrincipal === undefined ? {} : { mssqlPrincipal: opts.mssqlPrincipal }),
        },
      }, 'target');
      const added = await ctx.signedClient(cmd).request('POST', `${projectPath(project)}/targets`, body, Target);
      ctx.out.result(added, () => `target ${added.project}/${added.name} added (${added.connection.engine} ${added.connection.user}@${added.connection.host}:${added.connection.port}); next: sikker target test ${added.project}/${added.name}`);
    });

  ctx.leaf(target, 'list <project>', 'targets with their last preflight and current version').action(async (project: string, _opts: unknown, cmd: Command) => {
    const list = await ctx.signedClient(cmd).request('GET', `${projectPath(parseWith(ProjectName, project, 'project name'))}/targets`, undefined, TargetList);
    ctx.out.result(list, () => {
      if (list.targets.length === 0) return 'no targets';
      return formatTable([['TARGET', 'ENGINE', 'USER', 'SERVER', 'SECRET', 'VERSION', 'PREFLIGHT'],
        ...list.targets.map((t) => [t.name, t.connection.engine, orDash(t.activeUser ?? t.connection.user), `${t.connection.host}:${t.connection.port}`, t.secret, orDash(t.currentVersion), preflightWord(t)])]);
    });
  });

  ctx.leaf(target, 'show <project/target>', 'one target, its connection and last preflight').action(async (ref: string, _opts: unknown, cmd: Command) => {
    const t = await ctx.signedClient(cmd).request('GET', targetPath(parseTargetRef(ref)), undefined, Target);
    ctx.out.result(t, () => describeTarget(t));
  });

  ctx.leaf(target, 'test <project/target>', 'preflight on the agent: reachable, privileges, user exists, strategy supported')
    .option('--strategy <strategy>', 'the strategy to check: replace, dual or alternate (default: the policy\'s, else replace)')
    .action(async (ref: string, opts: { strategy?: string }, cmd: Command) => {
      const body = parseWith(TestTargetRequest, opts.strategy === undefined ? {} : { strategy: opts.strategy }, 'test');
      const answer = await ctx.signedClient(cmd).request('POST', `${targetPath(parseTargetRef(ref))}/test`, body, TargetTestResponse);
      if (!answer.finished) {
        ctx.exitCode = 1;
        ctx.out.result(answer, () => 'the agent has not answered yet; see `sikker target show` in a moment');
        return;
      }
      if (answer.target.preflight?.ok !== true) ctx.exitCode = 1;
      ctx.out.result(answer, () => describeTarget(answer.target));
    });
}

const TargetTestResponse = z.object({ target: Target, finished: z.boolean() });

function preflightWord(t: z.infer<typeof Target>): string {
  if (t.preflight === null) return 'never run';
  return t.preflight.ok ? 'ok' : 'FAILED';
}

function describeTarget(t: z.infer<typeof Target>): string {
  const c = t.connection;
  const lines = [
    `${t.project}/${t.name}: ${c.engine} user ${c.user}${t.alternateUser === null ? '' : ` (alternates with ${t.alternateUser})`} at ${c.host}:${c.port}${c.database === undefined ? '' : `/${c.database}`}, tls ${c.tls.mode}`,
    `privilege: ${c.privilege.mode === 'admin' ? `admin connection "${c.privilege.adminConnection}" on the agent` : 'self-rotation'}; agent ${t.agentId}`,
    `secret ${t.secret}: current version ${orDash(t.currentVersion)}${t.activeUser === null ? '' : ` (user ${t.activeUser})`}; sinks ${t.sinks.length === 0 ? 'none' : t.sinks.join(', ')}`,
  ];
  const p = t.preflight;
  if (p === null) lines.push('preflight: never run (sikker target test)');
  else {
    lines.push(`preflight (${p.strategy}) ${p.ok ? 'ok' : 'FAILED'} at ${p.at}${p.server === null ? '' : ` on ${p.server}`}; strategies: ${p.strategies.join(', ') || 'none'}`);
    if (p.problems !== '') lines.push(`problems: ${p.problems}`);
    if (p.warnings !== '') lines.push(`warnings: ${p.warnings}`);
  }
  return lines.join('\n');
}

async function readPassword(ctx: CliContext): Promise<string> {
  if (isInteractive(ctx.io.stdin)) ctx.out.note('type or paste the password that logs in now (it is not shown), then press Ctrl-D');
  const value = stripOneNewline(await readSecretText(ctx.io.stdin, 1024, 'password'));
  if (value === '') throw new SikkerError('ERR_VALIDATION', 'the password on stdin is empty');
  return value;
}
