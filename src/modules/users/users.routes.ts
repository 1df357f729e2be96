import { Type } from 'typebox';
import { requireUser } from '../../core/principal.js';
import { ListQuery } from '../../core/schemas.js';
import { pageRequest, toPage } from '../../core/paging.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { IdParam, listOf } from '../../core/schemas.js';
import type { FastifyInstance } from 'fastify';
import { CreateUserBody, UpdateUserBody, User, UserListItem, userListItemToApi, userToApi } from './users.js';
import type { UsersService } from './users.service.js';

const UserParams = Type.Object({ id: IdParam });

export function registerUserRoutes(app: FastifyInstance, deps: RouteDeps, users: UsersService): void {
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/users',
    summary: 'Create a user (grants the sign-up bonus once)',
    tags: ['users'],
    auth: 'service',
    body: CreateUserBody,
    response: { 201: User, 409: ErrorResponse },
    handler: async (ctx, { body }) => created(userToApi(await users.create(ctx.db, body))),
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/users',
    summary: "List users, newest first, each with their balance and held credits (service)",
    tags: ['users'],
    auth: 'service',
    query: Type.Object(
      {
        ...ListQuery.properties,
        email: Type.Optional(Type.String({ maxLength: 320 })),
        q: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
      },
      { additionalProperties: false },
    ),
    response: { 200: listOf(UserListItem) },
    handler: async (ctx, { query }) => {
      const page = pageRequest(query);
      const rows = await users.list(ctx.db, page, { email: query.email, q: query.q });
      return ok(toPage(rows, page.limit, userListItemToApi));
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/users/:id',
    summary: 'Get a user (the service, or that user)',
    tags: ['users'],
    auth: 'any',
    scope: 'users:read',
    params: UserParams,
    response: { 200: User, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(userToApi(await users.get(ctx.db, ctx.principal, params.id))),
  });

  defineRoute(app, deps, {
    method: 'PATCH',
    url: '/v1/users/:id',
    summary: 'Update a user; end users may change only their profile fields',
    tags: ['users'],
    auth: 'any',
    scope: 'users:write',
    params: UserParams,
    body: UpdateUserBody,
    response: { 200: User, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(userToApi(await users.update(ctx.db, ctx.principal, params.id, body))),
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/me',
    summary: "The caller's own user",
    tags: ['users'],
    auth: 'user',
    response: { 200: User, 404: ErrorResponse },
    handler: async (ctx) => {
      const me = requireUser(ctx.principal);
      return ok(userToApi(await users.get(ctx.db, me, me.userId)));
    },
  });
}
