import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { IdParam } from '../../core/schemas.js';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { SetSpendCapBody, SpendCap } from './workspaces.spend-caps.js';
import type { SpendCapsService } from './workspaces.spend-caps.service.js';

const MemberParams = Type.Object({ id: IdParam, user_id: IdParam });
const Deleted = Type.Object({ id: Type.String(), deleted: Type.Literal(true) });
const tags = ['workspaces'];
const url = '/v1/workspaces/:id/members/:user_id/spend-cap';

/** A member's spend cap on the workspace pool (docs/ledger.md, "Workspace pools"). */
export function registerSpendCapRoutes(app: FastifyInstance, deps: RouteDeps, caps: SpendCapsService): void {
  defineRoute(app, deps, {
    method: 'GET', url, summary: "A member's spend cap on the pool, with what it counts now (the member, owners, admins)", tags,
    auth: 'any', scope: 'workspaces:read', params: MemberParams,
    response: { 200: SpendCap, 403: ErrorResponse, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await caps.get(ctx.db, ctx.principal, params.id, params.user_id)),
  });

  defineRoute(app, deps, {
    method: 'PUT', url,
    summary: "Set a member's spend cap on the pool: credits per UTC calendar month or lifetime (service; owner on others; admin on members and viewers)",
    tags, auth: 'any', scope: 'workspaces:write', params: MemberParams, body: SetSpendCapBody,
    response: { 200: SpendCap, 403: ErrorResponse, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(await caps.set(ctx.db, ctx.principal, params.id, params.user_id, body)),
  });

  defineRoute(app, deps, {
    method: 'DELETE', url, summary: "Remove a member's spend cap (as for setting one; nobody removes their own)", tags,
    auth: 'any', scope: 'workspaces:write', params: MemberParams,
    response: { 200: Deleted, 403: ErrorResponse, 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      await caps.remove(ctx.db, ctx.principal, params.id, params.user_id);
      return ok({ id: params.user_id, deleted: true as const });
    },
  });
}
