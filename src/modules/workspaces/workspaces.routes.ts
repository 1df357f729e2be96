import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { ListQuery } from '../../core/schemas.js';
import { pageRequest, toPage } from '../../core/paging.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { IdParam, listOf } from '../../core/schemas.js';
import {
  AddMemberBody,
  CreateWorkspaceBody,
  Member,
  memberToApi,
  UpdateMemberBody,
  UpdateWorkspaceBody,
  Workspace,
  workspaceToApi,
} from './workspaces.js';
import type { WorkspacesService } from './workspaces.service.js';

const WsParams = Type.Object({ id: IdParam });
const MemberParams = Type.Object({ id: IdParam, user_id: IdParam });
const Deleted = Type.Object({ id: Type.String(), deleted: Type.Literal(true) });
const tags = ['workspaces'];

export function registerWorkspaceRoutes(app: FastifyInstance, deps: RouteDeps, ws: WorkspacesService): void {
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/workspaces', summary: 'Create a workspace (the creator, or owner_id, owns it)', tags,
    auth: 'any', scope: 'workspaces:write',
    body: CreateWorkspaceBody,
    response: { 201: Workspace, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { body }) => created(workspaceToApi(await ws.create(ctx.db, ctx.principal, body))),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/workspaces', summary: "List workspaces (a user's own; the service's all, or one user's)", tags,
    auth: 'any', scope: 'workspaces:read',
    query: Type.Object({ ...ListQuery.properties, user_id: Type.Optional(IdParam) }, { additionalProperties: false }),
    response: { 200: listOf(Workspace) },
    handler: async (ctx, { query }) => {
      const page = pageRequest(query);
      return ok(toPage(await ws.list(ctx.db, ctx.principal, page, query.user_id), page.limit, workspaceToApi));
    },
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/workspaces/:id', summary: 'Get a workspace (members)', tags,
    auth: 'any', scope: 'workspaces:read', params: WsParams,
    response: { 200: Workspace, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(workspaceToApi(await ws.get(ctx.db, ctx.principal, params.id))),
  });

  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/workspaces/:id', summary: 'Update a workspace (owners and admins)', tags,
    auth: 'any', scope: 'workspaces:write', params: WsParams, body: UpdateWorkspaceBody,
    response: { 200: Workspace, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(workspaceToApi(await ws.update(ctx.db, ctx.principal, params.id, body))),
  });

  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/workspaces/:id', summary: 'Delete a workspace (the owner; not one with credit history)', tags,
    auth: 'any', scope: 'workspaces:write', params: WsParams,
    response: { 200: Deleted, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params }) => {
      await ws.remove(ctx.db, ctx.principal, params.id);
      return ok({ id: params.id, deleted: true as const });
    },
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/workspaces/:id/members', summary: "List a workspace's members", tags,
    auth: 'any', scope: 'workspaces:read', params: WsParams, query: ListQuery,
    response: { 200: listOf(Member), 404: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      const page = pageRequest(query);
      return ok(toPage(await ws.members(ctx.db, ctx.principal, params.id, page), page.limit, memberToApi));
    },
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/workspaces/:id/members', summary: 'Add a member (owners and admins)', tags,
    auth: 'any', scope: 'workspaces:write', params: WsParams, body: AddMemberBody,
    response: { 201: Member, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params, body }) => created(memberToApi(await ws.addMember(ctx.db, ctx.principal, params.id, body))),
  });

  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/workspaces/:id/members/:user_id', summary: "Change a member's role", tags,
    auth: 'any', scope: 'workspaces:write', params: MemberParams, body: UpdateMemberBody,
    response: { 200: Member, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params, body }) =>
      ok(memberToApi(await ws.changeRole(ctx.db, ctx.principal, params.id, params.user_id, body.role))),
  });

  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/workspaces/:id/members/:user_id', summary: 'Remove a member, or leave', tags,
    auth: 'any', scope: 'workspaces:write', params: MemberParams,
    response: { 200: Deleted, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params }) => {
      await ws.removeMember(ctx.db, ctx.principal, params.id, params.user_id);
      return ok({ id: params.user_id, deleted: true as const });
    },
  });
}
