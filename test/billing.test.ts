import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import type { ProviderSubscriptionSync } from '../src/modules/billing/billing.subscriptions.service.js';
import { client } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

const key = () => `k_${randomBytes(8).toString('hex')}`;
const hash = () => `a_${randomBytes(8).toString('hex')}`;
type Grant = { source: string; class: string; remaining: number; expires_at: string | null };

describe(`billing: plans, subscriptions, usage events (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  let now = new Date('2026-03-01T10:00:00.000Z');
  /** When set, every read of the clock moves it on by a millisecond (like a real one). */
  let ticking = false;
  const at = (iso: string) => (now = new Date(iso));
  const post = (url: string, body: unknown) => svc.post(url, body, { idempotencyKey: key() });
  const event = (user_id: string, metric: string, quantity: number, action_hash = hash()) =>
    post('/v1/events', { user_id, metric, quantity, action_hash });
  const balance = async (userId: string) => (await svc.get(`/v1/users/${userId}/balance`)).body;
  const entries = async (userId: string) =>
    ((await svc.get(`/v1/users/${userId}/transactions?limit=200`)).body.data as { type: string; amount: number }[])
      .reverse()
      .map((t) => `${t.type} ${t.amount}`);

  beforeAll(async () => {
    app = await createTestApp({}, { clock: () => (ticking ? (now = new Date(now.getTime() + 1)) : now) });
    svc = client(app.server, app.serviceKey);
    expect((await svc.post('/v1/cost-models', { metric: 'tokens', formula: 'quantity * base_rate', base_rate: '1', class: 'Usage' })).status).toBe(201);
    // `autofix` is a free-quota metric by default configuration: 3 free a day.
    const autofix = await svc.post('/v1/cost-models', { metric: 'autofix', base_rate: '1', class: 'BC' });
    expect(autofix.body).toMatchObject({ metric: 'autofix', daily_free_quota: 3, formula: 'quantity * base_rate' });
    const plan = await svc.post('/v1/plans', {
      slug: 'pro',
      name: 'Pro',
      pool_mode: 'hybrid',
      pay_as_you_go: true,
      overage_unit_amount: '0.5',
      trial_days: 7,
      price_monthly: 2000,
      allowances: [
        { class: 'Usage', amount: 100, window: 'monthly', rollover_policy: '1_cycle' },
        { class: 'BC', amount: 10, window: 'monthly', rollover_policy: 'none' },
      ],
      prices: [{ provider: 'stripe', provider_price_id: 'price_pro_m', billing_interval: 'monthly' }],
    });
    expect(plan.status).toBe(201);
    expect(plan.body).toMatchObject({ id: 'plan_pro', overage_unit_amount: '0.5', allowances: expect.any(Array) });
  });
  afterAll(async () => {
    await app.close();
  });

  it('walks a user from trial through usage, period close with rollover, and overage under a budget guard', async () => {
    const u = await makeUser(app);
    // Trial → allowances for the first period, on top of the sign-up bonus.
    const sub = await post('/v1/subscriptions', { user_id: u.id, plan_id: 'pro' });
    expect(sub.status).toBe(201);
    expect(sub.body).toMatchObject({ status: 'trialing', plan_id: 'plan_pro', current_period_end: '2026-04-01T10:00:00.000Z' });
    let b = await balance(u.id);
    expect(b.balance).toBe(113);
    expect(b.grants.map((g: Grant) => `${g.source}/${g.class}/${g.remaining}`).sort()).toEqual([
      'allowance/BC/10',
      'allowance/Usage/100',
      'signup_bonus/default/3',
    ]);

    // Daily free quota first: 2 of 3 free.
    let e = await event(u.id, 'autofix', 2);
    expect(e.status).toBe(201);
    expect(e.body).toMatchObject({ cost: 2, charged: 0, free_units: 2, breakdown: [{ source: 'free_quota', amount: 2 }], balance: 113 });
    // 1 free left, the rest from the BC allowance (its own class, hybrid).
    e = await event(u.id, 'autofix', 3);
    expect(e.body).toMatchObject({ cost: 3, charged: 2, free_units: 1, balance: 111 });
    expect(e.body.breakdown).toEqual([{ source: 'free_quota', amount: 1 }, { source: 'allowance', amount: 2 }]);
    // Tokens draw on the Usage allowance, never on BC's.
    const h = hash();
    e = await event(u.id, 'tokens', 30, h);
    expect(e.body).toMatchObject({ charged: 30, breakdown: [{ source: 'allowance', amount: 30 }], balance: 81 });
    const first = e.body;
    // The same action_hash again: 200, the first answer, nothing charged.
    const replay = await event(u.id, 'tokens', 30, h);
    expect(replay.status).toBe(200);
    expect(replay.body).toEqual(first);
    // The user's event list shows the same answer (both are rebuilt from the stored row).
    expect((await svc.get(`/v1/users/${u.id}/events`)).body.data).toContainEqual(first);
    const clash = await event(u.id, 'tokens', 31, h);
    expect(clash.status).toBe(409);
    expect(clash.body.error.code).toBe('idempotency_key_reused');
    expect((await balance(u.id)).balance).toBe(81);

    // The service confirms payment; the trial ends without a downgrade.
    expect((await post(`/v1/subscriptions/${sub.body.id}/activate`, {})).body.status).toBe('active');

    // Period end: Usage's 70 roll over for one cycle, BC's 8 expire; the new period grants anew.
    at('2026-04-01T10:00:30.000Z');
    const run = await app.services.billing.subscriptions.runDue(now);
    expect(run).toMatchObject({ processed: 1, errors: [] });
    expect(run.ids).toHaveLength(1);
    const s2 = (await svc.get(`/v1/subscriptions/${sub.body.id}`)).body;
    expect(s2).toMatchObject({ status: 'active', current_period_start: '2026-04-01T10:00:00.000Z', current_period_end: '2026-05-01T10:00:00.000Z' });
    b = await balance(u.id);
    expect(b.grants.map((g: Grant) => `${g.source}/${g.class}/${g.remaining}/${g.expires_at}`).sort()).toEqual([
      'allowance/BC/10/2026-05-01T10:00:00.000Z',
      'allowance/Usage/100/2026-05-01T10:00:00.000Z',
      'rollover/Usage/70/2026-05-01T10:00:00.000Z',
      'signup_bonus/default/3/null',
    ]);
    expect(b.balance).toBe(183);
    // Close: each expiring allowance visibly leaves; Usage's remainder comes back as a rollover.
    const log = await entries(u.id);
    expect(log.slice(0, 3).sort()).toEqual(['grant 10', 'grant 100', 'grant 3']);
    expect(log.slice(3, 5)).toEqual(['debit -2', 'debit -30']);
    expect(log.slice(5, 8).sort()).toEqual(['expiry -70', 'expiry -8', 'rollover 70']);
    expect(log.slice(8).sort()).toEqual(['grant 10', 'grant 100']);
    // Running it again changes nothing (idempotent).
    expect(await app.services.billing.subscriptions.runDue(now)).toEqual({ processed: 0, ids: [], errors: [] });
    expect((await balance(u.id)).balance).toBe(183);

    // A summary for period 1 exists.
    const summaries = await app.database.db.selectFrom('usage_summaries').selectAll().where('user_id', '=', u.id).execute();
    expect(summaries.map((s) => [s.metric, Number(s.quantity), Number(s.credits)]).sort()).toEqual([
      ['autofix', 5, 2],
      ['tokens', 30, 30],
    ]);

    // Overage with a budget guard that suspends at 30 cents this month.
    expect((await svc.put(`/v1/users/${u.id}/budget-guard`, { monthly_cap: 30, behavior: 'suspend' })).status).toBe(200);
    // 250 tokens: allowance 100 + rollover 70 + credits 3 = 173, overage 77 → 38.5¢ > 30¢: refused whole.
    e = await event(u.id, 'tokens', 250);
    expect(e.status).toBe(402);
    expect(e.body.error.code).toBe('budget_exceeded');
    expect((await balance(u.id)).balance).toBe(183);
    // /v1/check says the same, without charging.
    const check = await svc.post('/v1/check', { user_id: u.id, metric: 'tokens', quantity: 250 });
    expect(check.body).toMatchObject({ allowed: false, reason: 'budget_exceeded', remaining: 173, overage: 77 });
    // 200 tokens: 173 covered in order, 27 overage → 14¢ (13.5 rounded up), under the cap.
    e = await event(u.id, 'tokens', 200);
    expect(e.status).toBe(201);
    expect(e.body).toMatchObject({
      charged: 200,
      overage: 27,
      overage_amount: 14,
      currency: 'usd',
      balance: 10,
      breakdown: [
        { source: 'allowance', amount: 100 },
        { source: 'rollover', amount: 70 },
        { source: 'credits', amount: 3 },
        { source: 'overage', amount: 27 },
      ],
    });
    // Another 50 would reach 38.5¢: refused before charging.
    e = await event(u.id, 'tokens', 50);
    expect(e.body.error.code).toBe('budget_exceeded');
    const guard = (await svc.get(`/v1/users/${u.id}/budget-guard`)).body;
    expect(guard).toMatchObject({ monthly_cap: 30, current_window_spend: 14 });
    const charges = (await svc.get(`/v1/users/${u.id}/overage-charges`)).body.data;
    expect(charges).toEqual([expect.objectContaining({ metric: 'tokens', credits: 27, amount: 14, status: 'pending' })]);

    // Counters are in step: the period counter of tokens.
    const usage = (await svc.get(`/v1/users/${u.id}/usage?window=period&metric=tokens`)).body.data;
    expect(usage[0]).toMatchObject({ quantity: 200, credits: 173, overage: 27, events: 1 });

    // Period 2 closes: the overage is invoiced; the rollover bucket expires (one cycle, not two).
    at('2026-05-01T10:01:00.000Z');
    expect((await app.services.billing.subscriptions.runDue(now)).processed).toBe(1);
    const invoiced = (await svc.get(`/v1/users/${u.id}/overage-charges`)).body.data[0];
    expect(invoiced).toMatchObject({ status: 'invoiced', amount: 14 });
    expect((await post(`/v1/overage-charges/${invoiced.id}/status`, { status: 'paid' })).body.status).toBe('paid');
    expect((await post(`/v1/overage-charges/${invoiced.id}/status`, { status: 'waived' })).status).toBe(409);
    b = await balance(u.id);
    expect(b.grants.map((g: Grant) => g.source).sort()).toEqual(['allowance', 'allowance']);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it('cancel at period end keeps the period, then ends with no rollover and no renewal', async () => {
    at('2026-06-01T00:00:00.000Z');
    const u = await makeUser(app);
    const sub = (await post('/v1/subscriptions', { user_id: u.id, plan_id: 'pro', trial_days: 0 })).body;
    expect(sub.status).toBe('active');
    const c = await post(`/v1/subscriptions/${sub.id}/cancel`, {});
    expect(c.body).toMatchObject({ status: 'active', cancel_at_period_end: true });
    at('2026-07-01T00:00:01.000Z');
    await app.services.billing.subscriptions.runDue(now);
    const after = (await svc.get(`/v1/subscriptions/${sub.id}`)).body;
    expect(after).toMatchObject({ status: 'canceled', ended_at: '2026-07-01T00:00:00.000Z' });
    const b = await balance(u.id);
    expect(b.grants.map((g: Grant) => g.source)).toEqual(['signup_bonus']);
    expect(b.balance).toBe(3);
    expect((await post(`/v1/subscriptions/${sub.id}/cancel`, {})).status).toBe(409);
    // A new subscription is allowed once the old one ended.
    expect((await post('/v1/subscriptions', { user_id: u.id, plan_id: 'pro' })).status).toBe(201);
  });

  it('changing plan ends the old allowances and grants the new ones pro rata', async () => {
    at('2026-06-01T00:00:00.000Z');
    const small = await post('/v1/plans', { slug: 'small', name: 'Small', allowances: [{ class: 'Usage', amount: 30 }] });
    expect(small.status).toBe(201);
    const u = await makeUser(app);
    const sub = (await post('/v1/subscriptions', { user_id: u.id, plan_id: 'small', trial_days: 0 })).body;
    expect((await balance(u.id)).balance).toBe(33);
    at('2026-06-16T00:00:00.000Z'); // half of June (30 days) left
    const changed = await post(`/v1/subscriptions/${sub.id}/change-plan`, { plan_id: 'pro' });
    expect(changed.body).toMatchObject({ plan_id: 'plan_pro', current_period_end: '2026-07-01T00:00:00.000Z' });
    const b = await balance(u.id);
    expect(b.grants.map((g: Grant) => `${g.source}/${g.class}/${g.remaining}`).sort()).toEqual([
      'allowance/BC/5',
      'allowance/Usage/50',
      'signup_bonus/default/3',
    ]);
    // Back and forth within the window grants nothing twice.
    await post(`/v1/subscriptions/${sub.id}/change-plan`, { plan_id: 'small' });
    await post(`/v1/subscriptions/${sub.id}/change-plan`, { plan_id: 'pro' });
    const again = await balance(u.id);
    expect(again.grants.filter((g: Grant) => g.source === 'allowance')).toEqual([]);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it('a user may subscribe themselves to a free plan, never to a paid one, and reads only their own', async () => {
    const me = await signUp(app);
    const paid = await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: 'pro' });
    expect(paid.status).toBe(403);
    const free = await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: 'small' });
    expect(free.status, JSON.stringify(free.body)).toBe(201);
    expect((await me.api.get(`/v1/subscriptions/${free.body.id}`)).status).toBe(200);
    const other = await makeUser(app);
    expect((await me.api.post('/v1/subscriptions', { user_id: other.id, plan_id: 'small' })).status).toBe(403);
    expect((await me.api.get(`/v1/users/${other.id}/subscriptions`)).status).toBe(403);
    // Users cannot record usage or change plans.
    expect((await me.api.post('/v1/events', { user_id: me.user.id, metric: 'tokens', quantity: 1, action_hash: 'x' }, { idempotencyKey: key() })).status).toBe(403);
    expect((await me.api.post('/v1/plans', { slug: 'mine', name: 'Mine' })).status).toBe(403);
  });

  it('without pay-as-you-go an uncovered event is 402 and changes nothing; the batch answers each event', async () => {
    const u = await makeUser(app); // 3 credits, no subscription
    const res = await svc.post(
      '/v1/events/batch',
      {
        events: [
          { user_id: u.id, metric: 'tokens', quantity: 2, action_hash: 'b1' },
          { user_id: u.id, metric: 'tokens', quantity: 2, action_hash: 'b2' },
          { user_id: u.id, metric: 'nope', quantity: 1, action_hash: 'b3' },
          { user_id: 'usr_missing', metric: 'tokens', quantity: 1, action_hash: 'b4' },
          { user_id: u.id, metric: 'tokens', quantity: 1, action_hash: 'b5' },
        ],
      },
      { idempotencyKey: 'batch-1' },
    );
    expect(res.status).toBe(200);
    expect(res.body.results.map((r: { status: number }) => r.status)).toEqual([201, 402, 400, 404, 201]);
    expect(res.body.results[1].error.code).toBe('insufficient_credits');
    expect((await balance(u.id)).balance).toBe(0);
    // The same key replays the whole answer.
    const replay = await svc.post('/v1/events/batch', { events: [{ user_id: u.id, metric: 'tokens', quantity: 2, action_hash: 'b1' }, { user_id: u.id, metric: 'tokens', quantity: 2, action_hash: 'b2' }, { user_id: u.id, metric: 'nope', quantity: 1, action_hash: 'b3' }, { user_id: 'usr_missing', metric: 'tokens', quantity: 1, action_hash: 'b4' }, { user_id: u.id, metric: 'tokens', quantity: 1, action_hash: 'b5' }] }, { idempotencyKey: 'batch-1' });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toEqual(res.body);
    // The same key with other events: 409, and nothing is charged.
    const ledgerBefore = await entries(u.id);
    const other = await svc.post('/v1/events/batch', { events: [{ user_id: u.id, metric: 'tokens', quantity: 1, action_hash: 'b6' }] }, { idempotencyKey: 'batch-1' });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('idempotency_key_reused');
    expect(await entries(u.id)).toEqual(ledgerBefore);
  });

  it('a batch whose request died after charging some events is run again safely: they replay, the rest apply', async () => {
    const u = await makeUser(app); // 3 sign-up credits
    const first = [{ user_id: u.id, metric: 'tokens', quantity: 1, action_hash: 'r1' }];
    const all = [...first, { user_id: u.id, metric: 'tokens', quantity: 1, action_hash: 'r2' }];
    // Event r1 was charged under another request; this request claimed its key and then died
    // before answering (its key is left claimed, with no answer).
    expect((await svc.post('/v1/events/batch', { events: first }, { idempotencyKey: key() })).status).toBe(200);
    const k = key();
    expect((await svc.post('/v1/events/batch', { events: all }, { idempotencyKey: k })).status).toBe(200);
    await app.database.db.updateTable('idempotency_keys').set({ status_code: 0, response_body: null }).where('key', '=', k).execute();
    const again = await svc.post('/v1/events/batch', { events: all }, { idempotencyKey: k });
    expect(again.status).toBe(200);
    expect(again.body.results.map((r: { status: number }) => r.status)).toEqual([200, 200]);
    expect((await balance(u.id)).balance).toBe(1);
    // Now answered: the same key replays that answer.
    const replay = await svc.post('/v1/events/batch', { events: all }, { idempotencyKey: k });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toEqual(again.body);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it('GET /v1/credit-classes lists the configured classes: each one a plan may name, and nothing else', async () => {
    const listed = await svc.get('/v1/credit-classes');
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual({ data: [{ name: 'BC' }, { name: 'RC' }, { name: 'Usage' }] }); // the default TALLY_CREDIT_CLASSES
    const names: string[] = listed.body.data.map((c: { name: string }) => c.name);
    // Any signed-in caller with billing:read reads it, as they read the plans that name the classes.
    const user = await signUp(app);
    expect((await user.api.get('/v1/credit-classes')).body).toEqual(listed.body);
    expect((await client(app.server, null).get('/v1/credit-classes')).status).toBe(401);
    for (const name of names) {
      const plan = await svc.post('/v1/plans', { slug: `cls-${name.toLowerCase()}`, name: `Class ${name}`, allowances: [{ class: name, amount: 1 }] });
      expect(plan.status, JSON.stringify(plan.body)).toBe(201);
    }
    const refused = await svc.post('/v1/plans', { slug: 'cls-other', name: 'Class other', allowances: [{ class: 'default', amount: 1 }] });
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toContain(`configured: ${names.join(', ')}`);
  });

  it('refuses bad plans, metrics and formulas with clear 400s', async () => {
    const bad = async (url: string, body: unknown, field?: string) => {
      const r = await svc.post(url, body);
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      if (field) expect(r.body.error.details?.field ?? r.body.error.message).toContain(field);
    };
    await bad('/v1/plans', { slug: 'x1', name: 'X1', allowances: [{ class: 'Gold', amount: 5 }] }, 'allowances[0].class');
    await bad('/v1/plans', { slug: 'x2', name: 'X2', allowances: [{ class: 'BC', amount: 0 }] });
    await bad('/v1/plans', { slug: 'X Y', name: 'X3' });
    await bad('/v1/plans', { slug: 'x4', name: 'X4', pay_as_you_go: true, overage_unit_amount: '0' }, 'overage_unit_amount');
    await bad('/v1/cost-models', { metric: 'm1', formula: 'process.exit(1)' }, 'formula');
    await bad('/v1/cost-models', { metric: 'm2', formula: 'quantity * ' }, 'formula');
    await bad('/v1/cost-models', { metric: 'm3', formula: 'unknown_var * 2' }, 'formula');
    await bad('/v1/cost-models', { metric: 'm4', formula: '0 - quantity' }, 'formula');
    await bad('/v1/cost-models', { metric: 'bad metric!' });
    const u = await makeUser(app);
    const e = await post('/v1/events', { user_id: u.id, metric: 'unknown', quantity: 1, action_hash: 'z' });
    expect(e.status).toBe(400);
    expect(e.body.error.details.field).toBe('metric');
    expect((await post('/v1/events', { user_id: u.id, metric: 'tokens', quantity: 0, action_hash: 'z' })).status).toBe(400);
    expect((await svc.post('/v1/events', { user_id: u.id, metric: 'tokens', quantity: 1, action_hash: 'z' })).status).toBe(400); // no key
    expect((await svc.post('/v1/plans', { slug: 'pro', name: 'Pro again' })).status).toBe(409);
  });

  it('concurrent events never overspend an allowance, and concurrent replays charge once', async () => {
    at('2026-08-01T00:00:00.000Z');
    const cap = await post('/v1/plans', { slug: 'capped', name: 'Capped', allowances: [{ class: 'Usage', amount: 100 }] });
    expect(cap.status).toBe(201);
    const u = await makeUser(app);
    await post('/v1/subscriptions', { user_id: u.id, plan_id: 'capped', trial_days: 0 });
    // 100 allowance + 3 bonus = 103: exactly 20 events of 5 fit.
    const results = await Promise.all(Array.from({ length: 60 }, () => event(u.id, 'tokens', 5)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(20);
    expect(results.filter((r) => r.status === 402)).toHaveLength(40);
    expect((await balance(u.id)).balance).toBe(3);
    const v = await makeUser(app);
    const same = hash();
    const replays = await Promise.all(Array.from({ length: 20 }, () => event(v.id, 'tokens', 1, same)));
    expect(replays.filter((r) => r.status === 201)).toHaveLength(1);
    expect(replays.filter((r) => r.status === 200)).toHaveLength(19);
    expect((await balance(v.id)).balance).toBe(2);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it('concurrent batches on the same users keep every ledger in order (balance_after runs in seq order)', async () => {
    at('2026-08-02T00:00:00.000Z');
    const users = [await makeUser(app), await makeUser(app), await makeUser(app)];
    for (const u of users) expect((await post('/v1/credits/grant', { user_id: u.id, amount: 1000, reason: 'fund' })).status).toBe(201);
    // A ticking clock: a batch that reads it and then waits for another's locks must still write
    // its entries after that batch's (the clock is read once the locks are held).
    ticking = true;
    try {
      const batches = await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          post('/v1/events/batch', { events: Array.from({ length: 6 }, (_, j) => ({ user_id: must(users[(i + j) % 3], 'users[(i + j) % 3]').id, metric: 'tokens', quantity: 1, action_hash: hash() })) }),
        ),
      );
      expect(batches.map((b) => b.status)).toEqual(Array(24).fill(200));
    } finally {
      ticking = false;
    }
    for (const u of users) expect((await balance(u.id)).balance).toBe(1003 - 48);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it("the server's way: due subscriptions become background jobs (deduplicated) that the queue's workers run", async () => {
    at('2026-09-01T00:00:00.000Z');
    const u = await makeUser(app);
    const sub = (await post('/v1/subscriptions', { user_id: u.id, plan_id: 'capped', trial_days: 0 })).body;
    at('2026-10-01T00:00:05.000Z');
    expect(await app.services.billing.subscriptions.enqueueDue(app.services.queue, now)).toBeGreaterThanOrEqual(1);
    await app.services.billing.subscriptions.enqueueDue(app.services.queue, now); // the same due instant: no new job
    const jobs = await app.database.db.selectFrom('background_jobs').select(['input', 'status']).where('type', '=', 'billing.advance').execute();
    expect(jobs.filter((j) => (j.input as { subscription_id: string }).subscription_id === sub.id)).toHaveLength(1);
    const report = await app.services.queue.runDue(now);
    expect(report.failed).toBe(0);
    expect((await svc.get(`/v1/subscriptions/${sub.id}`)).body.current_period_start).toBe('2026-10-01T00:00:00.000Z');
    expect((await balance(u.id)).grants.filter((g: Grant) => g.source === 'allowance')).toEqual([
      expect.objectContaining({ remaining: 100, expires_at: '2026-11-01T00:00:00.000Z' }),
    ]);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it("a provider's subscription replaces the free one, renews only on a paid period, and is never revived once canceled", async () => {
    at('2027-01-01T00:00:00.000Z');
    expect((await post('/v1/plans', { slug: 'starter', name: 'Starter', allowances: [{ class: 'Usage', amount: 20 }] })).status).toBe(201);
    const u = await makeUser(app);
    const free = (await post('/v1/subscriptions', { user_id: u.id, plan_id: 'starter' })).body;
    // What payments hands billing (payments.ports.ts), in the webhook's transaction.
    const sync = (facts: Partial<ProviderSubscriptionSync>) =>
      app.database.db.transaction().execute((trx) =>
        app.services.billing.subscriptions.syncProviderSubscription(trx, {
          provider: 'stripe', eventId: `evt_${hash()}`, providerSubscriptionId: 'sub_live_1', providerCustomerId: 'cus_1', userId: u.id,
          providerPriceId: 'price_pro_m', planId: null, status: 'active', interval: null, currentPeriodStart: now,
          currentPeriodEnd: new Date('2027-02-01T00:00:00.000Z'), cancelAtPeriodEnd: false, canceledAt: null, trialEnd: null, periodPaid: true,
          ...facts,
        }),
      );
    // A price that buys no plan has nothing to sync.
    expect(await sync({ providerSubscriptionId: 'sub_pkg', providerPriceId: 'price_of_a_package' })).toEqual({ subscriptionId: null });
    const { subscriptionId } = await sync({});
    expect((await svc.get(`/v1/subscriptions/${free.id}`)).body).toMatchObject({ status: 'canceled', ended_at: '2027-01-01T00:00:00.000Z' });
    expect((await svc.get(`/v1/subscriptions/${subscriptionId}`)).body).toMatchObject({
      plan_id: 'plan_pro', status: 'active', provider: 'stripe', provider_subscription_id: 'sub_live_1', provider_customer_id: 'cus_1',
      current_period_end: '2027-02-01T00:00:00.000Z',
    });
    const allowances = async () =>
      (await balance(u.id)).grants.filter((g: Grant) => g.source !== 'signup_bonus').map((g: Grant) => `${g.source}/${g.class}/${g.remaining}/${g.expires_at}`).sort();
    expect(await allowances()).toEqual(['allowance/BC/10/2027-02-01T00:00:00.000Z', 'allowance/Usage/100/2027-02-01T00:00:00.000Z']);
    // The same event again grants nothing twice.
    await sync({});
    expect(await allowances()).toHaveLength(2);
    // A paid invoice for the next period renews it (Usage rolls over one cycle, BC expires).
    at('2027-02-01T00:10:00.000Z');
    await sync({ currentPeriodStart: new Date('2027-02-01T00:00:00.000Z'), currentPeriodEnd: new Date('2027-03-01T00:00:00.000Z') });
    expect((await svc.get(`/v1/subscriptions/${subscriptionId}`)).body).toMatchObject({ status: 'active', current_period_start: '2027-02-01T00:00:00.000Z' });
    await app.services.billing.subscriptions.runDue(now);
    expect(await allowances()).toEqual([
      'allowance/BC/10/2027-03-01T00:00:00.000Z',
      'allowance/Usage/100/2027-03-01T00:00:00.000Z',
      'rollover/Usage/100/2027-03-01T00:00:00.000Z',
    ]);
    // No paid renewal: the scheduler never renews a provider's subscription; 3 days on, past_due.
    at('2027-03-02T00:00:00.000Z');
    await app.services.billing.subscriptions.runDue(now);
    expect((await svc.get(`/v1/subscriptions/${subscriptionId}`)).body).toMatchObject({ status: 'active', current_period_start: '2027-02-01T00:00:00.000Z' });
    at('2027-03-04T00:00:00.000Z');
    await app.services.billing.subscriptions.runDue(now);
    expect((await svc.get(`/v1/subscriptions/${subscriptionId}`)).body.status).toBe('past_due');
    // Canceled at the provider: ended, and a late event never brings it back.
    await sync({ status: 'canceled', canceledAt: now, periodPaid: false });
    await sync({ status: 'active', periodPaid: true, currentPeriodStart: new Date('2027-03-01T00:00:00.000Z'), currentPeriodEnd: new Date('2027-04-01T00:00:00.000Z') });
    expect((await svc.get(`/v1/subscriptions/${subscriptionId}`)).body).toMatchObject({ status: 'canceled', ended_at: '2027-03-04T00:00:00.000Z' });
    // No allowance is left; the rollover February's paid window earned keeps its own end.
    expect(await allowances()).toEqual(['rollover/Usage/100/2027-04-01T00:00:00.000Z']);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });
});
