import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { pageRequest, toPage } from '../../core/paging.js';
import { IdParam, ListQuery, listOf, Timestamp } from '../../core/schemas.js';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ACTOR_KINDS, AuditActionSchema, AuditEntry, auditRowToApi, AuditVerification } from './audit.js';
import type { AuditService } from './audit.service.js';

const tags = ['audit'];

const AuditQuery = Type.Object(
  {
    ...ListQuery.properties,
    actor_kind: Type.Optional(Type.Union(ACTOR_KINDS.map((k) => Type.Literal(k)))),
    actor_id: Type.Optional(IdParam),
    action: Type.Optional(AuditActionSchema()),
    target_table: Type.Optional(Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z_]+$' })),
    target_id: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    request_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    from: Type.Optional(Timestamp),
    to: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);

/** The audit log, read-only: there is no route that writes, changes or deletes it. */
export function registerAuditRoutes(app: FastifyInstance, deps: RouteDeps, audit: AuditService): void {
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/audit', summary: 'The audit log of money and admin actions (service), newest first', tags, auth: 'service',
    query: AuditQuery, response: { 200: listOf(AuditEntry) },
    handler: async (ctx, { query }) => {
      const page = pageRequest(query);
      const rows = await audit.list(ctx.db, ctx.principal, page, {
        ...(query.actor_kind ? { actorKind: query.actor_kind } : {}),
        ...(query.actor_id ? { actorId: query.actor_id } : {}),
        ...(query.action ? { action: query.action } : {}),
        ...(query.target_table ? { targetTable: query.target_table } : {}),
        ...(query.target_id ? { targetId: query.target_id } : {}),
        ...(query.request_id ? { requestId: query.request_id } : {}),
        ...(query.from ? { from: new Date(query.from) } : {}),
        ...(query.to ? { to: new Date(query.to) } : {}),
      });
      return ok(toPage(rows, page.limit, auditRowToApi));
    },
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/audit/verify', summary: "Check the audit log's hash chain from the first row to the head (service)", tags, auth: 'service',
    response: { 200: AuditVerification },
    handler: async (ctx) => ok(await audit.verify(ctx.db)),
  });
}
