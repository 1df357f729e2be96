/**
 * Attacker review 4 (fixed): a plan's usage bonus (docs/billing.md: floor(credits used × usage_bonus_rate),
 * granted at period close) counts the credits usage events charged. A usage debit the app refunds
 * (POST /v1/credits/refund naming the event's transaction: a failed generation) gives the credits
 * back — so it must not still earn the bonus, or refunded usage mints credits every period.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

const key = () => `k_${randomBytes(8).toString('hex')}`;

describe(`attack 4: usage bonus on refunded usage (${TARGET})`, () => {
  let app: TestApp;
  let now = new Date('2026-03-01T10:00:00.000Z');
  const svc = () => client(app.server, app.serviceKey);
  const post = (url: string, body: unknown) => svc().post(url, body, { idempotencyKey: key() });

  beforeAll(async () => {
    app = await createTestApp({ credits: { balanceCap: null, signupBonus: 0 } }, { clock: () => now });
    expect((await post('/v1/cost-models', { metric: 'renders', formula: 'quantity * base_rate', base_rate: '1', class: 'Usage' })).status).toBe(201);
    const plan = await post('/v1/plans', { id: 'bonus', slug: 'bonus', name: 'Bonus', trial_days: 0, price_monthly: 0, usage_bonus_rate: 0.5 });
    expect(plan.status, JSON.stringify(plan.body)).toBe(201);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('usage refunded in full earns no usage bonus at period close; usage kept earns it', async () => {
    const u = await makeUser(app);
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 100, reason: 'top-up' })).status).toBe(201);
    const sub = await post('/v1/subscriptions', { user_id: u.id, plan_id: 'bonus' });
    expect(sub.status, JSON.stringify(sub.body)).toBe(201);
    for (let i = 0; i < 5; i++) {
      const e = await post('/v1/events', { user_id: u.id, metric: 'renders', quantity: 100, action_hash: key() });
      expect(e.body).toMatchObject({ charged: 100 });
      const r = await post('/v1/credits/refund', { user_id: u.id, amount: 100, reason: 'render failed', transaction_id: e.body.transaction_id });
      expect(r.status).toBe(201);
    }
    expect((await svc().get(`/v1/users/${u.id}/balance`)).body.balance).toBe(100);
    now = new Date(new Date(sub.body.current_period_end).getTime() + 30_000);
    expect((await app.services.billing.subscriptions.runDue(now)).errors).toEqual([]);
    expect((await reconcile(app.database)).drift).toEqual([]);
    // Net usage 0: no bonus (it was 250 for 5 refunded renders of 100).
    expect((await svc().get(`/v1/users/${u.id}/balance`)).body.balance).toBe(100);

    // In the next period: 60 kept of two renders of 50 (40 refunded) earns 30.
    const kept = await post('/v1/events', { user_id: u.id, metric: 'renders', quantity: 50, action_hash: key() });
    const partly = await post('/v1/events', { user_id: u.id, metric: 'renders', quantity: 50, action_hash: key() });
    expect((await post('/v1/credits/refund', { user_id: u.id, amount: 40, reason: 'half failed', transaction_id: partly.body.transaction_id })).status).toBe(201);
    expect(kept.body.charged + partly.body.charged).toBe(100);
    expect((await svc().get(`/v1/users/${u.id}/balance`)).body.balance).toBe(40);
    const next = (await svc().get(`/v1/subscriptions/${sub.body.id}`)).body;
    now = new Date(new Date(next.current_period_end).getTime() + 30_000);
    expect((await app.services.billing.subscriptions.runDue(now)).errors).toEqual([]);
    expect((await svc().get(`/v1/users/${u.id}/balance`)).body.balance).toBe(40 + 30);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  // A bonus is spent like any credit and earns bonus in turn: at a rate of 1 or more the credits
  // it mints never shrink period over period. Refused on create and on update (docs/billing.md).
  it('a usage_bonus_rate of 1 or more is refused (400 invalid_request); 0.9999 is the most', async () => {
    for (const rate of [1, 1.5, 10, 0.99999]) {
      const res = await post('/v1/plans', { slug: `r${randomBytes(4).toString('hex')}`, name: key(), trial_days: 0, price_monthly: 0, usage_bonus_rate: rate });
      expect(res.status, `${rate}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request' });
    }
    const upd = await svc().patch('/v1/plans/bonus', { usage_bonus_rate: 1 });
    expect(upd.status, JSON.stringify(upd.body)).toBe(400);
    expect(upd.body.error).toMatchObject({ code: 'invalid_request' });
    const top = await post('/v1/plans', { slug: `r${randomBytes(4).toString('hex')}`, name: key(), trial_days: 0, price_monthly: 0, usage_bonus_rate: 0.9999 });
    expect(top.status, JSON.stringify(top.body)).toBe(201);
    expect(top.body.usage_bonus_rate).toBe(0.9999);
    expect((await svc().get('/v1/plans/bonus')).body.usage_bonus_rate).toBe(0.5);
  });
});
