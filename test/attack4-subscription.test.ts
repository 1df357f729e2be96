/**
 * Attacker review 4: a provider subscription's first invoice taken back (dispute or full refund)
 * after its allowance was spent. For a plan bought by a one-time payment the take-back claws the
 * spent allowance back (test/payments-holes.test.ts); for a recurring subscription nothing does.
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

beforeAll(async () => {
  send = await webhookSenders(() => app);
  app = await createTestApp({ payments: send.config, credits: { balanceCap: null, signupBonus: 3 } });
});
afterAll(async () => {
  await app?.close();
  await send?.close();
});

describe(`attack 4: a subscription's invoice taken back (${TARGET})`, () => {
  /**
   * OPEN (not fixed): a refund or dispute of a subscription invoice claws back only the package
   * credits the invoice bought (none here) and ends nothing: the plan and the allowance spent in
   * that invoice's period stay free. Suggested fix: as for a one-time plan payment
   * (payments.clawbacks.ts `endPlan` / `takeBackAllowances`), a full refund or a dispute of a
   * subscription invoice revokes the allowance windows of the period that invoice paid
   * (allowance_cycles of the subscription whose cycle_start falls in the invoice's period) and
   * claws back what they gave out; whether the subscription ends is the provider's
   * `customer.subscription.*` event's to say.
   */
  it.fails('a dispute of the invoice that paid a period claws back the allowance spent in it', async () => {
    const user = await makeUser(app);
    const priceId = id('price');
    const slug = `s${randomBytes(4).toString('hex')}`;
    const plan = await svc().post('/v1/plans', { slug, name: slug, trial_days: 0, price_monthly: 2000, allowances: [{ class: 'Usage', amount: 100 }], prices: [{ provider: 'stripe', provider_price_id: priceId, billing_interval: 'monthly' }] });
    expect(plan.status).toBe(201);
    const cus = id('cus');
    const sub = id('sub');
    const pi = id('pi');
    const ch = id('ch');
    const start = Math.floor(Date.now() / 1000) - 60;
    const end = start + 30 * 86_400;
    const item = { price: { id: priceId, recurring: { interval: 'month' } } };
    const ok = async (event: object) => {
      const res = await send.stripe({ id: id('evt'), object: 'event', ...event } as Record<string, unknown>);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    };
    const reference = (await svc().post('/v1/checkout-references', { user_id: user.id })).body.reference as string;
    await ok({ type: 'checkout.session.completed', data: { object: { id: id('cs'), mode: 'subscription', customer: cus, subscription: sub, client_reference_id: reference, metadata: {} } } });
    await ok({ type: 'customer.subscription.created', data: { object: { id: sub, object: 'subscription', customer: cus, status: 'active', cancel_at_period_end: false, current_period_start: start, current_period_end: end, items: { data: [item] } } } });
    await ok({ type: 'invoice.paid', data: { object: { id: id('in'), customer: cus, subscription: sub, payment_intent: pi, charge: ch, amount_due: 2000, amount_paid: 2000, currency: 'usd', status: 'paid', lines: { data: [{ price: item.price, period: { start, end } }] } } } });
    expect((await svc().get(`/v1/users/${user.id}/balance`)).body.balance).toBe(103);
    const spent = await svc().post('/v1/credits/debit', { user_id: user.id, amount: 100, reason: 'render' }, { idempotencyKey: id('k') });
    expect(spent.status).toBe(201);
    await ok({ type: 'charge.dispute.created', data: { object: { id: id('dp'), object: 'dispute', charge: ch, payment_intent: pi, amount: 2000, currency: 'usd', status: 'needs_response' } } });
    expect((await reconcile(app.database)).drift).toEqual([]);
    // The buyer took the whole payment back: the 100 allowance credits they spent are their debt.
    expect((await svc().get(`/v1/users/${user.id}/balance`)).body.balance).toBe(3 - 100);
  });
});
