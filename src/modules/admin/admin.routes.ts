import type { FastifyInstance } from 'fastify';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ReconcileReport, Stats, StatsQuery } from './admin.js';
import type { AdminService } from './admin.service.js';

const tags = ['admin'];

/** Operator views the dashboard needs and no resource route gives. Service only. */
export function registerAdminRoutes(app: FastifyInstance, deps: RouteDeps, admin: AdminService): void {
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/admin/stats',
    summary: 'Totals now and activity per minute, hour or day (users, credits granted/spent/held/expired, revenue, events)',
    tags, auth: 'service', query: StatsQuery,
    response: { 200: Stats },
    handler: async (ctx, { query }) => ok(await admin.stats(ctx.db, query)),
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/admin/reconcile',
    summary: "Run `tally reconcile`'s checks now: every balance against its ledger, every hold against its status",
    // Read-only: running it twice is harmless, so it takes no Idempotency-Key.
    tags, auth: 'service', idempotency: 'none', optionalBody: true,
    response: { 200: ReconcileReport },
    handler: async (ctx) => ok(await admin.reconcile(ctx.db)),
  });
}
