import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import type { App } from '../src/app.js';
import { createTestApp, createTwoApps, TARGET, type TestApp, type TestDb } from './support/harness.js';

const key = () => `k_${randomBytes(8).toString('hex')}`;

/**
 * POST /v1/check answers from snapshots kept in process (docs/billing.md, "Entitlement checks"):
 * every write of this process shows at once, other processes' writes within the time limit.
 */
describe(`POST /v1/check snapshots (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  let now = new Date('2026-05-01T10:00:00.000Z');
  const later = (ms: number) => (now = new Date(now.getTime() + ms));
  const post = (url: string, body: unknown) => svc.post(url, body, { idempotencyKey: key() });
  const check = async (user_id: string, quantity = 1) => (await svc.post('/v1/check', { user_id, metric: 'cc_tokens', quantity })).body;

  beforeAll(async () => {
    app = await createTestApp({}, { clock: () => now });
    svc = client(app.server, app.serviceKey);
    expect((await svc.post('/v1/cost-models', { metric: 'cc_tokens', base_rate: '1', class: 'Usage', daily_free_quota: 0 })).status).toBe(201);
  });
  afterAll(async () => {
    await app.close();
  });

  it("shows this process's own writes at once: debits, grants, events, holds, guards", async () => {
    const u = await makeUser(app);
    expect(await check(u.id)).toMatchObject({ allowed: true, remaining: 3 });
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 100, reason: 'top-up' })).status).toBe(201);
    expect(await check(u.id)).toMatchObject({ remaining: 103 });
    expect((await post('/v1/credits/debit', { user_id: u.id, amount: 10, reason: 'render' })).status).toBe(201);
    expect(await check(u.id)).toMatchObject({ remaining: 93 });
    expect((await post('/v1/events', { user_id: u.id, metric: 'cc_tokens', quantity: 3, action_hash: key() })).status).toBe(201);
    expect(await check(u.id)).toMatchObject({ remaining: 90 });
    const hold = await post('/v1/holds', { user_id: u.id, amount: 80 });
    expect(hold.status).toBe(201);
    expect(await check(u.id, 20)).toMatchObject({ allowed: false, reason: 'insufficient_credits', remaining: 10 });
    expect((await svc.post(`/v1/holds/${hold.body.id}/release`, {}, { idempotencyKey: key() })).status).toBe(200);
    expect(await check(u.id, 20)).toMatchObject({ allowed: true, remaining: 90 });

    // A plan with overage, then a guard: both are other modules' writes, seen at once too.
    const plan = await svc.post('/v1/plans', { slug: `cc_${randomBytes(3).toString('hex')}`, name: 'PAYG', pay_as_you_go: true, overage_unit_amount: '1', trial_days: 0 });
    expect(plan.status).toBe(201);
    expect((await post('/v1/subscriptions', { user_id: u.id, plan_id: plan.body.id })).status).toBe(201);
    expect(await check(u.id, 100)).toMatchObject({ allowed: true, overage: 10, overage_amount: 10 });
    expect((await svc.put(`/v1/users/${u.id}/budget-guard`, { monthly_cap: 5, behavior: 'suspend' })).status).toBe(200);
    expect(await check(u.id, 100)).toMatchObject({ allowed: false, reason: 'budget_exceeded' });
  });

  it("shows writes nobody announced within TALLY_CHECK_CACHE_MS, and expires holds on time while cached", async () => {
    const u = await makeUser(app);
    expect(await check(u.id)).toMatchObject({ remaining: 3 });
    // A write that no Tally process announced: straight into the database.
    await sql`update ${sql.table(`${app.database.schema}.credit_grants`)} set remaining = 0 where account_id = ${`acc_u_${u.id}`}`.execute(app.database.db);
    await sql`update ${sql.table(`${app.database.schema}.credit_accounts`)} set balance = 0 where id = ${`acc_u_${u.id}`}`.execute(app.database.db);
    later(5_000);
    expect(await check(u.id)).toMatchObject({ remaining: 3 }); // the snapshot, still young
    later(26_000); // past the 30 s default
    expect(await check(u.id)).toMatchObject({ allowed: false, remaining: 0 });
    // Put it back the same way, so the books balance for the next test.
    await sql`update ${sql.table(`${app.database.schema}.credit_grants`)} set remaining = amount where account_id = ${`acc_u_${u.id}`}`.execute(app.database.db);
    await sql`update ${sql.table(`${app.database.schema}.credit_accounts`)} set balance = 3 where id = ${`acc_u_${u.id}`}`.execute(app.database.db);
    later(31_000);

    // A hold that comes due while its snapshot is served is released by the check's own clock.
    const hold = await post('/v1/holds', { user_id: u.id, amount: 3, expires_in_seconds: 1 });
    expect(hold.status).toBe(201);
    expect(await check(u.id)).toMatchObject({ allowed: false, remaining: 0 });
    later(1200);
    expect(await check(u.id)).toMatchObject({ allowed: true, remaining: 3 });
  });
});

/** Two apps on one PostgreSQL schema stand for two Tally processes (the bus: LISTEN/NOTIFY). */
describe.skipIf(TARGET === 'pglite')(`POST /v1/check snapshots across processes (${TARGET})`, () => {
  let pair: Awaited<ReturnType<typeof createTwoApps>>;
  let db: TestDb;
  let one: App;
  let two: App;
  const now = new Date('2026-05-01T10:00:00.000Z'); // frozen: no snapshot ever ages out here
  const call = async (app: App, url: string, body: unknown, idem = true) => {
    const res = await app.server.inject({
      method: 'POST',
      url,
      headers: { authorization: `Bearer ${app.config.auth.serviceKey}`, ...(idem ? { 'idempotency-key': key() } : {}) },
      payload: body as Record<string, unknown>,
    });
    return { status: res.statusCode, body: JSON.parse(res.body) };
  };
  const remaining = async (app: App, user_id: string) => (await call(app, '/v1/check', { user_id, metric: 'xp_tokens' }, false)).body.remaining as number;
  const eventually = async (probe: () => Promise<number>, want: number) => {
    for (let i = 0; i < 100; i++) {
      if ((await probe()) === want) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await probe()).toBe(want);
  };

  beforeAll(async () => {
    pair = await createTwoApps({}, () => now);
    ({ db } = pair);
    [one, two] = pair.apps;
    expect((await call(one, '/v1/cost-models', { metric: 'xp_tokens', base_rate: '1', class: 'Usage', daily_free_quota: 0 })).status).toBe(201);
  });
  afterAll(async () => {
    await pair.close();
  });

  it("one process's writes reach the other's snapshots within milliseconds", async () => {
    const u = (await call(one, '/v1/users', { email: `x_${randomBytes(4).toString('hex')}@example.com` })).body.id as string;
    expect(await remaining(one, u)).toBe(3);
    expect((await call(two, '/v1/credits/grant', { user_id: u, amount: 50, reason: 'top-up' })).status).toBe(201);
    await eventually(() => remaining(one, u), 53);
    expect((await call(two, '/v1/events', { user_id: u, metric: 'xp_tokens', quantity: 3, action_hash: key() })).status).toBe(201);
    await eventually(() => remaining(one, u), 50);
    // Billing's other writes reach it too (here: a budget guard on a pay-as-you-go plan).
    expect((await call(two, '/v1/plans', { slug: 'xp_payg', name: 'PAYG', pay_as_you_go: true, overage_unit_amount: '1', trial_days: 0 })).status).toBe(201);
    expect((await call(two, '/v1/subscriptions', { user_id: u, plan_id: 'xp_payg' })).status).toBe(201);
    const over = async () => (await call(one, '/v1/check', { user_id: u, metric: 'xp_tokens', quantity: 60 }, false)).body.overage as number;
    await eventually(over, 10);
  });

  it('a listener that drops and comes back forgets everything it may have missed', async () => {
    const u = (await call(one, '/v1/users', { email: `y_${randomBytes(4).toString('hex')}@example.com` })).body.id as string;
    expect(await remaining(one, u)).toBe(3);
    // Cut every listening connection of this schema, then write where nobody announces it.
    await sql`select pg_terminate_backend(pid) from pg_stat_activity where query = ${`listen "tally_invalidate_${db.database.schema}"`}`.execute(db.database.db);
    await sql`update ${sql.table(`${db.database.schema}.credit_grants`)} set remaining = 0 where account_id = ${`acc_u_${u}`}`.execute(db.database.db);
    await sql`update ${sql.table(`${db.database.schema}.credit_accounts`)} set balance = 0 where id = ${`acc_u_${u}`}`.execute(db.database.db);
    // Whether it is still reconnecting (untrusted: reads the database) or back (dropped everything).
    await eventually(() => remaining(one, u), 0);
    await sql`update ${sql.table(`${db.database.schema}.credit_grants`)} set remaining = amount where account_id = ${`acc_u_${u}`}`.execute(db.database.db);
    await sql`update ${sql.table(`${db.database.schema}.credit_accounts`)} set balance = 3 where id = ${`acc_u_${u}`}`.execute(db.database.db);
    await new Promise((r) => setTimeout(r, 500));
    // Back and trusted: snapshots are served again (an unannounced write stays unseen) …
    expect(await remaining(one, u)).toBe(3);
    await sql`update ${sql.table(`${db.database.schema}.credit_accounts`)} set balance = 1 where id = ${`acc_u_${u}`}`.execute(db.database.db);
    expect(await remaining(one, u)).toBe(3);
    await sql`update ${sql.table(`${db.database.schema}.credit_accounts`)} set balance = 3 where id = ${`acc_u_${u}`}`.execute(db.database.db);
    // … and the other process's writes are heard again.
    expect((await call(two, '/v1/credits/grant', { user_id: u, amount: 7, reason: 'again' })).status).toBe(201);
    await eventually(() => remaining(one, u), 10);
  });
});
