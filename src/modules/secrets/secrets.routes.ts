import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { ListQuery } from '../../core/schemas.js';
import { pageRequest, toPage } from '../../core/paging.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { IdParam, listOf } from '../../core/schemas.js';
import {
  connectionToApi,
  CreateEnvVarBody,
  CreateServiceTokenBody,
  EnvVar,
  envVarToApi,
  PutConnectionBody,
  RevealedEnvVar,
  RevealedServiceToken,
  ServiceConnection,
  ServiceToken,
  serviceTokenToApi,
} from './secrets.js';
import type { SecretsService } from './secrets.service.js';

const tags = ['secrets'];
const read = { auth: 'any' as const, scope: 'secrets:read' as const };
const write = { auth: 'any' as const, scope: 'secrets:write' as const };
const P = Type.Object({ id: IdParam });
const EnvParams = Type.Object({ id: IdParam, env_id: IdParam });
const ConnParams = Type.Object({ id: IdParam, provider: Type.String({ pattern: '^[a-z0-9_.-]{1,32}$' }) });
const Deleted = Type.Object({ id: Type.String(), deleted: Type.Literal(true) });

export function registerSecretRoutes(app: FastifyInstance, deps: RouteDeps, secrets: SecretsService): void {
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/projects/:id/env-vars', summary: 'Store an environment variable (sealed; answered masked)', tags, ...write,
    params: P, body: CreateEnvVarBody, response: { 201: EnvVar, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => created(envVarToApi(await secrets.createEnvVar(ctx.db, ctx.principal, params.id, body))),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/projects/:id/env-vars', summary: "List a project's environment variables (masked)", tags, ...read,
    params: P, query: ListQuery, response: { 200: listOf(EnvVar), 404: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      const page = pageRequest(query);
      return ok(toPage(await secrets.listEnvVars(ctx.db, ctx.principal, params.id, page), page.limit, envVarToApi));
    },
  });
  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/projects/:id/env-vars/:env_id', summary: 'Delete an environment variable', tags, ...write,
    params: EnvParams, response: { 200: Deleted, 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      await secrets.deleteEnvVar(ctx.db, ctx.principal, params.id, params.env_id);
      return ok({ id: params.env_id, deleted: true as const });
    },
  });
  // Reveals take no Idempotency-Key: an idempotency record would be one more copy of the secret.
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/projects/:id/env-vars/:env_id/reveal', summary: "Reveal a variable's value (project writers; audited)", tags, ...write,
    idempotency: 'none', params: EnvParams, response: { 200: RevealedEnvVar, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await secrets.revealEnvVar(ctx.db, ctx.principal, params.id, params.env_id, ctx.requestId)),
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/service-tokens', summary: "Store a service token or API-integration key (the caller's, or a workspace's); answered masked", tags, ...write,
    body: CreateServiceTokenBody, response: { 201: ServiceToken, 404: ErrorResponse },
    handler: async (ctx, { body }) => created(serviceTokenToApi(await secrets.createServiceToken(ctx.db, ctx.principal, body))),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/service-tokens', summary: "List service tokens (masked): a user's own and their workspaces'", tags, ...read,
    query: Type.Object({ ...ListQuery.properties, user_id: Type.Optional(IdParam), workspace_id: Type.Optional(IdParam) }, { additionalProperties: false }),
    response: { 200: listOf(ServiceToken), 404: ErrorResponse },
    handler: async (ctx, { query }) => {
      const page = pageRequest(query);
      const filter = { ...(query.user_id ? { user_id: query.user_id } : {}), ...(query.workspace_id ? { workspace_id: query.workspace_id } : {}) };
      return ok(toPage(await secrets.listServiceTokens(ctx.db, ctx.principal, page, filter), page.limit, serviceTokenToApi));
    },
  });
  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/service-tokens/:id', summary: 'Delete a service token', tags, ...write,
    params: P, response: { 200: Deleted, 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      await secrets.deleteServiceToken(ctx.db, ctx.principal, params.id);
      return ok({ id: params.id, deleted: true as const });
    },
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/service-tokens/:id/reveal', summary: 'Reveal a service token (its owner; audited)', tags, ...write,
    idempotency: 'none', params: P, response: { 200: RevealedServiceToken, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await secrets.revealServiceToken(ctx.db, ctx.principal, params.id, ctx.requestId)),
  });

  defineRoute(app, deps, {
    method: 'PUT', url: '/v1/projects/:id/connections/:provider', summary: "Connect a project to a service (GitHub, Vercel, Supabase …) or update the connection's data", tags,
    auth: 'any', scope: 'projects:write', params: ConnParams, body: PutConnectionBody, optionalBody: true,
    response: { 200: ServiceConnection, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(connectionToApi(await secrets.putConnection(ctx.db, ctx.principal, params.id, params.provider, body))),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/projects/:id/connections', summary: "List a project's service connections", tags,
    auth: 'any', scope: 'projects:read', params: P, query: ListQuery, response: { 200: listOf(ServiceConnection), 404: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      const page = pageRequest(query);
      return ok(toPage(await secrets.listConnections(ctx.db, ctx.principal, params.id, page), page.limit, connectionToApi));
    },
  });
  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/projects/:id/connections/:provider', summary: 'Disconnect a service from a project', tags,
    auth: 'any', scope: 'projects:write', params: ConnParams, response: { 200: Deleted, 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      await secrets.deleteConnection(ctx.db, ctx.principal, params.id, params.provider);
      return ok({ id: params.provider, deleted: true as const });
    },
  });
}
