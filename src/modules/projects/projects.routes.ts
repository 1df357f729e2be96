import type { FastifyInstance } from 'fastify';
import { Type, type TSchema } from 'typebox';
import { ListQuery } from '../../core/schemas.js';
import { pageRequest, toPage } from '../../core/paging.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { IdParam, listOf } from '../../core/schemas.js';
import {
  AgentSession,
  Commit,
  CompleteRequestBody,
  Conversation,
  CreateCommitBody,
  CreateConversationBody,
  CreateMessageBody,
  CreateProjectBody,
  CreateRequestBody,
  CreateSessionBody,
  CreateToolUsageBody,
  Message,
  Project,
  rowToApi,
  ToolUsage,
  UpdateProjectBody,
  UpdateSessionBody,
  UserRequest,
} from './projects.js';
import type { ProjectChildTable } from './projects.repository.js';
import type { ProjectsService } from './projects.service.js';

const P = Type.Object({ id: IdParam });
const Deleted = Type.Object({ id: Type.String(), deleted: Type.Literal(true) });
const tags = ['projects'];
const read = { auth: 'any' as const, scope: 'projects:read' as const };
const write = { auth: 'any' as const, scope: 'projects:write' as const };

export function registerProjectRoutes(app: FastifyInstance, deps: RouteDeps, projects: ProjectsService): void {
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/projects', summary: 'Create a project owned by the caller (or user_id, for the service) or by a workspace', tags,
    ...write, body: CreateProjectBody,
    response: { 201: Project, 404: ErrorResponse },
    handler: async (ctx, { body }) => created(rowToApi(await projects.create(ctx.db, ctx.principal, body))),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/projects', summary: "List projects (a user's own and their workspaces'; the service's all)", tags,
    ...read,
    query: Type.Object({ ...ListQuery.properties, user_id: Type.Optional(IdParam), workspace_id: Type.Optional(IdParam) }, { additionalProperties: false }),
    response: { 200: listOf(Project), 404: ErrorResponse },
    handler: async (ctx, { query }) => {
      const page = pageRequest(query);
      const filter = { ...(query.user_id ? { user_id: query.user_id } : {}), ...(query.workspace_id ? { workspace_id: query.workspace_id } : {}) };
      return ok(toPage(await projects.list(ctx.db, ctx.principal, page, filter), page.limit, rowToApi));
    },
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/projects/:id', summary: 'Get a project', tags, ...read, params: P,
    response: { 200: Project, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(rowToApi(await projects.get(ctx.db, ctx.principal, params.id))),
  });

  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/projects/:id', summary: 'Update a project (members and up)', tags, ...write, params: P, body: UpdateProjectBody,
    response: { 200: Project, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(rowToApi(await projects.update(ctx.db, ctx.principal, params.id, body))),
  });

  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/projects/:id', summary: 'Delete a project and everything in it (its owner; 409 while one of its billed code executions runs)', tags, ...write, params: P,
    response: { 200: Deleted, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params }) => {
      await projects.remove(ctx.db, ctx.principal, params.id);
      return ok({ id: params.id, deleted: true as const });
    },
  });

  // The project's agent work: one create and one list per kind.
  const collection = <B extends TSchema>(
    path: string,
    table: ProjectChildTable,
    what: string,
    item: TSchema,
    body: B,
    create: (ctx: Parameters<Parameters<typeof defineRoute>[2]['handler']>[0], projectId: string, body: never) => Promise<Record<string, unknown>>,
    filters: Record<string, TSchema> = {},
  ) => {
    defineRoute(app, deps, {
      method: 'POST', url: `/v1/projects/:id/${path}`, summary: `Record ${what} in a project (members and up)`, tags, ...write, params: P, body,
      response: { 201: item, 404: ErrorResponse },
      handler: async (ctx, input) => created(rowToApi(await create(ctx, input.params.id, input.body as never))),
    });
    defineRoute(app, deps, {
      method: 'GET', url: `/v1/projects/:id/${path}`, summary: `List a project's ${path.replace('-', ' ')}, newest first`, tags, ...read, params: P,
      query: Type.Object({ ...ListQuery.properties, ...Object.fromEntries(Object.entries(filters).map(([k, s]) => [k, Type.Optional(s)])) }, { additionalProperties: false }),
      response: { 200: listOf(item), 404: ErrorResponse },
      handler: async (ctx, { params, query }) => {
        const page = pageRequest(query as { limit?: number; cursor?: string });
        const f = Object.fromEntries(Object.keys(filters).map((k) => [k, (query as Record<string, string | undefined>)[k]]));
        return ok(toPage(await projects.listChildren(ctx.db, ctx.principal, params.id, table, page, f), page.limit, rowToApi));
      },
    });
  };

  collection('conversations', 'conversations', 'a conversation', Conversation, CreateConversationBody, (ctx, id, b) => projects.createConversation(ctx.db, ctx.principal, id, b));
  collection('sessions', 'agent_sessions', 'an agent session', AgentSession, CreateSessionBody, (ctx, id, b) => projects.createSession(ctx.db, ctx.principal, id, b), {
    status: Type.String({ maxLength: 32 }),
  });
  collection('messages', 'messages', 'a message (its session totals move with it)', Message, CreateMessageBody, (ctx, id, b) => projects.createMessage(ctx.db, ctx.principal, id, b), {
    session_id: IdParam,
    conversation_id: IdParam,
  });
  collection('tool-usage', 'tool_usages', 'a tool call (its session totals move with it)', ToolUsage, CreateToolUsageBody, (ctx, id, b) => projects.createToolUsage(ctx.db, ctx.principal, id, b), {
    session_id: IdParam,
  });
  collection('requests', 'user_requests', 'a user request', UserRequest, CreateRequestBody, (ctx, id, b) => projects.createRequest(ctx.db, ctx.principal, id, b), {
    session_id: IdParam,
  });
  collection('commits', 'commits', 'a commit', Commit, CreateCommitBody, (ctx, id, b) => projects.createCommit(ctx.db, ctx.principal, id, b), {
    session_id: IdParam,
  });

  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/projects/:id/sessions/:session_id', summary: 'End an agent session once, or update its summary', tags, ...write,
    params: Type.Object({ id: IdParam, session_id: IdParam }), body: UpdateSessionBody,
    response: { 200: AgentSession, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(rowToApi(await projects.updateSession(ctx.db, ctx.principal, params.id, params.session_id, body))),
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/projects/:id/requests/:request_id/complete', summary: 'Complete a user request once, with its outcome', tags, ...write,
    params: Type.Object({ id: IdParam, request_id: IdParam }), body: CompleteRequestBody,
    response: { 200: UserRequest, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(rowToApi(await projects.completeRequest(ctx.db, ctx.principal, params.id, params.request_id, body))),
  });
}
