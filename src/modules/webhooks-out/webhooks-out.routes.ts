import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { pageRequest } from '../../core/paging.js';
import { IdParam, ListQuery, listOf } from '../../core/schemas.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import type { WebhooksOutService } from './webhooks-out.service.js';
import { DELIVERY_STATUSES, EventTypeName, WebhookDelivery, WebhookEndpoint } from './webhooks-out.js';

const tags = ['webhooks-out'];
const Id = Type.Object({ id: IdParam }, { additionalProperties: false });
const Url = Type.String({ minLength: 8, maxLength: 2048, pattern: '^https?://' });
const EventTypes = Type.Array(EventTypeName, { minItems: 1, maxItems: 64, description: "The event types to receive; ['*'] for all" });
const WithSecret = Type.Object({
  ...WebhookEndpoint.properties,
  secret: Type.String({ description: 'The Standard Webhooks signing secret (whsec_…): shown this once' }),
});

/**
 * Outgoing webhooks (docs/webhooks-out.md): the operator manages every endpoint; a workspace's
 * owner or admin (a session, or an API key with the workspaces scopes) manages that workspace's.
 */
export function registerWebhooksOutRoutes(app: FastifyInstance, deps: RouteDeps, hooks: WebhooksOutService): void {
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/webhook-endpoints', summary: "Add an endpoint Tally sends signed events to; answers its signing secret once (service, or a workspace's owner/admin for its workspace_id)", tags,
    auth: 'any', scope: 'workspaces:write',
    sensitiveResponse: true,
    body: Type.Object(
      {
        url: Url,
        event_types: EventTypes,
        description: Type.Optional(Type.Union([Type.String({ maxLength: 500 }), Type.Null()])),
        workspace_id: Type.Optional(Type.Union([IdParam, Type.Null()])),
      },
      { additionalProperties: false },
    ),
    response: { 201: WithSecret, 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { body }) => created(await hooks.createEndpoint(ctx.db, ctx.principal, body)),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/webhook-endpoints', summary: "List webhook endpoints, newest first (service; a workspace's owner/admin with its workspace_id)", tags,
    auth: 'any', scope: 'workspaces:read',
    query: Type.Object({ ...ListQuery.properties, workspace_id: Type.Optional(IdParam) }, { additionalProperties: false }),
    response: { 200: listOf(WebhookEndpoint), 404: ErrorResponse },
    handler: async (ctx, { query }) => ok(await hooks.listEndpoints(ctx.db, ctx.principal, pageRequest(query), query.workspace_id)),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/webhook-endpoints/:id', summary: "One webhook endpoint and its health (service; a workspace's owner/admin)", tags,
    auth: 'any', scope: 'workspaces:read', params: Id,
    response: { 200: WebhookEndpoint, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await hooks.getEndpoint(ctx.db, ctx.principal, params.id)),
  });

  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/webhook-endpoints/:id', summary: "Change an endpoint; is_active: true re-enables one that was disabled (service; a workspace's owner/admin)", tags,
    auth: 'any', scope: 'workspaces:write', params: Id,
    body: Type.Object(
      {
        url: Type.Optional(Url),
        event_types: Type.Optional(EventTypes),
        description: Type.Optional(Type.Union([Type.String({ maxLength: 500 }), Type.Null()])),
        is_active: Type.Optional(Type.Boolean()),
      },
      { additionalProperties: false },
    ),
    response: { 200: WebhookEndpoint, 400: ErrorResponse, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(await hooks.updateEndpoint(ctx.db, ctx.principal, params.id, body)),
  });

  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/webhook-endpoints/:id', summary: "Delete an endpoint and its delivery log (service; a workspace's owner/admin)", tags,
    auth: 'any', scope: 'workspaces:write', params: Id,
    response: { 200: Type.Object({ id: Type.String(), deleted: Type.Literal(true) }), 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      await hooks.deleteEndpoint(ctx.db, ctx.principal, params.id);
      return ok({ id: params.id, deleted: true as const });
    },
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/webhook-endpoints/:id/rotate-secret',
    summary: "A new signing secret, shown once; the previous one keeps signing for grace_seconds (default a day) (service; a workspace's owner/admin)", tags,
    auth: 'any', scope: 'workspaces:write', params: Id,
    sensitiveResponse: true,
    body: Type.Object({ grace_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 7 * 86_400 })) }, { additionalProperties: false }),
    response: { 200: WithSecret, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(await hooks.rotateSecret(ctx.db, ctx.principal, params.id, body.grace_seconds)),
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/webhook-endpoints/:id/test', summary: "Send a webhook.test event to this endpoint (service; a workspace's owner/admin)", tags,
    auth: 'any', scope: 'workspaces:write', params: Id,
    response: { 202: Type.Object({ message_id: Type.String() }), 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params }) => ({ status: 202, body: await hooks.sendTest(ctx.db, ctx.principal, params.id) }),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/webhook-endpoints/:id/deliveries', summary: "An endpoint's deliveries with their latest attempt, newest first (service; a workspace's owner/admin)", tags,
    auth: 'any', scope: 'workspaces:read', params: Id,
    query: Type.Object({ ...ListQuery.properties, status: Type.Optional(Type.Union(DELIVERY_STATUSES.map((s) => Type.Literal(s)))) }, { additionalProperties: false }),
    response: { 200: listOf(WebhookDelivery), 404: ErrorResponse },
    handler: async (ctx, { params, query }) => ok(await hooks.listDeliveries(ctx.db, ctx.principal, params.id, pageRequest(query), query.status)),
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/webhook-deliveries/:id/retry', summary: "Send a delivery again (a failed one, or a replay of a succeeded one) (service; a workspace's owner/admin)", tags,
    auth: 'any', scope: 'workspaces:write', params: Id,
    response: { 202: WebhookDelivery, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params }) => ({ status: 202, body: await hooks.retryDelivery(ctx.db, ctx.principal, params.id) }),
  });
}
