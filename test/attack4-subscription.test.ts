/**
 * Attacker review 4 (fixed): a provider subscription's invoice taken back (dispute or full refund)
 * after the allowance it paid for was spent. As for a plan bought by a one-time payment
 * (test/payments-holes.test.ts), the allowance windows of the period that invoice paid end and
 * what they gave out is clawed back (`payment:<id>:allowance-clawback`), once; other periods are
 * untouched, and the subscription's status is the provider's to change (docs/payments.md).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { webhookSenders, type Webhooks } from './support/payment-webhooks.js';

let app: TestApp;
let send: Webhooks;
const svc = () => client(app.server, app.serviceKey);
const id = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;
/** Real time, moved forward by the tests that need a later period (events are signed at it). */
let offsetMs = 0;
const clock = () => new Date(Date.now() + offsetMs);
const nowS = () => Math.floor(clock().getTime() / 1000);

beforeAll(async () => {
  send = await webhookSenders(() => app);
  app = await createTestApp({ payments: send.config, credits: { balanceCap: null, signupBonus: 3 } }, { clock });
});
afterAll(async () => {
  await app?.close();
  await send?.close();
});

describe(`attack 4: a subscription's invoice taken back (${TARGET})`, () => {
  const balance = async (userId: string) => (await svc().get(`/v1/users/${userId}/balance`)).body.balance as number;
  const ok = async (event: object) => {
    const res = await send.stripe({ id: id('evt'), object: 'event', ...event } as Record<string, unknown>, { timestamp: nowS() });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  const day = 86_400;

  /** A user on a Stripe subscription (100 Usage a month, 2000 a month) whose first invoice is paid. */
  async function subscribed(allowance: { amount: number; window?: string } = { amount: 100 }) {
    const user = await makeUser(app);
    const priceId = id('price');
    const slug = `s${randomBytes(4).toString('hex')}`;
    const plan = await svc().post('/v1/plans', { slug, name: slug, trial_days: 0, price_monthly: 2000, allowances: [{ class: 'Usage', ...allowance }], prices: [{ provider: 'stripe', provider_price_id: priceId, billing_interval: 'monthly' }] });
    expect(plan.status).toBe(201);
    const cus = id('cus');
    const sub = id('sub');
    const start = nowS() - 60;
    const end = start + 30 * day;
    const item = { price: { id: priceId, recurring: { interval: 'month' } } };
    const subscription = (status: string, s: number, e: number) => ({ id: sub, object: 'subscription', customer: cus, status, cancel_at_period_end: false, current_period_start: s, current_period_end: e, items: { data: [item] } });
    /** invoice.paid for the period [s, e), paid by a payment intent and charge of its own. */
    const invoicePaid = async (s: number, e: number) => {
      const inv = { id: id('in'), pi: id('pi'), ch: id('ch') };
      await ok({ type: 'invoice.paid', data: { object: { id: inv.id, customer: cus, subscription: sub, payment_intent: inv.pi, charge: inv.ch, amount_due: 2000, amount_paid: 2000, currency: 'usd', status: 'paid', lines: { data: [{ price: item.price, period: { start: s, end: e } }] } } } });
      return inv;
    };
    const reference = (await svc().post('/v1/checkout-references', { user_id: user.id })).body.reference as string;
    await ok({ type: 'checkout.session.completed', data: { object: { id: id('cs'), mode: 'subscription', customer: cus, subscription: sub, client_reference_id: reference, metadata: {} } } });
    await ok({ type: 'customer.subscription.created', data: { object: subscription('active', start, end) } });
    const first = await invoicePaid(start, end);
    expect(await balance(user.id)).toBe(3 + allowance.amount);
    const spend = async (amount: number) => {
      const res = await svc().post('/v1/credits/debit', { user_id: user.id, amount, reason: 'render' }, { idempotencyKey: id('k') });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    };
    const dispute = (ch: string, pi: string) => ({ type: 'charge.dispute.created', data: { object: { id: id('dp'), object: 'dispute', charge: ch, payment_intent: pi, amount: 2000, currency: 'usd', status: 'needs_response' } } });
    const refund = (ch: string, pi: string, amount: number) => ({ type: 'charge.refunded', data: { object: { id: ch, object: 'charge', payment_intent: pi, amount: 2000, amount_refunded: amount, currency: 'usd' } } });
    const subscriptionRow = async () => ((await svc().get(`/v1/users/${user.id}/subscriptions`)).body.data as Array<{ status: string }>)[0];
    return { user, cus, item, sub, start, end, first, invoicePaid, spend, dispute, refund, subscription, subscriptionRow };
  }

  it('a dispute of the invoice that paid a period claws back the allowance spent in it', async () => {
    const s = await subscribed();
    await s.spend(100);
    await ok(s.dispute(s.first.ch, s.first.pi));
    expect((await reconcile(app.database)).drift).toEqual([]);
    // The buyer took the whole payment back: the 100 allowance credits they spent are their debt.
    expect(await balance(s.user.id)).toBe(3 - 100);
    // The subscription itself is the provider's to end (its own subscription events).
    expect((await s.subscriptionRow())?.status).toBe('active');
  });

  it('replays and repeats take back nothing more: the same event, a new dispute event, a full refund after it, a late invoice event', async () => {
    const s = await subscribed();
    await s.spend(40);
    const dispute = { id: id('evt'), object: 'event', ...s.dispute(s.first.ch, s.first.pi) };
    expect((await send.stripe(dispute, { timestamp: nowS() })).status).toBe(200);
    // Spent 40 of 100: 60 unspent allowance ended with the window, 40 clawed back from the bonus (3), then debt.
    expect(await balance(s.user.id)).toBe(3 - 40);
    const replay = await send.stripe(dispute, { timestamp: nowS() });
    expect(replay.status).toBe(200);
    expect(replay.body.replayed).toBe(true);
    await ok(s.dispute(s.first.ch, s.first.pi));
    await ok(s.refund(s.first.ch, s.first.pi, 2000));
    // invoice.payment_succeeded for the same invoice (another event id): the period's window is
    // recorded, so it is not granted again.
    await ok({ type: 'invoice.payment_succeeded', data: { object: { id: s.first.id, customer: s.cus, subscription: s.sub, payment_intent: s.first.pi, charge: s.first.ch, amount_due: 2000, amount_paid: 2000, currency: 'usd', status: 'paid', lines: { data: [{ price: s.item.price, period: { start: s.start, end: s.end } }] } } } });
    await ok({ type: 'customer.subscription.updated', data: { object: s.subscription('active', s.start, s.end) } });
    expect(await balance(s.user.id)).toBe(3 - 40);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it('a partial refund changes no allowance; the rest of the refund then claws back', async () => {
    const s = await subscribed();
    await s.spend(100);
    await ok(s.refund(s.first.ch, s.first.pi, 500));
    expect(await balance(s.user.id)).toBe(3);
    await ok(s.refund(s.first.ch, s.first.pi, 2000));
    expect(await balance(s.user.id)).toBe(3 - 100);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it("only the disputed invoice's period: the next period's allowance, paid by its own invoice, stays", async () => {
    const s = await subscribed();
    await s.spend(100);
    // A month later the renewal: period 2 paid by a second invoice, its 100 granted.
    offsetMs += 30 * day * 1000 + 120_000;
    try {
      const second = await s.invoicePaid(s.end, s.end + 30 * day);
      const before = await balance(s.user.id);
      await ok(s.dispute(s.first.ch, s.first.pi));
      // Period 1's 100 (spent) clawed back; period 2's window goes on (revoking it too would end its
      // 100 as well: before − 200).
      expect(await balance(s.user.id)).toBe(before - 100);
      expect((await s.subscriptionRow())?.status).toBe('active');
      // Then period 2's invoice: its window ends; what the first clawback took from it is taken
      // again (that repaid a debt with credits not paid for), so the end is as if neither was paid.
      await ok(s.dispute(second.ch, second.pi));
      expect(await balance(s.user.id)).toBe(3 - 100);
      expect((await reconcile(app.database)).drift).toEqual([]);
    } finally {
      offsetMs = 0;
    }
  });

  it("the period's later windows (daily allowances) are never opened once its invoice is disputed", async () => {
    const s = await subscribed({ amount: 10, window: 'daily' });
    await s.spend(10);
    await ok(s.dispute(s.first.ch, s.first.pi));
    expect(await balance(s.user.id)).toBe(3 - 10);
    // A day later, still in the disputed period, a subscription event opens the day's window: nothing.
    offsetMs += day * 1000 + 120_000;
    try {
      await ok({ type: 'customer.subscription.updated', data: { object: s.subscription('active', s.start, s.end) } });
      expect(await balance(s.user.id)).toBe(3 - 10);
      expect((await reconcile(app.database)).drift).toEqual([]);
    } finally {
      offsetMs = 0;
    }
  });
});
