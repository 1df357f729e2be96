import type { FastifyInstance } from 'fastify';
import { type Static, type TObject, type TProperties, type TSchema, Type } from 'typebox';
import { pageRequest, toPage } from '../../core/paging.js';
import { IdParam, listOf } from '../../core/schemas.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { CodeAnalysis, codeAnalysisToApi, CreateCodeAnalysisBody } from './ide.code-analyses.js';
import { CodeExecution, codeExecutionToApi, CreateCodeExecutionBody, UpdateCodeExecutionBody } from './ide.code-executions.js';
import { CreateDeploymentBody, Deployment, deploymentToApi, UpdateDeploymentBody } from './ide.deployments.js';
import { CreateEditorSessionBody, EditorSession, editorSessionToApi, UpdateEditorSessionBody } from './ide.editor-sessions.js';
import { CreateGitRepositoryBody, GitRepository, gitRepositoryToApi, UpdateGitRepositoryBody } from './ide.git-repositories.js';
import { ANALYSIS_TYPES, DEPLOYMENT_STATUSES, EDITOR_STATUSES, ENVIRONMENTS, EXECUTION_STATUSES, GIT_PROVIDERS, TERMINAL_STATUSES } from './ide.lifecycles.js';
import { ChildParam, listQuery, literals, ProjectParam, Str, time } from './ide.js';
import type { IdeRow, IdeTable } from './ide.repository.js';
import type { IdeResourceService, IdeServices } from './ide.service.js';
import { CreateTerminalSessionBody, TerminalSession, terminalSessionToApi, UpdateTerminalSessionBody } from './ide.terminal-sessions.js';

const tags = ['ide'];
const read = { auth: 'any' as const, scope: 'projects:read' as const };
const write = { auth: 'any' as const, scope: 'projects:write' as const };
const Deleted = Type.Object({ id: Type.String(), deleted: Type.Literal(true) });

interface Resource<T extends IdeTable, C extends TSchema, U extends TSchema, F extends TProperties> {
  /** the path under /v1/projects/:id/ */
  path: string;
  /** "editor session" */
  name: string;
  item: TSchema;
  toApi: (r: IdeRow<T>) => unknown;
  create: C;
  update?: U;
  /** equality filters on columns of the same name */
  filters: F;
  service: IdeResourceService<T, Static<C>, Static<U>>;
}

/** The five routes every IDE resource has: create, list (cursor, filters, time window), get, update, delete. */
function registerResource<T extends IdeTable, C extends TSchema, U extends TSchema, F extends TProperties>(app: FastifyInstance, deps: RouteDeps, r: Resource<T, C, U, F>): void {
  const base = `/v1/projects/:id/${r.path}`;
  const query = listQuery(r.filters) as unknown as TObject;
  defineRoute(app, deps, {
    method: 'POST', url: base, summary: `Create a ${r.name} in a project (writers)`, tags, ...write, params: ProjectParam, body: r.create,
    response: { 201: r.item, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params, body }) => created(r.toApi(await r.service.create(ctx.db, ctx.principal, params.id, body))),
  });
  defineRoute(app, deps, {
    method: 'GET', url: base, summary: `List a project's ${r.name}s, newest first (filters; created_after/created_before)`, tags, ...read,
    params: ProjectParam, query,
    response: { 200: listOf(r.item), 404: ErrorResponse },
    handler: async (ctx, { params, query: q }) => {
      const raw = q as Record<string, unknown>;
      const page = pageRequest(raw as { limit?: number; cursor?: string });
      const equals: Record<string, string | undefined> = {};
      for (const f of Object.keys(r.filters)) equals[f] = raw[f] as string | undefined;
      const rows = await r.service.list(ctx.db, ctx.principal, params.id, page, {
        equals, createdAfter: time(raw['created_after'] as string | undefined), createdBefore: time(raw['created_before'] as string | undefined),
      });
      return ok(toPage(rows, page.limit, r.toApi));
    },
  });
  defineRoute(app, deps, {
    method: 'GET', url: `${base}/:rid`, summary: `Get a ${r.name}`, tags, ...read, params: ChildParam,
    response: { 200: r.item, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(r.toApi(await r.service.get(ctx.db, ctx.principal, params.id, params.rid))),
  });
  const update = r.update;
  const service = r.service;
  if (update && service.update) {
    const apply = service.update.bind(service);
    defineRoute(app, deps, {
      method: 'PATCH', url: `${base}/:rid`, summary: `Update a ${r.name} (a status move must be legal: 409 invalid_state otherwise, nothing changed)`, tags,
      ...write, params: ChildParam, body: update,
      response: { 200: r.item, 404: ErrorResponse, 409: ErrorResponse },
      handler: async (ctx, { params, body }) => ok(r.toApi(await apply(ctx.db, ctx.principal, params.id, params.rid, body))),
    });
  }
  defineRoute(app, deps, {
    method: 'DELETE', url: `${base}/:rid`, summary: `Delete a ${r.name} (writers)`, tags, ...write, params: ChildParam,
    response: { 200: Deleted, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params }) => {
      await r.service.remove(ctx.db, ctx.principal, params.id, params.rid);
      return ok({ id: params.rid, deleted: true as const });
    },
  });
}

const opt = <T extends TSchema>(t: T) => Type.Optional(t);

/** Seed 002's project resources under /v1/projects/:id/… (docs/ide.md). */
export function registerIdeRoutes(app: FastifyInstance, deps: RouteDeps, ide: IdeServices): void {
  registerResource(app, deps, {
    path: 'editor-sessions', name: 'editor session', item: EditorSession, toApi: editorSessionToApi, create: CreateEditorSessionBody,
    update: UpdateEditorSessionBody, filters: { status: opt(literals(EDITOR_STATUSES)), user_id: opt(IdParam) }, service: ide.editorSessions,
  });
  registerResource(app, deps, {
    path: 'terminal-sessions', name: 'terminal session', item: TerminalSession, toApi: terminalSessionToApi, create: CreateTerminalSessionBody,
    update: UpdateTerminalSessionBody, filters: { status: opt(literals(TERMINAL_STATUSES)), user_id: opt(IdParam) }, service: ide.terminalSessions,
  });
  registerResource(app, deps, {
    path: 'code-executions', name: 'code execution', item: CodeExecution, toApi: codeExecutionToApi, create: CreateCodeExecutionBody,
    update: UpdateCodeExecutionBody, filters: { status: opt(literals(EXECUTION_STATUSES)), user_id: opt(IdParam), language: opt(Str(64)) },
    service: ide.codeExecutions,
  });
  registerResource(app, deps, {
    path: 'code-analyses', name: 'code analysis', item: CodeAnalysis, toApi: codeAnalysisToApi, create: CreateCodeAnalysisBody,
    filters: { analysis_type: opt(literals(ANALYSIS_TYPES)), file_path: opt(Str(1024)) }, service: ide.codeAnalyses,
  });
  registerResource(app, deps, {
    path: 'git-repositories', name: 'git repository', item: GitRepository, toApi: gitRepositoryToApi, create: CreateGitRepositoryBody,
    update: UpdateGitRepositoryBody, filters: { provider: opt(literals(GIT_PROVIDERS)) }, service: ide.gitRepositories,
  });
  registerResource(app, deps, {
    path: 'deployments', name: 'deployment', item: Deployment, toApi: deploymentToApi, create: CreateDeploymentBody, update: UpdateDeploymentBody,
    filters: { status: opt(literals(DEPLOYMENT_STATUSES)), environment: opt(literals(ENVIRONMENTS)) }, service: ide.deployments,
  });
}
