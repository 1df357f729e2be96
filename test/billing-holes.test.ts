import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * Money holes from issue 13 (an adversarial review): each test is named after the invariant it
 * holds, and failed on the code before its fix. docs/billing.md states the rules.
 */

const key = () => `k_${randomBytes(8).toString('hex')}`;
const hash = () => `a_${randomBytes(8).toString('hex')}`;
const slug = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;
type Grant = { source: string; class: string; remaining: number; expires_at: string | null };

describe(`billing holes (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  let now = new Date('2026-03-01T10:00:00.000Z');
  const at = (iso: string) => (now = new Date(iso));
  const post = (url: string, body: unknown) => svc.post(url, body, { idempotencyKey: key() });
  const event = (user_id: string, metric: string, quantity: number) => post('/v1/events', { user_id, metric, quantity, action_hash: hash() });
  const balance = async (userId: string) => (await svc.get(`/v1/users/${userId}/balance`)).body;
  const allowances = async (userId: string) =>
    ((await balance(userId)).grants as Grant[])
      .filter((g) => g.source === 'allowance')
      .map((g) => `${g.class}/${g.remaining}`)
      .sort();
  /** A fresh JWT for a signed-up user, issued at the test clock's now. */
  const relogin = async (me: Awaited<ReturnType<typeof signUp>>) => {
    const res = await client(app.server, null).post('/v1/auth/login', { email: me.user.email, password: me.password });
    expect(res.status).toBe(200);
    return client(app.server, res.body.access_token as string);
  };
  const plan = async (body: Record<string, unknown>) => {
    const res = await post('/v1/plans', { slug: slug('p'), name: slug('Plan'), ...body });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body as { id: string; price_monthly: number | null; price_yearly: number | null };
  };

  beforeAll(async () => {
    app = await createTestApp({}, { clock: () => now });
    svc = client(app.server, app.serviceKey);
    expect((await svc.post('/v1/cost-models', { metric: 'tokens', base_rate: '1', class: 'Usage' })).status).toBe(201);
    // `autofix` is a free-quota metric by default configuration: 3 free a day.
    expect((await svc.post('/v1/cost-models', { metric: 'autofix', base_rate: '1', class: 'BC' })).body.daily_free_quota).toBe(3);
  });
  afterAll(async () => {
    await app.close();
  });

  // ---- an ended plan's allowance, kept alive by a hold (review after issue 13) ----------------------

  it('an allowance ended by cancel or plan change never outlives it, even while credits are held', async () => {
    at('2026-03-01T10:00:00.000Z');
    const a = await plan({ trial_days: 0, allowances: [{ class: 'Usage', amount: 1000 }] });
    const b = await plan({ trial_days: 0, allowances: [{ class: 'Usage', amount: 1000 }] });
    const me = await signUp(app);
    const subA = await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: a.id });
    expect(subA.status, JSON.stringify(subA.body)).toBe(201);
    // An AI job the user started holds most of plan A's allowance.
    const job = await post('/v1/jobs', { user_id: me.user.id, kind: 'video', input: {}, cost: 900 });
    expect(job.status, JSON.stringify(job.body)).toBe(201);
    // The user cancels plan A now: its window's remainder must be gone, held or not.
    expect((await me.api.post(`/v1/subscriptions/${subA.body.id}/cancel`, { at_period_end: false })).status).toBe(200);
    // The job fails: its hold is released. The credits it held were plan A's, which has ended.
    expect((await post(`/v1/jobs/${job.body.id}/fail`, { error: 'provider down' })).status).toBe(200);
    expect((await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: b.id })).status).toBe(201);
    // Only plan B's window (and the sign-up bonus) is spendable.
    expect(await allowances(me.user.id)).toEqual(['Usage/1000']);
    expect((await balance(me.user.id)).balance).toBe(3 + 1000);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  // ---- 1. a paid plan, free through the interval it does not price -----------------------------

  it('a user can never self-subscribe to a paid plan through an interval it does not price', async () => {
    at('2026-03-01T10:00:00.000Z');
    const monthlyOnly = await plan({ price_monthly: 1500, trial_days: 0, allowances: [{ class: 'Usage', amount: 1000 }] });
    const me = await signUp(app);
    const yearly = await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: monthlyOnly.id, billing_interval: 'yearly' });
    expect(yearly.status, JSON.stringify(yearly.body)).toBeGreaterThanOrEqual(400);
    expect(yearly.status).toBeLessThan(500);
    expect(['invalid_request', 'forbidden']).toContain(yearly.body.error.code);
    const monthly = await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: monthlyOnly.id, billing_interval: 'monthly' });
    expect(monthly.status).toBe(403);
    expect(await allowances(me.user.id)).toEqual([]);
    expect((await svc.get(`/v1/users/${me.user.id}/subscriptions`)).body.data).toEqual([]);
    // The interval it does not offer is not offered (null), not free (0).
    expect(monthlyOnly).toMatchObject({ price_monthly: 1500, price_yearly: null });
  });

  it('an interval a plan does not price is refused for everyone: subscribe and change-plan answer 400 invalid_request', async () => {
    at('2026-03-01T10:00:00.000Z');
    const monthlyOnly = await plan({ price_monthly: 1500, trial_days: 0 });
    const yearlyOnly = await plan({ price_yearly: 15000, trial_days: 0 });
    const u = await makeUser(app);
    const bad = await post('/v1/subscriptions', { user_id: u.id, plan_id: monthlyOnly.id, billing_interval: 'yearly' });
    expect(bad.status, JSON.stringify(bad.body)).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'billing_interval' } });
    // The default interval (monthly) is not offered by a yearly-only plan either.
    expect((await post('/v1/subscriptions', { user_id: u.id, plan_id: yearlyOnly.id })).status).toBe(400);
    const sub = await post('/v1/subscriptions', { user_id: u.id, plan_id: monthlyOnly.id });
    expect(sub.status).toBe(201);
    // change-plan: to an interval the target plan does not offer, named or kept.
    const c1 = await post(`/v1/subscriptions/${sub.body.id}/change-plan`, { plan_id: monthlyOnly.id, billing_interval: 'yearly' });
    expect(c1.status).toBe(400);
    const c2 = await post(`/v1/subscriptions/${sub.body.id}/change-plan`, { plan_id: yearlyOnly.id });
    expect(c2.status).toBe(400);
    expect((await post(`/v1/subscriptions/${sub.body.id}/change-plan`, { plan_id: yearlyOnly.id, billing_interval: 'yearly' })).status).toBe(200);
    // A plan's prices may stop offering an interval, but not leave a plan offering none.
    const none = await post('/v1/plans', { slug: slug('none'), name: slug('None'), price_monthly: null, price_yearly: null });
    expect(none.status).toBe(400);
  });

  it('a user may self-subscribe only to a plan that is free on every interval it offers', async () => {
    at('2026-03-01T10:00:00.000Z');
    const halfFree = await plan({ price_monthly: 0, price_yearly: 9000, allowances: [{ class: 'Usage', amount: 1000 }] });
    const me = await signUp(app);
    const res = await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: halfFree.id, billing_interval: 'monthly' });
    expect(res.status, JSON.stringify(res.body)).toBe(403);
    expect(await allowances(me.user.id)).toEqual([]);
    // A plan with no price at all is free on both intervals, as before.
    const free = await plan({ allowances: [{ class: 'Usage', amount: 10 }] });
    expect(free).toMatchObject({ price_monthly: 0, price_yearly: 0 });
    expect((await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: free.id, billing_interval: 'yearly' })).status).toBe(201);
  });

  it('a trial of a plan that does not price its interval never turns active for free at trial end', async () => {
    // A subscription made before the fix (or by the provider) on an interval without a price.
    at('2026-03-01T10:00:00.000Z');
    const monthlyOnly = await plan({ price_monthly: 1500, trial_days: 3 });
    const u = await makeUser(app);
    const sub = await post('/v1/subscriptions', { user_id: u.id, plan_id: monthlyOnly.id });
    expect(sub.body.status).toBe('trialing');
    await app.database.db.updateTable('subscriptions').set({ billing_interval: 'yearly' }).where('id', '=', sub.body.id).execute();
    at('2026-03-05T10:00:00.000Z');
    await app.services.billing.subscriptions.runDue(now);
    expect((await svc.get(`/v1/subscriptions/${sub.body.id}`)).body.status).toBe('past_due');
  });

  it('a subscription on an interval its plan does not price is never renewed for free by the scheduler', async () => {
    // One made before the fix (then a monthly-only plan was free yearly): it ends at period end.
    at('2026-03-01T10:00:00.000Z');
    const monthlyOnly = await plan({ price_monthly: 1500, trial_days: 0, allowances: [{ class: 'Usage', amount: 40 }] });
    const u = await makeUser(app);
    const sub = await post('/v1/subscriptions', { user_id: u.id, plan_id: monthlyOnly.id });
    await app.database.db
      .updateTable('subscriptions')
      .set({ billing_interval: 'yearly', current_period_end: new Date('2027-03-01T10:00:00.000Z') })
      .where('id', '=', sub.body.id)
      .execute();
    at('2027-03-01T10:00:01.000Z');
    await app.services.billing.subscriptions.runDue(now);
    expect((await svc.get(`/v1/subscriptions/${sub.body.id}`)).body).toMatchObject({ status: 'canceled', ended_at: '2027-03-01T10:00:00.000Z' });
    expect(await allowances(u.id)).toEqual([]);
  });

  it("a user's own free subscription is never renewed for free once its plan has a price", async () => {
    at('2026-03-01T10:00:00.000Z');
    const free = await plan({ trial_days: 0, allowances: [{ class: 'Usage', amount: 50 }] });
    const me = await signUp(app);
    const sub = await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: free.id });
    expect(sub.status).toBe(201);
    // The operator prices the plan: it is bought now, not subscribed to.
    expect((await svc.patch(`/v1/plans/${free.id}`, { price_monthly: 900 })).status).toBe(200);
    at('2026-04-01T10:00:01.000Z');
    await app.services.billing.subscriptions.runDue(now);
    expect((await svc.get(`/v1/subscriptions/${sub.body.id}`)).body).toMatchObject({ status: 'canceled', ended_at: '2026-04-01T10:00:00.000Z' });
    expect(await allowances(me.user.id)).toEqual([]);
    // A subscription the service made (or moved) on that plan renews: the service vouches for it.
    const u = await makeUser(app);
    const svcSub = await post('/v1/subscriptions', { user_id: u.id, plan_id: free.id });
    at('2026-05-01T10:00:02.000Z');
    await app.services.billing.subscriptions.runDue(now);
    expect((await svc.get(`/v1/subscriptions/${svcSub.body.id}`)).body.status).toBe('active');
  });

  it("a user gets a paid plan's trial once, however many subscriptions are opened for them", async () => {
    at('2026-03-01T10:00:00.000Z');
    const paid = await plan({ price_monthly: 2000, trial_days: 14, allowances: [{ class: 'Usage', amount: 500 }] });
    const me = await signUp(app);
    const first = await post('/v1/subscriptions', { user_id: me.user.id, plan_id: paid.id });
    expect(first.body.status).toBe('trialing');
    expect((await me.api.post(`/v1/subscriptions/${first.body.id}/cancel`, { at_period_end: false })).status).toBe(200);
    // Months later, the app opens another one the same way: no second trial.
    at('2026-06-01T10:00:00.000Z');
    const again = await post('/v1/subscriptions', { user_id: me.user.id, plan_id: paid.id });
    expect(again.status, JSON.stringify(again.body)).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'conflict', details: { reason: 'trial_used' } });
    expect(await allowances(me.user.id)).toEqual([]);
    // The service may still decide explicitly (here: paid, no trial).
    const paidNow = await post('/v1/subscriptions', { user_id: me.user.id, plan_id: paid.id, trial_days: 0 });
    expect(paidNow.body).toMatchObject({ status: 'active', trial_start: null });
  });

  // ---- 2. allowance farming ------------------------------------------------------------------

  it("a user's allowance for a plan and window is granted once per owner, however many subscriptions they open", async () => {
    at('2026-03-01T10:00:00.000Z');
    const free = await plan({ trial_days: 0, allowances: [{ class: 'Usage', amount: 310 }] });
    const me = await signUp(app);
    const subscribe = async () => {
      const res = await me.api.post('/v1/subscriptions', { user_id: me.user.id, plan_id: free.id });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return res.body.id as string;
    };
    let id = await subscribe();
    expect(await allowances(me.user.id)).toEqual(['Usage/310']);
    expect((await event(me.user.id, 'tokens', 310)).status).toBe(201);
    // Cancel now and subscribe again, over and over: the window was granted already.
    for (let i = 0; i < 3; i++) {
      expect((await me.api.post(`/v1/subscriptions/${id}/cancel`, { at_period_end: false })).status).toBe(200);
      id = await subscribe();
    }
    expect(await allowances(me.user.id)).toEqual([]);
    expect((await balance(me.user.id)).balance).toBe(3); // the sign-up bonus only
    // Ten days on, a new subscription's window overlaps the granted one but for its last ten
    // days: only those are granted (310 × 10/31 days).
    at('2026-03-11T10:00:00.000Z');
    me.api = await relogin(me);
    expect((await me.api.post(`/v1/subscriptions/${id}/cancel`, { at_period_end: false })).status).toBe(200);
    id = await subscribe();
    expect(await allowances(me.user.id)).toEqual(['Usage/100']);
    // The scheduler's next window (the new anchor's) is granted whole.
    at('2026-04-11T10:00:00.000Z');
    await app.services.billing.subscriptions.runDue(now);
    expect(await allowances(me.user.id)).toEqual(['Usage/310']);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it('changing plans back and forth, across intervals too, never grants a plan its window twice', async () => {
    at('2026-06-01T00:00:00.000Z');
    const a = await plan({ trial_days: 0, price_monthly: 0, price_yearly: 0, allowances: [{ class: 'Usage', amount: 300 }] });
    const b = await plan({ trial_days: 0, price_monthly: 0, price_yearly: 0, allowances: [{ class: 'BC', amount: 60 }] });
    const u = await makeUser(app);
    const sub = (await post('/v1/subscriptions', { user_id: u.id, plan_id: a.id })).body;
    expect(await allowances(u.id)).toEqual(['Usage/300']);
    expect((await event(u.id, 'tokens', 300)).status).toBe(201);
    at('2026-06-16T00:00:00.000Z'); // half of June left
    expect((await post(`/v1/subscriptions/${sub.id}/change-plan`, { plan_id: b.id, billing_interval: 'yearly' })).status).toBe(200);
    // Back to A on a new interval (a new anchor): A's June is granted already; only the part of
    // the new window after June 30 is new (15 of its 30 days).
    expect((await post(`/v1/subscriptions/${sub.id}/change-plan`, { plan_id: a.id, billing_interval: 'monthly' })).status).toBe(200);
    expect((await allowances(u.id)).filter((g) => g.startsWith('Usage/'))).toEqual(['Usage/150']);
    // And again, at once: nothing more.
    await post(`/v1/subscriptions/${sub.id}/change-plan`, { plan_id: b.id, billing_interval: 'yearly' });
    await post(`/v1/subscriptions/${sub.id}/change-plan`, { plan_id: a.id, billing_interval: 'monthly' });
    expect((await allowances(u.id)).filter((g) => g.startsWith('Usage/'))).toEqual([]);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  // ---- 3. windows the user can move ----------------------------------------------------------

  it("a budget guard's month cannot be reset by the user it limits changing their time zone", async () => {
    at('2026-03-01T10:00:00.000Z');
    const payg = await plan({ trial_days: 0, price_monthly: 1000, pay_as_you_go: true, overage_unit_amount: '1' });
    const me = await signUp(app);
    expect((await post('/v1/subscriptions', { user_id: me.user.id, plan_id: payg.id })).status).toBe(201);
    expect((await svc.put(`/v1/users/${me.user.id}/budget-guard`, { monthly_cap: 10, behavior: 'suspend' })).status).toBe(200);
    // 3 credits from the sign-up bonus, 10 overage = 10¢: the cap.
    expect((await event(me.user.id, 'tokens', 13)).body).toMatchObject({ overage: 10, overage_amount: 10 });
    expect((await event(me.user.id, 'tokens', 1)).body.error.code).toBe('budget_exceeded');
    for (const tz of ['America/Los_Angeles', 'Pacific/Kiritimati', 'Etc/GMT+12', 'Asia/Kolkata']) {
      const patched = await me.api.patch(`/v1/users/${me.user.id}`, { time_zone: tz });
      expect(patched.status, JSON.stringify(patched.body)).toBe(200);
      const e = await event(me.user.id, 'tokens', 1);
      expect(e.status, `${tz}: ${JSON.stringify(e.body)}`).toBe(402);
      expect((await svc.post('/v1/check', { user_id: me.user.id, metric: 'tokens', quantity: 1 })).body).toMatchObject({ allowed: false, reason: 'budget_exceeded' });
    }
    expect((await me.api.get(`/v1/users/${me.user.id}/budget-guard`)).body).toMatchObject({ current_window_spend: 10 });
    // The month the guard was set in ends when it ends; the next one starts then.
    at('2026-04-01T00:00:00.000Z');
    expect((await event(me.user.id, 'tokens', 1)).status).toBe(201);
  });

  it('the daily free quota cannot be refilled by the user changing their time zone', async () => {
    at('2026-03-01T10:00:00.000Z');
    const me = await signUp(app);
    expect((await post('/v1/credits/grant', { user_id: me.user.id, amount: 100, reason: 'test' })).status).toBe(201);
    expect((await event(me.user.id, 'autofix', 3)).body).toMatchObject({ free_units: 3, charged: 0 });
    for (const tz of ['Pacific/Kiritimati', 'Etc/GMT+12', 'America/Los_Angeles', 'Asia/Tokyo']) {
      expect((await me.api.patch(`/v1/users/${me.user.id}`, { time_zone: tz })).status).toBe(200);
      const e = await event(me.user.id, 'autofix', 1);
      expect(e.body, tz).toMatchObject({ free_units: 0, charged: 1 });
      expect((await svc.post('/v1/check', { user_id: me.user.id, metric: 'autofix' })).body.free_units_remaining).toBe(0);
    }
    // Zone changes move the next day's start only later, never earlier: the day that started
    // 2026-03-01 00:00Z (UTC, the zone it was opened in) runs to its end, and the next one — in
    // Tokyo (UTC+9), whose local day containing that instant began before it — starts then and
    // runs to the end of Tokyo's next day.
    at('2026-03-01T23:59:59.000Z');
    expect((await event(me.user.id, 'autofix', 1)).body).toMatchObject({ free_units: 0 });
    at('2026-03-02T00:00:00.000Z');
    expect((await event(me.user.id, 'autofix', 3)).body).toMatchObject({ free_units: 3 });
    at('2026-03-02T16:00:00.000Z'); // Tokyo's Mar 3 began at 15:00Z: still the same quota window
    expect((await event(me.user.id, 'autofix', 1)).body).toMatchObject({ free_units: 0 });
    at('2026-03-03T15:00:00.000Z'); // Tokyo's Mar 4
    expect((await event(me.user.id, 'autofix', 3)).body).toMatchObject({ free_units: 3 });
    expect((await reconcile(app.database)).drift).toEqual([]);
  });
});
