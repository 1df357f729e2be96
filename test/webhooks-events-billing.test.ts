import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { addEndpoint, idemKey, localWebhooks, messages, receiver, verifyDelivery } from './support/webhooks.js';

/**
 * Billing's events (docs/webhooks-out.md): subscription.created|trial_ending|past_due|renewed|
 * canceled, usage.quota_exhausted, budget_guard.alert|tripped — each in the transaction of its change.
 */
describe(`billing events (${TARGET})`, () => {
  let app: TestApp;
  let rx: Awaited<ReturnType<typeof receiver>>;
  let endpoint: { id: string; secret: string };
  let now = new Date('2026-03-01T10:00:00.000Z');
  const at = (iso: string) => (now = new Date(iso));
  const svc = () => client(app.server, app.serviceKey);
  const post = (url: string, body: unknown) => svc().post(url, body, { idempotencyKey: idemKey() });
  const usage = (userId: string, metric: string, quantity: number) =>
    post('/v1/events', { user_id: userId, metric, quantity, action_hash: randomBytes(8).toString('hex') });
  const runDue = () => app.services.billing.subscriptions.runDue(now);
  const types = async (userId: string, prefix: string) =>
    (await app.database.db.selectFrom('webhook_messages').select('type').where('user_id', '=', userId).where('type', 'like', `${prefix}%`).orderBy('created_at').orderBy('id').execute()).map((m) => m.type);

  beforeAll(async () => {
    rx = await receiver();
    app = await createTestApp(localWebhooks, { clock: () => now });
    endpoint = await addEndpoint(app, rx.url, ['*']);
    expect((await svc().post('/v1/cost-models', { metric: 'tokens', formula: 'quantity * base_rate', base_rate: '1', class: 'Usage' })).status).toBe(201);
    // 3 free a day by default configuration.
    expect((await svc().post('/v1/cost-models', { metric: 'autofix', base_rate: '1', class: 'BC' })).body).toMatchObject({ daily_free_quota: 3 });
    const plan = await svc().post('/v1/plans', {
      slug: 'pro', name: 'Pro', pool_mode: 'hybrid', pay_as_you_go: true, overage_unit_amount: '0.5', trial_days: 7, price_monthly: 2000,
      allowances: [{ class: 'Usage', amount: 100, window: 'monthly', rollover_policy: 'none' }],
    });
    expect(plan.status).toBe(201);
  });
  afterAll(async () => {
    await app?.close();
    await rx?.close();
  });

  it('a subscription tells created, trial_ending (once, days before), past_due, renewed and canceled, each with its change', async () => {
    at('2026-03-01T10:00:00.000Z');
    const u = await makeUser(app);
    const sub = (await post('/v1/subscriptions', { user_id: u.id, plan_id: 'pro' })).body;
    expect(sub.status).toBe('trialing');
    const [created] = await messages(app, 'subscription.created', u.id);
    expect(created?.data).toMatchObject({ id: sub.id, status: 'trialing', plan_id: 'plan_pro' });

    // Four days in: the trial ends in three — told once, however often the scheduler runs.
    at('2026-03-05T10:00:01.000Z');
    await runDue();
    await runDue();
    expect(await types(u.id, 'subscription.')).toEqual(['subscription.created', 'subscription.trial_ending']);
    expect((await messages(app, 'subscription.trial_ending', u.id))[0]?.data).toMatchObject({ id: sub.id, trial_end: '2026-03-08T10:00:00.000Z' });

    // The trial ends unpaid: past_due, told once.
    at('2026-03-08T10:00:01.000Z');
    await runDue();
    await runDue();
    const pastDue = await messages(app, 'subscription.past_due', u.id);
    expect(pastDue.map((m) => m.data['status'])).toEqual(['past_due']);
    expect((await svc().get(`/v1/subscriptions/${sub.id}`)).body.status).toBe('past_due');
    expect((await post(`/v1/subscriptions/${sub.id}/past-due`, {})).status).toBe(200); // already past due: nothing new told
    expect(await messages(app, 'subscription.past_due', u.id)).toHaveLength(1);

    // Paid, then renewed by the scheduler at the period's end.
    expect((await post(`/v1/subscriptions/${sub.id}/activate`, {})).body.status).toBe('active');
    at('2026-04-01T10:00:30.000Z');
    await runDue();
    const [renewed] = await messages(app, 'subscription.renewed', u.id);
    expect(renewed?.data).toMatchObject({ id: sub.id, status: 'active', current_period_start: '2026-04-01T10:00:00.000Z' });

    // Canceled now.
    expect((await post(`/v1/subscriptions/${sub.id}/cancel`, { at_period_end: false })).body.status).toBe('canceled');
    expect(await types(u.id, 'subscription.')).toEqual([
      'subscription.created',
      'subscription.trial_ending',
      'subscription.past_due',
      'subscription.renewed',
      'subscription.canceled',
    ]);

    // Delivered and verified with the official package.
    const before = rx.got.length;
    await app.services.queue.runDue(now);
    const got = rx.got.slice(before).map((r) => verifyDelivery(endpoint.secret, r, now.getTime()));
    expect(got.filter((e) => e.data['id'] === sub.id).map((e) => e.type).sort()).toEqual([
      'subscription.canceled',
      'subscription.created',
      'subscription.past_due',
      'subscription.renewed',
      'subscription.trial_ending',
    ]);
  });

  it('a rolled-back subscription leaves no event', async () => {
    const u = await makeUser(app);
    await expect(
      app.database.db.transaction().execute(async (trx) => {
        const sub = await app.services.billing.subscriptions.create(trx, { kind: 'service' }, { user_id: u.id, plan_id: 'pro', trial_days: 0 });
        expect(sub.status).toBe('active');
        throw new Error('the caller rolls back');
      }),
    ).rejects.toThrow('the caller rolls back');
    expect(await types(u.id, 'subscription.')).toEqual([]);
    expect(await types(u.id, 'credits.')).toEqual(['credits.granted']); // the sign-up bonus only
  });

  it('usage.quota_exhausted is told by the event that uses the last free unit, once a window', async () => {
    at('2026-05-02T08:00:00.000Z');
    const u = await makeUser(app);
    await usage(u.id, 'autofix', 2);
    expect(await types(u.id, 'usage.')).toEqual([]);
    expect((await usage(u.id, 'autofix', 2)).body).toMatchObject({ free_units: 1 });
    await usage(u.id, 'autofix', 1);
    const told = await messages(app, 'usage.quota_exhausted', u.id);
    expect(told.map((m) => m.data)).toEqual([expect.objectContaining({ user_id: u.id, metric: 'autofix', quota: 3, consumed: 3 })]);
    const row = await app.database.db.selectFrom('daily_quota_usage').select('consumed').where('user_id', '=', u.id).executeTakeFirstOrThrow();
    expect(Number(row.consumed)).toBe(3);
  });

  it('a budget guard tells alert at 80% and tripped once: at the first refusal of the month', async () => {
    at('2026-05-02T09:00:00.000Z');
    const u = await makeUser(app);
    expect((await post('/v1/subscriptions', { user_id: u.id, plan_id: 'pro', trial_days: 0 })).status).toBe(201);
    expect((await svc().put(`/v1/users/${u.id}/budget-guard`, { monthly_cap: 10, behavior: 'suspend' })).status).toBe(200);
    // 103 covered (allowance 100 + bonus 3), 16 overage at 0.5¢ = 8¢: 80% of the 10¢ cap.
    expect((await usage(u.id, 'tokens', 119)).body).toMatchObject({ overage: 16, overage_amount: 8 });
    const alert = await messages(app, 'budget_guard.alert', u.id);
    expect(alert.map((m) => m.data)).toEqual([expect.objectContaining({ user_id: u.id, monthly_cap: 10, spend: 8, percent: 80 })]);
    expect(await messages(app, 'budget_guard.tripped', u.id)).toHaveLength(0);
    // 10 more (5¢) would pass the cap: refused, and the guard trips — once.
    expect((await usage(u.id, 'tokens', 10)).status).toBe(402);
    expect((await usage(u.id, 'tokens', 10)).status).toBe(402);
    const tripped = await messages(app, 'budget_guard.tripped', u.id);
    expect(tripped.map((m) => m.data)).toEqual([expect.objectContaining({ spend: 8, percent: 100, refused_amount: 5 })]);
    const guard = await app.database.db.selectFrom('budget_guards').select(['alerted_80_at', 'alerted_100_at']).where('user_id', '=', u.id).executeTakeFirstOrThrow();
    expect(guard.alerted_80_at).not.toBeNull();
    expect(guard.alerted_100_at).not.toBeNull();
  });
});
