import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { client, type Json } from './support/client.js';
import { makeApiKey, makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * Analytics events (docs/analytics.md): idempotent by the sender's id per caller, a user only
 * about themself, bounded batches and sizes with clear 4xx that store nothing, service reads and a
 * daily aggregate, and retention.
 */
describe(`analytics events (${TARGET})`, () => {
  let app: TestApp;
  const days = (n: number) => new Date(Date.now() + n * 86_400_000).toISOString();
  const svc = () => client(app.server, app.serviceKey);
  const cid = () => `c-${randomBytes(6).toString('hex')}`;
  const count = async () => (await sql<{ n: number }>`select count(*)::int as n from ${sql.table(`${app.database.schema}.analytics_events`)}`.execute(app.database.db)).rows[0]?.n ?? 0;

  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('a replayed batch inserts nothing twice and answers the same event ids', async () => {
    const u = await makeUser(app);
    const events = [
      { id: cid(), event: 'signed_up', user_id: u.id, properties: { plan: 'free' } },
      { id: cid(), event: 'page_viewed', user_id: u.id, properties: { path: '/home' }, session_id: 's1' },
      { id: cid(), event: 'page_viewed', anonymous_id: 'anon-42' },
    ];
    const first = await svc().post('/v1/analytics/events', { events });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ inserted: 3, duplicates: 0 });
    const before = await count();
    const again = await svc().post('/v1/analytics/events', { events });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ inserted: 0, duplicates: 3 });
    expect(again.body.results.map((r: Json) => r.event_id)).toEqual(first.body.results.map((r: Json) => r.event_id));
    expect(await count()).toBe(before);
    // The same id twice in one batch: stored once.
    const twice = cid();
    const dup = await svc().post('/v1/analytics/events', { events: [{ id: twice, event: 'x', user_id: u.id }, { id: twice, event: 'x', user_id: u.id }] });
    expect(dup.body).toMatchObject({ inserted: 1, duplicates: 1 });
    expect(dup.body.results[0].event_id).toBe(dup.body.results[1].event_id);
    const listed = await svc().get(`/v1/analytics/events?user_id=${u.id}&limit=200`);
    expect(listed.body.data).toHaveLength(3);
    expect(listed.body.data.find((e: Json) => e.event === 'signed_up')).toMatchObject({ source: 'service', properties: { plan: 'free' }, user_id: u.id, request_id: first.headers['x-request-id'] });
  });

  it("ids are per caller: a user's id and the service's id never collide", async () => {
    const me = await signUp(app);
    const shared = cid();
    const asUser = await me.api.post('/v1/analytics/events', { events: [{ id: shared, event: 'clicked' }] });
    expect(asUser.status).toBe(200);
    expect(asUser.body).toMatchObject({ inserted: 1 });
    const asService = await svc().post('/v1/analytics/events', { events: [{ id: shared, event: 'clicked', user_id: me.user.id }] });
    expect(asService.body).toMatchObject({ inserted: 1 });
    const rows = (await svc().get(`/v1/analytics/events?user_id=${me.user.id}`)).body.data;
    expect(rows.map((r: Json) => r.source).sort()).toEqual(['service', `user:${me.user.id}`]);
  });

  it('a user may send events only about themself; a key needs analytics:write; anon may not send', async () => {
    const me = await signUp(app);
    const other = await makeUser(app);
    const mine = await me.api.post('/v1/analytics/events', { events: [{ id: cid(), event: 'opened', anonymous_id: 'pre-signup' }, { id: cid(), event: 'opened', user_id: me.user.id }] });
    expect(mine.status).toBe(200);
    const before = await count();
    const theirs = await me.api.post('/v1/analytics/events', { events: [{ id: cid(), event: 'ok' }, { id: cid(), event: 'forged', user_id: other.id }] });
    expect(theirs.status).toBe(403);
    expect(await count()).toBe(before); // the whole batch refused, nothing stored
    const stored = (await svc().get(`/v1/analytics/events?user_id=${me.user.id}`)).body.data;
    expect(stored.every((e: Json) => e.user_id === me.user.id && e.source === `user:${me.user.id}`)).toBe(true);
    expect(stored.some((e: Json) => e.anonymous_id === 'pre-signup')).toBe(true);

    const narrow = await makeApiKey(app, me.user.id, { name: 'read-only', scopes: ['users:read'] });
    expect((await client(app.server, narrow.key).post('/v1/analytics/events', { events: [{ id: cid(), event: 'e' }] })).status).toBe(403);
    const writer = await makeApiKey(app, me.user.id, { name: 'sdk', scopes: ['analytics:write'] });
    const viaKey = await client(app.server, writer.key).post('/v1/analytics/events', { events: [{ id: cid(), event: 'via_key' }] });
    expect(viaKey.status).toBe(200);
    const row = (await svc().get('/v1/analytics/events?event=via_key')).body.data[0];
    expect(row).toMatchObject({ user_id: me.user.id, api_key_id: writer.id });
    expect((await client(app.server, null).post('/v1/analytics/events', { events: [{ id: cid(), event: 'e', anonymous_id: 'a' }] })).status).toBe(401);
    // Users send; they do not read the app's analytics.
    expect((await me.api.get('/v1/analytics/events')).status).toBe(403);
    expect((await me.api.get('/v1/analytics/events/counts')).status).toBe(403);
  });

  it('bad input gets a clear 4xx from the catalogue and stores nothing', async () => {
    const u = await makeUser(app);
    const before = await count();
    const ok = { id: cid(), event: 'fine', user_id: u.id };
    const cases: Array<[unknown, number]> = [
      [{ events: [] }, 400],
      [{ events: Array.from({ length: 101 }, () => ({ id: cid(), event: 'e', user_id: u.id })) }, 400],
      [{ events: [ok, { id: cid(), event: 'e' }] }, 400], // the service names a user or an anonymous id
      [{ events: [ok, { id: cid(), event: 'e', user_id: 'usr_nobody' }] }, 404],
      [{ events: [ok, { id: '', event: 'e', user_id: u.id }] }, 400],
      [{ events: [ok, { id: 'has space', event: 'e', user_id: u.id }] }, 400],
      [{ events: [ok, { id: cid(), event: '', user_id: u.id }] }, 400],
      [{ events: [ok, { id: cid(), event: 'e', user_id: u.id, properties: { big: 'x'.repeat(17_000) } }] }, 400],
      [{ events: [ok, { id: cid(), event: 'e', user_id: u.id, properties: [1, 2] }] }, 400],
      [{ events: [ok, { id: cid(), event: 'e', user_id: u.id, occurred_at: days(3) }] }, 400],
      [{ events: [ok, { id: cid(), event: 'e', user_id: u.id, occurred_at: days(-401) }] }, 400],
      [{ events: [ok, { id: cid(), event: 'e', user_id: u.id, occurred_at: 'yesterday' }] }, 400],
      [{ events: [{ ...ok, extra: true }] }, 400],
    ];
    for (const [body, status] of cases) {
      const res = await svc().post('/v1/analytics/events', body);
      expect(res.status, JSON.stringify(body).slice(0, 120)).toBe(status);
      expect(res.body.error.code).toBe(status === 404 ? 'not_found' : 'invalid_request');
    }
    expect(await count()).toBe(before);
  });

  it('counts per day and event name, filters and pages', async () => {
    const u = await makeUser(app);
    const at = (d: string) => `2026-06-${d}T10:00:00Z`;
    const events = [
      { id: cid(), event: 'export', user_id: u.id, occurred_at: at('10') },
      { id: cid(), event: 'export', user_id: u.id, occurred_at: at('10') },
      { id: cid(), event: 'export', user_id: u.id, occurred_at: at('11') },
      { id: cid(), event: 'share', user_id: u.id, occurred_at: at('11') },
    ];
    expect((await svc().post('/v1/analytics/events', { events })).status).toBe(200);
    const counts = await svc().get(`/v1/analytics/events/counts?user_id=${u.id}&from=2026-06-01T00:00:00Z&to=2026-06-16T00:00:00Z`);
    expect(counts.status).toBe(200);
    expect(counts.body).toEqual({
      data: [
        { day: '2026-06-11', event: 'export', count: 1 },
        { day: '2026-06-11', event: 'share', count: 1 },
        { day: '2026-06-10', event: 'export', count: 2 },
      ],
      truncated: false,
    });
    expect((await svc().get(`/v1/analytics/events/counts?event=share&user_id=${u.id}&from=2026-06-01T00:00:00Z&to=2026-06-16T00:00:00Z`)).body.data).toEqual([{ day: '2026-06-11', event: 'share', count: 1 }]);
    expect((await svc().get('/v1/analytics/events/counts?from=2025-01-01T00:00:00Z&to=2026-06-16T00:00:00Z')).status).toBe(400);
    expect((await svc().get('/v1/analytics/events/counts?from=2026-06-16T00:00:00Z&to=2026-06-01T00:00:00Z')).status).toBe(400);

    const ranged = await svc().get(`/v1/analytics/events?user_id=${u.id}&from=${encodeURIComponent(at('11'))}`);
    expect(ranged.body.data).toHaveLength(2);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Json = await svc().get(`/v1/analytics/events?user_id=${u.id}&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...page.body.data.map((e: Json) => e.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(4);
  });

  it('retention deletes exactly the events received before the window', async () => {
    const u = await makeUser(app);
    const ids = [cid(), cid(), cid()];
    const sent = await svc().post('/v1/analytics/events', { events: ids.map((id, i) => ({ id, event: `kept_${i}`, user_id: u.id })) });
    expect(sent.status).toBe(200);
    // Received 401 and 399 days ago (the window counts from receipt, by the database's clock).
    const t = sql.table(`${app.database.schema}.analytics_events`);
    await sql`update ${t} set created_at = now() - interval '401 days', event = 'expired' where source = 'service' and client_id = ${ids[0]}`.execute(app.database.db);
    await sql`update ${t} set created_at = now() - interval '399 days' where source = 'service' and client_id = ${ids[1]}`.execute(app.database.db);
    // The generic retention (docs/observability.md) deletes analytics events too.
    const report = async () => (await app.services.observability.retention.run(new Date())).reports.find((r) => r.table === 'analytics_events')?.deletedRows;
    expect(await report()).toBe(1);
    const left = (await svc().get(`/v1/analytics/events?user_id=${u.id}`)).body.data.map((e: Json) => e.event).sort();
    expect(left).toEqual(['kept_1', 'kept_2']);
    expect(await report()).toBe(0);
  });
});

/** Per-caller bounds on sending (attacker review A1): a user's key must not be able to fill the table. */
describe(`analytics per-caller limits (${TARGET})`, () => {
  let app: TestApp;
  let tuned: TestApp;
  let now = Date.now();
  const cid = () => `c-${randomBytes(6).toString('hex')}`;
  const batch = (n: number, extra: Record<string, unknown> = {}) => ({ events: Array.from({ length: n }, () => ({ id: cid(), event: 'spam', ...extra })) });
  const countOf = async (a: TestApp, userId: string) =>
    (await sql<{ n: number }>`select count(*)::int as n from ${sql.table(`${a.database.schema}.analytics_events`)} where user_id = ${userId}`.execute(a.database.db)).rows[0]?.n ?? 0;

  beforeAll(async () => {
    // The defaults, as a deployment without any analytics setting gets them.
    app = await createTestApp({}, { clock: () => new Date(now) });
    tuned = await createTestApp({ analytics: { batchMax: 10, propertiesMaxBytes: 512, eventsPerUser: { max: 25, windowSeconds: 60 } } }, { clock: () => new Date(now) });
  });
  afterAll(async () => {
    await app?.close();
    await tuned?.close();
  });

  it('the environment sets the limits; the defaults are 100 events a request, 16 KiB of properties, 600 events a minute per user', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tally-analytics-'));
    const env = { TALLY_DATA_DIR: dir, TALLY_JWT_SECRET: 'x'.repeat(40), TALLY_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'), TALLY_SERVICE_KEY: 's'.repeat(40) };
    expect(loadConfig(env).config.analytics).toEqual({ batchMax: 100, propertiesMaxBytes: 16_384, eventsPerUser: { max: 600, windowSeconds: 60 } });
    const set = loadConfig({ ...env, TALLY_ANALYTICS_BATCH_MAX: '20', TALLY_ANALYTICS_PROPERTIES_MAX_BYTES: '2048', TALLY_RATE_LIMIT_ANALYTICS_EVENTS_PER_USER: '100/60' }).config.analytics;
    expect(set).toEqual({ batchMax: 20, propertiesMaxBytes: 2048, eventsPerUser: { max: 100, windowSeconds: 60 } });
    expect(loadConfig({ ...env, TALLY_RATE_LIMIT_ANALYTICS_EVENTS_PER_USER: '0' }).config.analytics?.eventsPerUser).toBeNull();
    // Past what the table itself accepts (its CHECK) or what the body schema allows: refused at start.
    expect(() => loadConfig({ ...env, TALLY_ANALYTICS_PROPERTIES_MAX_BYTES: '20000' })).toThrow(/TALLY_ANALYTICS_PROPERTIES_MAX_BYTES/);
    expect(() => loadConfig({ ...env, TALLY_ANALYTICS_BATCH_MAX: '0' })).toThrow(/TALLY_ANALYTICS_BATCH_MAX/);
    expect(() => loadConfig({ ...env, TALLY_ANALYTICS_BATCH_MAX: '101' })).toThrow(/TALLY_ANALYTICS_BATCH_MAX/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('by default a user sends at most 600 events a minute (429 rate_limited with Retry-After, nothing of the batch stored), across all their keys; the next minute they send again', async () => {
    const me = await signUp(app);
    const key = await makeApiKey(app, me.user.id, { name: 'sdk', scopes: ['analytics:write'] });
    for (let i = 0; i < 6; i++) expect((await (i % 2 ? me.api : client(app.server, key.key)).post('/v1/analytics/events', batch(100))).status).toBe(200);
    expect(await countOf(app, me.user.id)).toBe(600);
    for (const api of [me.api, client(app.server, key.key)]) {
      const over = await api.post('/v1/analytics/events', batch(1));
      expect(over.status).toBe(429);
      expect(over.body.error.code).toBe('rate_limited');
      expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
    }
    expect(await countOf(app, me.user.id)).toBe(600);
    // Another user has their own budget; the service (the app's backend) is not limited.
    const other = await signUp(app);
    expect((await other.api.post('/v1/analytics/events', batch(100))).status).toBe(200);
    expect((await client(app.server, app.serviceKey).post('/v1/analytics/events', batch(100, { user_id: me.user.id }))).status).toBe(200);
    now += 61_000;
    expect((await me.api.post('/v1/analytics/events', batch(100))).status).toBe(200);
  });

  it('configured lower: events per request, properties per event and events per minute are refused from the catalogue, and nothing of a refused batch is stored', async () => {
    const me = await signUp(tuned);
    const send = (body: unknown) => me.api.post('/v1/analytics/events', body);
    const tooMany = await send(batch(11));
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'events' } });
    const fat = await send({ events: [{ id: cid(), event: 'ok' }, { id: cid(), event: 'fat', properties: { blob: 'x'.repeat(600) } }] });
    expect(fat.status).toBe(400);
    expect(fat.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'events[1].properties' } });
    expect(await countOf(tuned, me.user.id)).toBe(0);
    // Refused batches spent nothing: 25 a minute are still there.
    expect((await send(batch(10))).status).toBe(200);
    expect((await send(batch(10))).status).toBe(200);
    const over = await send(batch(10)); // 30 > 25: the whole batch is refused
    expect(over.status).toBe(429);
    expect(over.body.error.code).toBe('rate_limited');
    expect(await countOf(tuned, me.user.id)).toBe(20);
    expect((await send(batch(5))).status).toBe(200); // exactly 25
    expect((await send(batch(1))).status).toBe(429);
    expect(await countOf(tuned, me.user.id)).toBe(25);
  });
});
