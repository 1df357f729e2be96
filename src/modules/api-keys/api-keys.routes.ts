import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { ListQuery } from '../../core/schemas.js';
import { pageRequest, toPage } from '../../core/paging.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { iso, IdParam, isoOrNull, listOf } from '../../core/schemas.js';
import { ApiKey, apiKeyToApi, CreateApiKeyBody, CreatedApiKey, UpdateApiKeyBody } from './api-keys.js';
import type { ApiKeysService } from './api-keys.service.js';

export function registerApiKeyRoutes(app: FastifyInstance, deps: RouteDeps, keys: ApiKeysService): void {
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/users/:id/api-keys',
    summary: 'Create an API key; the key is shown only in this response',
    tags: ['api-keys'],
    auth: 'any',
    scope: 'keys:write',
    sensitiveResponse: true,
    params: Type.Object({ id: IdParam }),
    body: CreateApiKeyBody,
    response: { 201: CreatedApiKey, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => {
      const { row, key } = await keys.create(ctx.db, ctx.principal, params.id, body);
      return created({
        id: row.id,
        key,
        prefix: row.prefix,
        name: row.name,
        scopes: row.scopes,
        workspace_id: row.workspace_id,
        models: row.models,
        rpm_limit: row.rpm_limit,
        tpm_limit: row.tpm_limit,
        max_concurrency: row.max_concurrency,
        credit_budget: row.credit_budget,
        expires_at: isoOrNull(row.expires_at),
        created_at: iso(row.created_at),
      });
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/users/:id/api-keys',
    summary: "List a user's API keys (never the keys themselves)",
    tags: ['api-keys'],
    auth: 'any',
    scope: 'keys:read',
    params: Type.Object({ id: IdParam }),
    query: ListQuery,
    response: { 200: listOf(ApiKey) },
    handler: async (ctx, { params, query }) => {
      const page = pageRequest(query);
      return ok(toPage(await keys.list(ctx.db, ctx.principal, params.id, page), page.limit, apiKeyToApi));
    },
  });

  defineRoute(app, deps, {
    method: 'PATCH',
    url: '/v1/api-keys/:id',
    summary: "Change an API key's name or gateway limits (service only: an end user never raises a limit)",
    tags: ['api-keys'],
    auth: 'service',
    params: Type.Object({ id: IdParam }),
    body: UpdateApiKeyBody,
    response: { 200: ApiKey, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(apiKeyToApi(await keys.update(ctx.db, params.id, body))),
  });

  defineRoute(app, deps, {
    method: 'DELETE',
    url: '/v1/api-keys/:id',
    summary: 'Revoke an API key',
    tags: ['api-keys'],
    auth: 'any',
    scope: 'keys:write',
    params: Type.Object({ id: IdParam }),
    response: { 200: ApiKey, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(apiKeyToApi(await keys.revoke(ctx.db, ctx.principal, params.id))),
  });
}
