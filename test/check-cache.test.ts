import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

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

  it("shows another process's writes within TALLY_CHECK_CACHE_MS, and expires holds on time while cached", async () => {
    const u = await makeUser(app);
    expect(await check(u.id)).toMatchObject({ remaining: 3 });
    // Another process's write: straight into the database, unseen by this one.
    await sql`update ${sql.table(`${app.database.schema}.credit_grants`)} set remaining = 0 where account_id = ${`acc_u_${u.id}`}`.execute(app.database.db);
    await sql`update ${sql.table(`${app.database.schema}.credit_accounts`)} set balance = 0 where id = ${`acc_u_${u.id}`}`.execute(app.database.db);
    later(500);
    expect(await check(u.id)).toMatchObject({ remaining: 3 }); // the snapshot, still young
    later(1600); // past the 2 s default
    expect(await check(u.id)).toMatchObject({ allowed: false, remaining: 0 });
    // Put it back the same way, so the books balance for the next test.
    await sql`update ${sql.table(`${app.database.schema}.credit_grants`)} set remaining = amount where account_id = ${`acc_u_${u.id}`}`.execute(app.database.db);
    await sql`update ${sql.table(`${app.database.schema}.credit_accounts`)} set balance = 3 where id = ${`acc_u_${u.id}`}`.execute(app.database.db);
    later(2100);

    // A hold that comes due while its snapshot is served is released by the check's own clock.
    const hold = await post('/v1/holds', { user_id: u.id, amount: 3, expires_in_seconds: 1 });
    expect(hold.status).toBe(201);
    expect(await check(u.id)).toMatchObject({ allowed: false, remaining: 0 });
    later(1200);
    expect(await check(u.id)).toMatchObject({ allowed: true, remaining: 3 });
  });
});
