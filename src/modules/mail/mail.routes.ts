import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { pageRequest } from '../../core/paging.js';
import { Email, IdParam, ListQuery, listOf } from '../../core/schemas.js';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { Mail } from './mail.js';
import type { MailService } from './mail.service.js';

const tags = ['mail'];

/** The outbox, for the operator (service only): what was mailed, to whom, and whether it went. */
export function registerMailRoutes(app: FastifyInstance, deps: RouteDeps, mail: MailService): void {
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/mail', summary: 'List mail in the outbox, newest first (service)', tags,
    auth: 'service',
    query: Type.Object(
      {
        ...ListQuery.properties,
        to: Type.Optional(Email),
        user_id: Type.Optional(IdParam),
        template: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9_.]{0,63}$' })),
      },
      { additionalProperties: false },
    ),
    response: { 200: listOf(Mail) },
    handler: async (ctx, { query }) =>
      ok(
        await mail.list(ctx.db, pageRequest(query), {
          ...(query.to ? { to: query.to } : {}),
          ...(query.user_id ? { userId: query.user_id } : {}),
          ...(query.template ? { template: query.template } : {}),
        }),
      ),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/mail/:id',
    summary: 'One mail; its text only when it went to the log (no SMTP configured), never after SMTP took it (service)', tags,
    auth: 'service', params: Type.Object({ id: IdParam }, { additionalProperties: false }),
    response: { 200: Type.Object({ ...Mail.properties, text: Type.Union([Type.String(), Type.Null()]) }), 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await mail.get(ctx.db, params.id)),
  });
}
