import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { pageRequest, toPage } from '../../core/paging.js';
import { IdParam, ListQuery, listOf } from '../../core/schemas.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { CreateUpstreamBody, REQUEST_STATUSES, UpdateUpstreamBody, Upstream, UsageRecord, upstreamToApi, usageRecordToApi } from './gateway.js';
import type { GatewayUsageService } from './gateway.usage.service.js';
import type { UpstreamsService } from './gateway.upstreams.service.js';

const tags = ['gateway'];
const P = Type.Object({ id: IdParam });

const UsageFilters = {
  model: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  status: Type.Optional(Type.Union(REQUEST_STATUSES.map((s) => Type.Literal(s)))),
  request_id: Type.Optional(IdParam),
};
const UsageQuery = Type.Object({ ...ListQuery.properties, ...UsageFilters, user_id: Type.Optional(IdParam) }, { additionalProperties: false });
const UserUsageQuery = Type.Object({ ...ListQuery.properties, ...UsageFilters }, { additionalProperties: false });

/** Upstream accounts (service key): the operator's provider credentials, write-only. And usage records. */
export function registerGatewayRoutes(app: FastifyInstance, deps: RouteDeps, upstreams: UpstreamsService, usage: GatewayUsageService): void {
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/gateway/usage', summary: "Gateway usage records (one per relayed request; id = the response's x-request-id)", tags, auth: 'service',
    query: UsageQuery, response: { 200: listOf(UsageRecord) },
    handler: async (ctx, { query }) => {
      const page = pageRequest(query);
      const filter = { ...(query.user_id ? { userId: query.user_id } : {}), ...(query.model ? { model: query.model } : {}), ...(query.status ? { status: query.status } : {}), ...(query.request_id ? { requestId: query.request_id } : {}) };
      return ok(toPage(await usage.list(ctx.db, ctx.principal, page, filter), page.limit, usageRecordToApi));
    },
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/users/:id/gateway/usage', summary: "A user's gateway usage records", tags, auth: 'any', scope: 'credits:read',
    params: P, query: UserUsageQuery, response: { 200: listOf(UsageRecord), 404: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      const page = pageRequest(query);
      const filter = { ...(query.model ? { model: query.model } : {}), ...(query.status ? { status: query.status } : {}), ...(query.request_id ? { requestId: query.request_id } : {}) };
      return ok(toPage(await usage.listForUser(ctx.db, ctx.principal, params.id, page, filter), page.limit, usageRecordToApi));
    },
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/gateway/upstreams', summary: 'Add an upstream account (credentials sealed, never returned)', tags, auth: 'service',
    body: CreateUpstreamBody, response: { 201: Upstream },
    handler: async (ctx, { body }) => created(upstreamToApi(await upstreams.create(ctx.db, ctx.principal, body))),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/gateway/upstreams', summary: 'List upstream accounts with their health', tags, auth: 'service',
    query: ListQuery, response: { 200: listOf(Upstream) },
    handler: async (ctx, { query }) => {
      const page = pageRequest(query);
      return ok(toPage(await upstreams.list(ctx.db, ctx.principal, page), page.limit, upstreamToApi));
    },
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/gateway/upstreams/:id', summary: 'An upstream account and its health (state, counters, cooldown, last error)', tags, auth: 'service',
    params: P, response: { 200: Upstream, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(upstreamToApi(await upstreams.get(ctx.db, ctx.principal, params.id))),
  });
  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/gateway/upstreams/:id', summary: 'Change an upstream account (new credentials or is_active: true re-enable a disabled one)', tags, auth: 'service',
    params: P, body: UpdateUpstreamBody, response: { 200: Upstream, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(upstreamToApi(await upstreams.update(ctx.db, ctx.principal, params.id, body))),
  });
  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/gateway/upstreams/:id', summary: 'Delete an upstream account', tags, auth: 'service',
    params: P, response: { 200: Type.Object({ id: Type.String(), deleted: Type.Literal(true) }), 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      await upstreams.remove(ctx.db, ctx.principal, params.id);
      return ok({ id: params.id, deleted: true as const });
    },
  });
}
