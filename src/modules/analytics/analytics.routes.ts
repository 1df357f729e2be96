import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { pageRequest, toPage } from '../../core/paging.js';
import { IdParam, ListQuery, listOf, Timestamp } from '../../core/schemas.js';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { AnalyticsEvent, analyticsRowToApi, EventCounts, EventsAnswer, EventsBody } from './analytics.js';
import type { AnalyticsService } from './analytics.service.js';

const tags = ['analytics'];
const EventName = Type.String({ minLength: 1, maxLength: 200 });

const ListFilters = Type.Object(
  {
    ...ListQuery.properties,
    event: Type.Optional(EventName),
    user_id: Type.Optional(IdParam),
    anonymous_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    session_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    from: Type.Optional(Timestamp),
    to: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);

const CountsQuery = Type.Object(
  { event: Type.Optional(EventName), user_id: Type.Optional(IdParam), from: Type.Optional(Timestamp), to: Type.Optional(Timestamp) },
  { additionalProperties: false },
);

const date = (s: string | undefined) => (s ? { value: new Date(s) } : null);

/** Product analytics: apps send events (service or the signed-in user); the service reads them. */
export function registerAnalyticsRoutes(app: FastifyInstance, deps: RouteDeps, analytics: AnalyticsService): void {
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/analytics/events',
    summary: 'Send up to 100 product events (idempotent by each event id per caller; a user only about themself)', tags,
    auth: 'any', scope: 'analytics:write',
    body: EventsBody, response: { 200: EventsAnswer, 404: ErrorResponse },
    handler: async (ctx, { body }) => ok(await analytics.send(ctx.db, ctx.principal, ctx.requestId, body.events)),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/analytics/events', summary: 'Analytics events, newest received first (service; filters on name, user, anonymous id, session, occurred_at)', tags,
    auth: 'service', query: ListFilters, response: { 200: listOf(AnalyticsEvent) },
    handler: async (ctx, { query }) => {
      const page = pageRequest(query);
      const from = date(query.from);
      const to = date(query.to);
      const rows = await analytics.list(ctx.db, ctx.principal, page, {
        ...(query.event ? { event: query.event } : {}),
        ...(query.user_id ? { userId: query.user_id } : {}),
        ...(query.anonymous_id ? { anonymousId: query.anonymous_id } : {}),
        ...(query.session_id ? { sessionId: query.session_id } : {}),
        ...(from ? { from: from.value } : {}),
        ...(to ? { to: to.value } : {}),
      });
      return ok(toPage(rows, page.limit, analyticsRowToApi));
    },
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/analytics/events/counts', summary: 'Event counts per UTC day and event name (service; default the last 30 days, at most 400)', tags,
    auth: 'service', query: CountsQuery, response: { 200: EventCounts },
    handler: async (ctx, { query }) => {
      const from = date(query.from);
      const to = date(query.to);
      return ok(await analytics.counts(ctx.db, ctx.principal, {
        ...(from ? { from: from.value } : {}),
        ...(to ? { to: to.value } : {}),
        ...(query.event ? { event: query.event } : {}),
        ...(query.user_id ? { userId: query.user_id } : {}),
      }));
    },
  });
}
