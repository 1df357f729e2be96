import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { Type } from 'typebox';
import type { Database } from '../../db/database.js';
import { readMigrations } from '../../db/migrate.js';
import { DomainError, errors } from '../../core/errors.js';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';

/** What /ready reports beside the database: this process's workers and cache listener. */
export interface ReadinessProbe {
  queue(): { running: boolean; lastPoll: { at: Date; ok: boolean } | null };
  /** Whether in-process caches hear other processes' writes (false: they read the database). */
  cacheListening(): boolean;
  /** Money operations and usage events waiting in this process, and the bound past which new ones get 503. */
  backlog(): { ledger: number; usage: number; max: number };
}

const DatabaseState = Type.Object({
  kind: Type.Union([Type.Literal('pglite'), Type.Literal('postgres')]),
  reachable: Type.Boolean(),
  latency_ms: Type.Union([Type.Number(), Type.Null()]),
  pooled: Type.Boolean({ description: 'behind a transaction-mode pooler' }),
  pending_migrations: Type.Union([Type.Array(Type.String()), Type.Null()]),
});
const ReadyBody = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not_ready')]),
  database: DatabaseState,
  queue_worker: Type.Object({ running: Type.Boolean(), last_poll_ok: Type.Union([Type.Boolean(), Type.Null()]) }),
  cache_listener: Type.Boolean(),
  backlog: Type.Object(
    { ledger: Type.Integer(), usage: Type.Integer(), max: Type.Integer() },
    { description: 'money operations and usage events waiting in this process; past max, new ones get 503 (reason backlog)' },
  ),
});

export function registerHealthRoutes(app: FastifyInstance, deps: RouteDeps, database: Database, probe: ReadinessProbe): void {
  defineRoute(app, deps, {
    method: 'GET',
    url: '/health',
    summary: 'Liveness and which database is in use',
    tags: ['meta'],
    auth: 'none',
    runAsOwner: true,
    response: {
      200: Type.Object({ status: Type.Literal('ok'), database: Type.Union([Type.Literal('pglite'), Type.Literal('postgres')]) }),
      503: ErrorResponse,
    },
    handler: async () => {
      try {
        await sql`select 1`.execute(database.db);
      } catch {
        throw errors.unavailable('Database unreachable');
      }
      return ok({ status: 'ok' as const, database: database.kind });
    },
  });

  const expected = readMigrations().map((m) => ({ version: m.version, name: m.name }));
  defineRoute(app, deps, {
    method: 'GET',
    url: '/ready',
    // 200 when this process can serve: the database answered (with its latency), no migration is
    // pending and the background worker's last poll (if it runs here) succeeded. Otherwise 503
    // `unavailable` with the same report in `details`.
    summary: 'Readiness for load balancers: the database answers, migrations are applied, workers run',
    tags: ['meta'],
    auth: 'none',
    runAsOwner: true,
    response: { 200: ReadyBody, 503: ErrorResponse },
    handler: async () => {
      const started = performance.now();
      let reachable = true;
      let pending: string[] | null = null;
      try {
        const applied = await sql<{ version: number }>`select version from ${sql.id(database.schema)}.tally_migrations`.execute(database.root);
        const done = new Set(applied.rows.map((r) => r.version));
        pending = expected.filter((m) => !done.has(m.version)).map((m) => m.name);
      } catch {
        reachable = false;
      }
      const queue = probe.queue();
      const body = {
        database: {
          kind: database.kind,
          reachable,
          latency_ms: reachable ? Math.round((performance.now() - started) * 100) / 100 : null,
          pooled: database.pooled ?? false,
          pending_migrations: pending,
        },
        queue_worker: { running: queue.running, last_poll_ok: queue.lastPoll ? queue.lastPoll.ok : null },
        cache_listener: probe.cacheListening(),
        backlog: probe.backlog(),
      };
      const ready = reachable && pending !== null && pending.length === 0 && !(queue.running && queue.lastPoll?.ok === false);
      if (!ready) throw new DomainError('unavailable', 'Not ready', { ...body, status: 'not_ready' });
      return ok({ status: 'ready' as const, ...body });
    },
  });
}
