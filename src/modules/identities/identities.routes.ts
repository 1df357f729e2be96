import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { IdParam } from '../../core/schemas.js';
import { Identity, identityToApi, LinkIdentityBody } from './identities.js';
import type { IdentitiesService } from './identities.service.js';

const tags = ['identities'];

export function registerIdentityRoutes(app: FastifyInstance, deps: RouteDeps, identities: IdentitiesService): void {
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/users/:id/identities', summary: 'Link a provider login (tokens are encrypted at rest, never returned)', tags,
    auth: 'service', params: Type.Object({ id: IdParam }), body: LinkIdentityBody,
    response: { 200: Identity, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(identityToApi(await identities.link(ctx.db, params.id, body))),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/users/:id/identities', summary: "A user's linked logins (no tokens)", tags,
    auth: 'any', scope: 'users:read', params: Type.Object({ id: IdParam }),
    response: { 200: Type.Object({ data: Type.Array(Identity) }) },
    handler: async (ctx, { params }) => ok({ data: (await identities.list(ctx.db, ctx.principal, params.id)).map(identityToApi) }),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/identities/:provider/:provider_user_id', summary: 'Find the user a provider account is linked to', tags,
    auth: 'service',
    params: Type.Object({ provider: Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }), provider_user_id: Type.String({ minLength: 1, maxLength: 255 }) }),
    response: { 200: Identity, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(identityToApi(await identities.find(ctx.db, params.provider, params.provider_user_id))),
  });
  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/users/:id/identities/:provider', summary: 'Unlink a provider login', tags,
    auth: 'service', params: Type.Object({ id: IdParam, provider: Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }) }),
    response: { 200: Type.Object({ id: Type.String(), deleted: Type.Literal(true) }), 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      await identities.unlink(ctx.db, ctx.principal, params.id, params.provider);
      return ok({ id: params.provider, deleted: true as const });
    },
  });
}
