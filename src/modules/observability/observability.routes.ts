import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { errors } from '../../core/errors.js';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { installRequestRecording } from '../../http/request-recording.js';
import {
  ApiLogList,
  ErrorGroupList,
  ErrorQuery,
  LatencyMinutesQuery,
  LatencyMinutesReport,
  LatencyQuery,
  LatencyReport,
  RequestLogQuery,
} from './observability.schemas.js';
import type { ObservabilityService } from './observability.service.js';

const tags = ['observability'];
const date = (v: string | undefined): Date | undefined => (v === undefined ? undefined : new Date(v));

/**
 * The operator's logs and latency (service only), GET /metrics for Prometheus (the service key or
 * the metrics token), and the hook that reports every answered request to the service.
 */
export function registerObservabilityRoutes(
  app: FastifyInstance,
  deps: RouteDeps,
  observability: ObservabilityService,
  options: { serviceKey: string; metricsToken?: string; now: () => Date },
): void {
  installRequestRecording(app, observability, options.now);
  // Flushed before the database closes: the server closes first (src/cli/start.ts), then the pool.
  app.addHook('onClose', async () => observability.close());

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/logs/requests',
    summary: 'Request logs, newest first: filter by status or status class, route template, method, user, request id, time range',
    tags, auth: 'service', query: RequestLogQuery,
    response: { 200: ApiLogList },
    handler: async (_ctx, { query }) => {
      const from = date(query.from);
      const to = date(query.to);
      return ok(
        await observability.listRequests({
          ...(query.limit !== undefined ? { limit: query.limit } : {}),
          ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
          ...(query.status !== undefined ? { status: query.status } : {}),
          ...(query.status_class !== undefined ? { statusClass: query.status_class } : {}),
          ...(query.route !== undefined ? { route: query.route } : {}),
          ...(query.method !== undefined ? { method: query.method } : {}),
          ...(query.user_id !== undefined ? { callerId: query.user_id } : {}),
          ...(query.request_id !== undefined ? { requestId: query.request_id } : {}),
          ...(from ? { from } : {}),
          ...(to ? { to } : {}),
        }),
      );
    },
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/logs/errors',
    summary: '5xx errors grouped by fingerprint (class, normalized message, top frames): count, first and last seen, the latest occurrence',
    tags, auth: 'service', query: ErrorQuery,
    response: { 200: ErrorGroupList },
    handler: async (_ctx, { query }) => {
      const from = date(query.from);
      const to = date(query.to);
      if (from && to && from >= to) throw errors.invalidRequest('from must be before to', { field: 'from' });
      return ok(
        await observability.listErrors({
          ...(query.limit !== undefined ? { limit: query.limit } : {}),
          ...(query.route !== undefined ? { route: query.route } : {}),
          ...(from ? { from } : {}),
          ...(to ? { to } : {}),
        }),
      );
    },
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/metrics/latency',
    summary: 'p50/p95/p99 latency per route over the last `minutes` (default 60), from the request logs',
    tags, auth: 'service', query: LatencyQuery,
    response: { 200: LatencyReport },
    handler: async (_ctx, { query }) => ok(await observability.latency(query.minutes ?? 60)),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/metrics/latency/minutes',
    summary: 'Per-minute p50/p95/p99 per route (performance_metrics, computed by the scheduler), newest first',
    tags, auth: 'service', query: LatencyMinutesQuery,
    response: { 200: LatencyMinutesReport },
    handler: async (_ctx, { query }) =>
      ok(
        await observability.latencyMinutes({
          minutes: query.minutes ?? 60,
          ...(query.route !== undefined ? { route: query.route } : {}),
          ...(query.method !== undefined ? { method: query.method } : {}),
        }),
      ),
  });

  // Prometheus scrapes text, not JSON, and may hold a token of its own instead of the service key:
  // a plain route with its own check (errors still go through the one handler and envelope).
  const accepted = [options.serviceKey, options.metricsToken].filter((t): t is string => typeof t === 'string').map((t) => Buffer.from(t));
  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? Buffer.from(header.slice(7)) : null;
    if (!token) throw errors.unauthenticated();
    if (!accepted.some((a) => a.length === token.length && timingSafeEqual(a, token))) throw errors.unauthenticated('Not the service key or the metrics token');
    const { contentType, body } = await observability.metrics.render();
    return reply.type(contentType).send(body);
  });
}
