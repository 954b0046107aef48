import type { Command } from 'commander';
import { CreateProjectRequest, Project, ProjectList, ProjectName, RotateProjectKeyResponse } from '../../shared/protocol/api.js';
import { parseWith, projectPath } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { formatTable } from './output.js';

/** Registers `sikker project create|list|rotate-key`. */
export function registerProjectCommands(program: Command, ctx: CliContext): void {
  const project = ctx.group(program, 'project', 'create, list and re-key projects');

  ctx.leaf(project, 'create <name>', 'create a project').action(async (name: string, _opts: unknown, cmd: Command) => {
    const body = parseWith(CreateProjectRequest, { name }, 'project name');
    const created = await ctx.signedClient(cmd).request('POST', '/v1/projects', body, Project);
    ctx.out.result(created, () => `project ${created.name} created (id ${created.projectId}, key version ${created.keyVersion})`);
  });

  ctx.leaf(project, 'list', 'list projects').action(async (_opts: unknown, cmd: Command) => {
    const list = await ctx.signedClient(cmd).request('GET', '/v1/projects', undefined, ProjectList);
    ctx.out.result(list, () => {
      if (list.projects.length === 0) return 'no projects';
      const rows = list.projects.map((p) => [p.name, p.projectId, String(p.keyVersion), p.createdAt]);
      return formatTable([['NAME', 'ID', 'KEY VERSION', 'CREATED'], ...rows]);
    });
  });

  ctx
    .leaf(project, 'rotate-key <name>', "rotate the project's master key (re-wraps data keys)")
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const projectName = parseWith(ProjectName, name, 'project name');
      const client = ctx.signedClient(cmd);
      const rotated = await client.request('POST', `${projectPath(projectName)}/rotate-key`, undefined, RotateProjectKeyResponse);
      ctx.out.result(
        rotated,
        () => `project ${projectName}: master key now version ${rotated.keyVersion}; ${rotated.rewrapped} data keys re-wrapped`,
      );
    });
}
