import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { sql } from 'kysely';
import type { FastifyBaseLogger } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import type { ObservabilityConfig } from '../src/config/config.js';
import { apiLogsInsert } from '../src/modules/observability/observability.repository.js';
import type { StoredApiLog } from '../src/modules/observability/observability.js';
import { client } from './support/client.js';
import { makeApiKey, makeUser, signUp } from './support/fixtures.js';
import { createTestApp, createTestDb, TARGET, type TestApp, testConfig } from './support/harness.js';

/** Buffered for a minute: rows reach the table only when a test flushes (or the server closes). */
const observability = (over: Partial<ObservabilityConfig> = {}): ObservabilityConfig => ({
  requestLogs: { batchSize: 10_000, flushMs: 60_000, maxBuffered: 100_000 },
  errorLogs: true,
  retentionDays: { api_logs: 30, error_logs: 90, performance_metrics: 90 },
  ...over,
});

const row = (at: Date, over: Partial<StoredApiLog> = {}): StoredApiLog => ({
  requestId: `req_${randomBytes(10).toString('hex')}`,
  at,
  method: 'GET',
  route: '/v1/things/:id',
  path: '/v1/things/1',
  status: 200,
  durationMs: 1,
  callerKind: 'service',
  callerId: null,
  apiKeyId: null,
  requestBytes: null,
  responseBytes: null,
  ip: null,
  userAgent: null,
  ...over,
});

describe(`request logs, error logs and latency (${TARGET})`, () => {
  let app: TestApp;
  const svc = () => client(app.server, app.serviceKey);
  const metricsToken = `mt_${randomBytes(24).toString('hex')}`;

  beforeAll(async () => {
    app = await createTestApp({ observability: observability({ metricsToken }) });
  });
  afterAll(async () => {
    await app.close();
  });

  it('logs every answered request once, off the request path, with its route template, caller and sizes', async () => {
    const user = await makeUser(app);
    const key = await makeApiKey(app, user.id);
    const asKey = client(app.server, key.key);
    const mine = await asKey.get(`/v1/users/${user.id}`, { headers: { 'user-agent': 'tally-test/1.0 (linux)' } });
    expect(mine.status).toBe(200);
    const missing = await svc().get('/v1/users/usr_nobody');
    expect(missing.status).toBe(404);
    // Nothing is written on the request's path: the rows wait in the buffer.
    const before = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(`${app.database.schema}.api_logs`)} where request_id = ${String(mine.headers['x-request-id'])}`.execute(app.database.db);
    expect(before.rows[0]?.n).toBe(0);
    await app.services.observability.flush();

    const byId = await svc().get(`/v1/logs/requests?request_id=${String(mine.headers['x-request-id'])}`);
    expect(byId.status).toBe(200);
    expect(byId.body.data).toHaveLength(1);
    expect(byId.body.data[0]).toMatchObject({
      method: 'GET', route: '/v1/users/:id', path: `/v1/users/${user.id}`, status: 200,
      caller_kind: 'user', caller_id: user.id, api_key_id: key.id, ip: '127.0.0.1', user_agent: 'tally-test/1.0',
    });
    expect(byId.body.data[0].duration_ms).toBeGreaterThan(0);
    expect(byId.body.data[0].response_bytes).toBeGreaterThan(0);

    const notFound = await svc().get('/v1/logs/requests?status=404&route=/v1/users/:id');
    expect(notFound.body.data.map((l: { request_id: string }) => l.request_id)).toContain(String(missing.headers['x-request-id']));
    expect(notFound.body.data.every((l: { status: number }) => l.status === 404)).toBe(true);
    const fourxx = await svc().get('/v1/logs/requests?status_class=4');
    expect(fourxx.body.data.length).toBeGreaterThan(0);
    expect(fourxx.body.data.every((l: { status: number }) => l.status >= 400 && l.status < 500)).toBe(true);
    const byUser = await svc().get(`/v1/logs/requests?user_id=${user.id}`);
    expect(byUser.body.data).toHaveLength(1);
    const future = await svc().get(`/v1/logs/requests?from=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`);
    expect(future.body.data).toHaveLength(0);
  });

  it('pages newest first with a cursor, none repeated or skipped', async () => {
    for (let i = 0; i < 5; i++) await svc().get('/v1/users/usr_paging');
    await app.services.observability.flush();
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { data: { request_id: string; created_at: string }[]; next_cursor: string | null } } = await svc().get(
        `/v1/logs/requests?path_unused=1`.replace('?path_unused=1', `?limit=2&status=404${cursor ? `&cursor=${cursor}` : ''}`),
      );
      seen.push(...page.body.data.map((l) => l.request_id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBeGreaterThanOrEqual(5);
  });

  it('refuses bad filters with 400 and a clear field', async () => {
    for (const q of ['status=99', 'status_class=7', 'from=yesterday', 'cursor=nope', 'limit=0', 'colour=red']) {
      const res = await svc().get(`/v1/logs/requests?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    const backwards = await svc().get(`/v1/logs/requests?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z`);
    expect(backwards.status).toBe(400);
  });

  it('the logs are the service’s alone', async () => {
    const { token } = await signUp(app);
    for (const url of ['/v1/logs/requests', '/v1/logs/errors', '/v1/metrics/latency', '/v1/metrics/latency/minutes']) {
      expect((await client(app.server, token).get(url)).status, url).toBe(403);
      expect((await client(app.server, null).get(url)).status, url).toBe(401);
    }
  });

  it('groups 5xx errors by fingerprint: same class, message shape and frames → one group with its count', async () => {
    const original = app.services.admin.stats.bind(app.services.admin);
    let n = 0;
    app.services.admin.stats = async () => {
      n++;
      throw new TypeError(`cannot read row ${n} of acc_01HZX${n}ABCDEFGHJKMNPQRSTVW`.slice(0, 60));
    };
    try {
      const first = await svc().get('/v1/admin/stats');
      const second = await svc().get('/v1/admin/stats');
      expect(first.status).toBe(500);
      expect(second.status).toBe(500);
      await app.services.observability.flush();
      const groups = await svc().get('/v1/logs/errors?route=/v1/admin/stats');
      expect(groups.status).toBe(200);
      expect(groups.body.data).toHaveLength(1);
      expect(groups.body.data[0]).toMatchObject({ error_class: 'TypeError', route: '/v1/admin/stats', method: 'GET', count: 2, last_request_id: second.headers['x-request-id'] });
      expect(groups.body.data[0].last_stack).toContain('TypeError');
      expect(new Date(groups.body.data[0].first_seen) <= new Date(groups.body.data[0].last_seen)).toBe(true);
    } finally {
      app.services.admin.stats = original;
    }
  });

  it('GET /metrics: the service key or the metrics token, Prometheus text with requests, ledger batches, queue and process', async () => {
    const user = await makeUser(app);
    const debit = await svc().post('/v1/credits/debit', { user_id: user.id, amount: 1, reason: 'metrics' }, { idempotencyKey: `m-${randomBytes(4).toString('hex')}` });
    expect(debit.status).toBe(201);
    expect((await client(app.server, null).get('/metrics')).status).toBe(401);
    const { token } = await signUp(app);
    const asUser = await app.server.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
    expect(asUser.statusCode).toBe(401);
    expect(JSON.parse(asUser.body).error.code).toBe('unauthenticated');
    for (const bearer of [metricsToken, app.serviceKey]) {
      const res = await app.server.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${bearer}` } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toContain('text/plain');
      const text = res.body;
      expect(text).toMatch(/tally_http_requests_total\{method="POST",route="\/v1\/credits\/debit",status="201"\} 1/);
      expect(text).toMatch(/tally_http_request_duration_seconds_bucket\{le="[^"]+",method="POST",route="\/v1\/credits\/debit",status="201"\}/);
      expect(text).toMatch(/tally_ledger_batch_size_count\{queue="ledger"\} \d+/);
      expect(text).toMatch(/tally_ledger_batch_duration_seconds_count\{queue="ledger",outcome="ok"\} \d+/);
      expect(text).toMatch(/tally_queue_depth \d+/);
      expect(text).toMatch(/tally_queue_lag_seconds \d/);
      expect(text).toMatch(/tally_api_logs_dropped_total 0/);
      expect(text).toContain('process_cpu_user_seconds_total');
      expect(text).toContain('nodejs_eventloop_lag_seconds');
    }
  });

  it('GET /metrics shows each gateway upstream’s circuit state', async () => {
    const up = await svc().post('/v1/gateway/upstreams', { type: 'openai', base_url: 'https://api.example.com/v1/', credentials: 'sk-test-000000000000', models: ['gpt-4o'] });
    expect(up.status).toBe(201);
    const res = await app.server.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${metricsToken}` } });
    expect(res.body).toContain(`tally_gateway_upstream_state{upstream="${up.body.id}",type="openai",state="closed"} 1`);
    expect(res.body).toContain(`tally_gateway_upstream_state{upstream="${up.body.id}",type="openai",state="open"} 0`);
  });

  it('per-route p50/p95/p99 over a window, and per minute computed by the scheduler (idempotently)', async () => {
    const minute = new Date(Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000);
    const rows = Array.from({ length: 100 }, (_, i) => row(new Date(minute.getTime() + i * 100), { route: '/v1/latency/:probe', durationMs: i + 1, status: i < 3 ? 503 : 200 }));
    await apiLogsInsert(app.database.db, app.database.schema, rows);
    await app.services.observability.computeMinutes(new Date());
    await app.services.observability.computeMinutes(new Date());
    const series = await svc().get('/v1/metrics/latency/minutes?route=/v1/latency/:probe&minutes=30');
    expect(series.status).toBe(200);
    expect(series.body.data).toHaveLength(1);
    expect(series.body.data[0]).toMatchObject({ minute: minute.toISOString(), method: 'GET', requests: 100, errors: 3, p50_ms: 50.5, max_ms: 100 });
    expect(series.body.data[0].p95_ms).toBeCloseTo(95.05, 5);
    expect(series.body.data[0].p99_ms).toBeCloseTo(99.01, 5);
    const window = await svc().get('/v1/metrics/latency?minutes=30');
    const probe = window.body.data.find((r: { route: string }) => r.route === '/v1/latency/:probe');
    expect(probe).toMatchObject({ requests: 100, errors: 3, p50_ms: 50.5 });
  });
});

describe(`request-log buffer (${TARGET})`, () => {
  const logger = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

  it('loses no row on shutdown: the server’s close writes every buffered row', async () => {
    const db = await createTestDb();
    try {
      const config = testConfig(db.database, { observability: observability() });
      const app = await createApp({ config, database: db.database, logger });
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) {
        const res = await app.server.inject({ method: 'GET', url: `/v1/users/usr_gone${i}`, headers: { authorization: `Bearer ${config.auth.serviceKey}` } });
        ids.push(String(res.headers['x-request-id']));
      }
      await app.server.close();
      await app.services.queue.stop();
      const stored = await db.database.db.selectFrom('api_logs').select('request_id').where('request_id', 'in', ids).execute();
      expect(stored).toHaveLength(40);
    } finally {
      await db.close();
    }
  });

  it('a full buffer drops new rows and counts them (bounded memory), reported by /metrics', async () => {
    const app = await createTestApp({ observability: observability({ requestLogs: { batchSize: 10_000, flushMs: 60_000, maxBuffered: 3 } }) });
    try {
      for (let i = 0; i < 8; i++) await client(app.server, app.serviceKey).get('/v1/users/usr_full');
      const metrics = await app.server.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${app.serviceKey}` } });
      expect(metrics.body).toMatch(/tally_api_logs_dropped_total 5/);
      expect(metrics.body).toMatch(/tally_api_logs_buffered 3/);
      await app.services.observability.flush();
      const n = await app.database.db.selectFrom('api_logs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      expect(Number(n.n)).toBe(3);
    } finally {
      await app.close();
    }
  });

  it('TALLY_API_LOGS=off writes no request rows', async () => {
    const app = await createTestApp({ observability: observability({ requestLogs: null }) });
    try {
      await client(app.server, app.serviceKey).get('/v1/users/usr_off');
      await app.services.observability.flush();
      const n = await app.database.db.selectFrom('api_logs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      expect(Number(n.n)).toBe(0);
    } finally {
      await app.close();
    }
  });
});
