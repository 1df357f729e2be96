/**
 * Attacker review 4: a buyer in debt (a clawback of a package they spent) buys a plan with a
 * one-time payment, spends its allowance and takes the payment back. New credits pay debt first
 * (docs/ledger.md, "Clawback"), so the allowance's grant entry is split between the debt and a new
 * grant — and the plan must still know what its allowance gave out, or the take-back claws back
 * the wrong amount.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { stripeCheckout, webhookSenders, type Webhooks } from './support/payment-webhooks.js';

let app: TestApp;
let send: Webhooks;
const svc = () => client(app.server, app.serviceKey);
const id = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;
const AMOUNT = 1000;
const BONUS = 3;

beforeAll(async () => {
  send = await webhookSenders(() => app);
  app = await createTestApp({ payments: send.config, credits: { balanceCap: null, signupBonus: BONUS } });
});
afterAll(async () => {
  await app?.close();
  await send?.close();
});

const balanceOf = async (userId: string) => (await svc().get(`/v1/users/${userId}/balance`)).body as { balance: number; held: number; grants: Array<{ source: string; remaining: number }> };
const spend = async (userId: string, amount: number) => {
  const res = await svc().post('/v1/credits/debit', { user_id: userId, amount, reason: 'render' }, { idempotencyKey: id('k') });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
};
const reference = async (body: Record<string, unknown>) => {
  const res = await svc().post('/v1/checkout-references', body);
  expect(res.status).toBe(201);
  return res.body.reference as string;
};

/** One Stripe payment of AMOUNT, for a package or a plan's price: its success, full refund and dispute. */
async function stripePayment(userId: string, item: { packageId: string } | { priceId: string }) {
  const pi = id('pi');
  const ch = id('ch');
  const metadata = { tally_ref: await reference({ user_id: userId, ...('packageId' in item ? { package_id: item.packageId } : {}) }), ...('priceId' in item ? { price_id: item.priceId } : {}) };
  const session = stripeCheckout({ amount: AMOUNT, pi, metadata }).data.object;
  const deliver = async (event: object) => {
    const res = await send.stripe(event as Record<string, unknown>);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  };
  return {
    succeed: () => deliver({ id: id('evt'), object: 'event', type: 'checkout.session.completed', data: { object: { ...session, payment_status: 'paid' } } }),
    takeBack: (how: 'refund' | 'dispute') =>
      deliver(
        how === 'refund'
          ? { id: id('evt'), object: 'event', type: 'charge.refunded', data: { object: { id: ch, object: 'charge', payment_intent: pi, amount: AMOUNT, amount_refunded: AMOUNT, currency: 'usd', refunded: true } } }
          : { id: id('evt'), object: 'event', type: 'charge.dispute.created', data: { object: { id: id('dp'), object: 'dispute', charge: ch, payment_intent: pi, amount: AMOUNT, currency: 'usd', status: 'needs_response' } } },
      ),
  };
}

describe(`attack 4: allowances granted over debt (${TARGET})`, () => {
  const PACKAGE = 100;

  /** A user who bought a package, spent it with their bonus, and took the payment back: in debt by PACKAGE. */
  async function inDebt(packageId: string) {
    const user = await makeUser(app);
    const pay = await stripePayment(user.id, { packageId });
    await pay.succeed();
    await spend(user.id, PACKAGE + BONUS);
    await pay.takeBack('refund');
    expect((await balanceOf(user.id)).balance).toBe(-PACKAGE);
    return user;
  }

  async function plan(allowance: number) {
    const slug = `d${randomBytes(4).toString('hex')}`;
    const priceId = id('price');
    const res = await svc().post('/v1/plans', { slug, name: slug, trial_days: 0, price_monthly: AMOUNT, allowances: [{ class: 'Usage', amount: allowance, rollover_policy: '1_cycle' }], prices: [{ provider: 'stripe', provider_price_id: priceId, billing_interval: 'monthly' }] });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return priceId;
  }

  /** A Stripe credit package of PACKAGE credits. */
  async function creditPackage(): Promise<{ body: { id: string } }> {
    const pkg = await svc().post('/v1/credit-packages', { name: id('pkg'), provider: 'stripe', provider_price_id: id('price'), credits: PACKAGE, price_amount: AMOUNT, currency: 'usd' });
    expect(pkg.status).toBe(201);
    return pkg;
  }

  it('an allowance larger than the debt: taken back, the plan claws back all it gave (the debt it repaid and what was spent), not nothing', async () => {
    const pkg = await creditPackage();
    const ALLOWANCE = 150;
    const priceId = await plan(ALLOWANCE);
    for (const how of ['refund', 'dispute'] as const) {
      const user = await inDebt(pkg.body.id);
      const pay = await stripePayment(user.id, { priceId });
      await pay.succeed();
      // 100 of the allowance repaid the debt; the buyer spends the other 50.
      expect((await balanceOf(user.id)).balance, how).toBe(ALLOWANCE - PACKAGE);
      await spend(user.id, ALLOWANCE - PACKAGE);
      await pay.takeBack(how);
      // Both payments taken back: the buyer has paid for nothing but kept what they spent (the
      // package's 100 and the allowance's 50, the bonus aside): that is their debt.
      expect((await balanceOf(user.id)).balance, how).toBe(BONUS - (PACKAGE + BONUS) - (ALLOWANCE - PACKAGE));
    }
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it('canceled now, a plan bought in debt leaves nothing of its allowance behind (it does not live on to its window end and roll over)', async () => {
    const pkg = await creditPackage();
    const priceId = await plan(150);
    const user = await inDebt(pkg.body.id);
    await (await stripePayment(user.id, { priceId })).succeed();
    expect((await balanceOf(user.id)).balance).toBe(50);
    const subs = (await svc().get(`/v1/users/${user.id}/subscriptions`)).body.data as Array<{ id: string; status: string }>;
    const sub = subs.find((x) => x.status === 'active');
    expect(sub).toBeDefined();
    const canceled = await svc().post(`/v1/subscriptions/${sub?.id}/cancel`, { at_period_end: false }, { idempotencyKey: id('k') });
    expect(canceled.status, JSON.stringify(canceled.body)).toBe(200);
    const after = await balanceOf(user.id);
    // The 100 that repaid the debt stay repaid (the plan was paid for); what is left of the window ends with it.
    expect(after.grants.filter((g) => g.source === 'allowance' || g.source === 'rollover')).toEqual([]);
    expect(after.balance).toBe(0);
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it('an allowance smaller than the debt: taken back, the plan claws back exactly the allowance (it all repaid debt), no more', async () => {
    const pkg = await creditPackage();
    const ALLOWANCE = 40;
    const priceId = await plan(ALLOWANCE);
    for (const how of ['refund', 'dispute'] as const) {
      const user = await inDebt(pkg.body.id);
      const pay = await stripePayment(user.id, { priceId });
      await pay.succeed();
      expect((await balanceOf(user.id)).balance, how).toBe(ALLOWANCE - PACKAGE);
      await pay.takeBack(how);
      expect((await balanceOf(user.id)).balance, how).toBe(-PACKAGE);
    }
    expect((await reconcile(app.database)).drift).toEqual([]);
  });
});
