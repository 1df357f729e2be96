/**
 * Payment holes (issue 13, items 5, 6 and 8, and what a review of the rest found), end to end
 * over HTTP on both databases. Every test is named after the invariant it pins; each failed on
 * the code before its fix (see the commit messages).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client, type Json } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, type TestApp } from './support/harness.js';
import { stripeCheckout, webhookSenders, type Webhooks } from './support/payment-webhooks.js';
import { must } from '../src/lib/must.js';

let app: TestApp;
let send: Webhooks;
let now = Date.now();
const svc = () => client(app.server, app.serviceKey);

beforeAll(async () => {
  send = await webhookSenders(() => app);
  app = await createTestApp({ payments: send.config, credits: { balanceCap: null, signupBonus: 3 } }, { clock: () => new Date(now) });
});
afterAll(async () => {
  await app?.close();
  await send?.close();
});

const id = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;
const num = () => String(Math.floor(Math.random() * 1e9));
const balanceOf = async (userId: string) => (await svc().get(`/v1/users/${userId}/balance`)).body as { balance: number; grants: Array<{ class: string; remaining: number; expires_at: string | null; source: string }> };
const paymentOf = async (provider: string, providerPaymentId: string) => {
  const list = await svc().get(`/v1/payments?provider=${provider}&limit=200`);
  return must((list.body.data as Array<Record<string, Json>>).find((p) => p.provider_payment_id === providerPaymentId), 'a matching item');
};
const expectReconciled = async () => expect((await reconcile(app.database)).drift).toEqual([]);
const pkg = async (body: Record<string, unknown>) => {
  const res = await svc().post('/v1/credit-packages', { name: id('pkg'), ...body });
  expect(res.status).toBe(201);
  return res.body as { id: string };
};
const reference = async (body: Record<string, unknown>) => {
  const res = await svc().post('/v1/checkout-references', body);
  expect(res.status).toBe(201);
  return res.body.reference as string;
};

const checkout = stripeCheckout;

/** A Lemon Squeezy order_created. */
const lsOrder = (o: { variant: string; total: number; currency?: string; custom?: Record<string, string>; email?: string; customerId?: number; status?: string; orderId?: string }) => ({
  meta: { event_name: 'order_created', custom_data: o.custom ?? {}, test_mode: true },
  data: {
    type: 'orders',
    id: o.orderId ?? num(),
    attributes: {
      store_id: 1, customer_id: o.customerId ?? Number(num()), identifier: 'uuid', user_email: o.email ?? `${id('nobody')}@example.com`, currency: o.currency ?? 'USD',
      subtotal: o.total, tax: 0, total: o.total, status: o.status ?? 'paid', first_order_item: { variant_id: Number(o.variant), product_id: 5, quantity: 1 },
      created_at: '2026-01-01T00:00:00.000000Z', updated_at: '2026-01-01T00:00:00.000000Z',
    },
  },
});

describe('what a payment buys comes from server-side configuration only (item 5)', () => {
  it('metadata credits never buy anything: a payment carrying only metadata.credits grants nothing and waits in the unmatched queue with a reason (all four providers)', async () => {
    const user = await makeUser(app);
    const pi = id('pi');
    const stripe = await send.stripe(checkout({ amount: 100, pi, metadata: { user_id: user.id, credits: '100000' } }));
    expect(stripe.status).toBe(200);
    const orderId = num();
    await send.lemonsqueezy(lsOrder({ orderId, variant: num(), total: 100, custom: { user_id: user.id, credits: '100000' } }));
    const creemOrder = id('ord');
    await send.creem({
      id: id('evt'), eventType: 'checkout.completed', created_at: Date.now(),
      object: { id: id('ch'), order: { id: creemOrder, amount: 100, currency: 'USD', status: 'paid' }, product: { id: id('prod') }, customer: { id: id('cust'), email: `${id('x')}@example.com` }, status: 'completed', metadata: { user_id: user.id, credits: '100000' } },
    });
    const capture = id('CAP');
    await send.paypal({ id: id('WH'), event_type: 'PAYMENT.CAPTURE.COMPLETED', resource_type: 'capture', resource: { id: capture, status: 'COMPLETED', amount: { currency_code: 'USD', value: '1.00' }, custom_id: JSON.stringify({ user_id: user.id, credits: '100000' }) } });
    expect((await balanceOf(user.id)).balance).toBe(3);
    for (const [provider, pid] of [['stripe', pi], ['lemonsqueezy', `order_${orderId}`], ['creem', creemOrder], ['paypal', capture]] as const) {
      const p = await paymentOf(provider, pid);
      expect(p).toMatchObject({ status: 'succeeded', match_status: 'unmatched', user_id: null, credits: 0, grant_transaction_id: null });
      expect(p.unmatched_reason).toMatch(/buys nothing/);
    }
    await expectReconciled();
  });

  it('a package is granted only when the amount and currency paid (net of tax) equal its price; otherwise the payment waits in the queue with the reason', async () => {
    const user = await makeUser(app);
    const variant = num();
    await pkg({ provider: 'lemonsqueezy', provider_price_id: variant, credits: 500, price_amount: 1999, currency: 'usd' });
    const cheap = lsOrder({ variant, total: 1, custom: { user_id: user.id } });
    await send.lemonsqueezy(cheap);
    const euro = lsOrder({ variant, total: 1999, currency: 'EUR', custom: { user_id: user.id } });
    await send.lemonsqueezy(euro);
    expect((await balanceOf(user.id)).balance).toBe(3);
    const p1 = await paymentOf('lemonsqueezy', `order_${cheap.data.id}`);
    expect(p1).toMatchObject({ match_status: 'unmatched', credits: 0 });
    expect(p1.unmatched_reason).toContain('costs 1999 usd; paid 1 usd');
    expect((await paymentOf('lemonsqueezy', `order_${euro.data.id}`)).unmatched_reason).toContain('paid 1999 eur');
    // A package without a price cannot be checked: never granted from a webhook.
    const unpriced = num();
    await pkg({ provider: 'lemonsqueezy', provider_price_id: unpriced, credits: 500 });
    const o3 = lsOrder({ variant: unpriced, total: 1999, custom: { user_id: user.id } });
    await send.lemonsqueezy(o3);
    expect((await paymentOf('lemonsqueezy', `order_${o3.data.id}`)).unmatched_reason).toContain('has no price');
    // The exact price buys it; on Stripe a client-named price_id is only a hint, checked the same way, and tax buys nothing.
    await send.lemonsqueezy(lsOrder({ variant, total: 1999, custom: { user_id: user.id } }));
    const price = id('price');
    await pkg({ provider: 'stripe', provider_price_id: price, credits: 100, price_amount: 1000, currency: 'usd' });
    await send.stripe(checkout({ amount: 1190, tax: 190, metadata: { user_id: user.id, price_id: price } }));
    await send.stripe(checkout({ amount: 10, metadata: { user_id: user.id, price_id: price } }));
    expect((await balanceOf(user.id)).balance).toBe(603);
    await expectReconciled();
  });

  it('metadata plan_id never chooses a plan: a one-time payment buys the plan its price maps to, at that plan’s price; a subscription keeps its price’s plan', async () => {
    const user = await makeUser(app);
    const mk = async (price: number) => {
      const slug = `h${randomBytes(4).toString('hex')}`;
      const priceId = id('price');
      const res = await svc().post('/v1/plans', { slug, name: slug, trial_days: 0, price_monthly: price, allowances: [{ class: 'Usage', amount: price / 10 }], prices: [{ provider: 'stripe', provider_price_id: priceId, billing_interval: 'monthly' }] });
      expect(res.status).toBe(201);
      return { id: res.body.id as string, priceId };
    };
    const cheap = await mk(500);
    const dear = await mk(90_000);
    const subs = async () => (await svc().get(`/v1/users/${user.id}/subscriptions`)).body.data as Array<{ plan_id: string; status: string }>;
    // One-time: 5.00 paid, metadata asks for the 900.00 plan.
    const pi = id('pi');
    await send.stripe(checkout({ amount: 500, pi, metadata: { user_id: user.id, plan_id: dear.id } }));
    expect((await subs()).map((s) => s.plan_id)).not.toContain(dear.id);
    expect(await paymentOf('stripe', pi)).toMatchObject({ match_status: 'unmatched', plan_id: null });
    // The cheap plan's own price, paid in full, buys it.
    await send.stripe(checkout({ amount: 500, metadata: { user_id: user.id, price_id: cheap.priceId } }));
    expect((await subs()).map((s) => s.plan_id)).toContain(cheap.id);
    // A provider subscription on the cheap price whose metadata names the dear plan stays on the cheap plan.
    const sub = id('sub');
    await send.stripe({
      id: id('evt'), type: 'customer.subscription.created',
      data: { object: { id: sub, object: 'subscription', customer: id('cus'), status: 'active', metadata: { user_id: user.id, plan_id: dear.id }, items: { data: [{ price: { id: cheap.priceId, recurring: { interval: 'month' } } }] } } },
    });
    const all = await svc().get(`/v1/users/${user.id}/subscriptions`);
    const synced = (all.body.data as Array<{ plan_id: string; provider_subscription_id: string }>).find((s) => s.provider_subscription_id === sub);
    expect(synced?.plan_id).toBe(cheap.id);
    await expectReconciled();
  });

  it('only a checkout reference Tally signed chooses the user and the package; a tampered, expired or unsigned one does not', async () => {
    const user = await makeUser(app);
    const stranger = await makeUser(app);
    const variant = num();
    const p = await pkg({ provider: 'lemonsqueezy', provider_price_id: variant, credits: 300, price_amount: 900, currency: 'usd' });
    const ref = await reference({ user_id: user.id, package_id: p.id });
    expect(ref.length).toBeLessThanOrEqual(127); // fits PayPal's custom_id
    // Service-only, and only for real users and packages.
    expect((await client(app.server, null).post('/v1/checkout-references', { user_id: user.id })).status).toBe(401);
    expect((await svc().post('/v1/checkout-references', { user_id: 'usr_nobody' })).status).toBe(404);
    expect((await svc().post('/v1/checkout-references', { user_id: user.id, package_id: 'cpk_nothing' })).status).toBe(404);
    // The reference alone (no variant named) picks the package, at its price.
    const o1 = lsOrder({ variant: num(), total: 900, custom: { tally_ref: ref } });
    expect((await send.lemonsqueezy(o1)).body.outcome).toContain(`granted 300 credits to ${user.id}`);
    // A reference naming a package, but a variant of another price: no grant.
    const other = num();
    await pkg({ provider: 'lemonsqueezy', provider_price_id: other, credits: 1, price_amount: 100, currency: 'usd' });
    const o2 = lsOrder({ variant: other, total: 100, custom: { tally_ref: ref } });
    await send.lemonsqueezy(o2);
    expect((await paymentOf('lemonsqueezy', `order_${o2.data.id}`)).unmatched_reason).toContain('names package');
    // Tampered: the stranger's id with the user's signature.
    const forged = ref.replace(user.id, stranger.id);
    const o3 = lsOrder({ variant, total: 900, custom: { tally_ref: forged } });
    await send.lemonsqueezy(o3);
    expect(await paymentOf('lemonsqueezy', `order_${o3.data.id}`)).toMatchObject({ match_status: 'unmatched', user_id: null });
    // Expired (the default lifetime is a day).
    const short = await reference({ user_id: user.id, expires_in_seconds: 60 });
    now += 120_000;
    try {
      const o4 = lsOrder({ variant, total: 900, custom: { tally_ref: short } });
      await send.lemonsqueezy(o4);
      expect(await paymentOf('lemonsqueezy', `order_${o4.data.id}`)).toMatchObject({ match_status: 'unmatched' });
    } finally {
      now = Date.now();
    }
    // Stripe's client_reference_id and PayPal's bare custom_id carry it too.
    const price = id('price');
    const sp = await pkg({ provider: 'stripe', provider_price_id: price, credits: 40, price_amount: 400, currency: 'usd' });
    await send.stripe(checkout({ amount: 400, clientRef: await reference({ user_id: user.id, package_id: sp.id }) }));
    const pp = await pkg({ provider: 'paypal', provider_price_id: id('SKU'), credits: 7, price_amount: 700, currency: 'usd' });
    const capture = id('CAP');
    await send.paypal({ id: id('WH'), event_type: 'PAYMENT.CAPTURE.COMPLETED', resource_type: 'capture', resource: { id: capture, status: 'COMPLETED', amount: { currency_code: 'USD', value: '7.00' }, custom_id: await reference({ user_id: user.id, package_id: pp.id }) } });
    expect((await balanceOf(user.id)).balance).toBe(3 + 300 + 40 + 7);
    expect((await balanceOf(stranger.id)).balance).toBe(3);
    await expectReconciled();
  });

  it('a refunded or reversed PayPal subscription sale takes its credits back (PAYMENT.SALE.REFUNDED and PAYMENT.SALE.REVERSED are not ignored)', async () => {
    const user = await makeUser(app);
    const pp = await pkg({ provider: 'paypal', provider_price_id: id('SKU'), credits: 100, price_amount: 1000, currency: 'usd' });
    const sale = (saleId: string) => ({
      id: id('WH'), event_version: '1.0', resource_type: 'sale', event_type: 'PAYMENT.SALE.COMPLETED',
      resource: { id: saleId, state: 'completed', billing_agreement_id: id('I'), amount: { total: '10.00', currency: 'USD' }, custom: '' },
    });
    // A sale carries no price id: a signed reference names the package (custom_id on the subscription).
    const refunded = id('SALE');
    const first = sale(refunded);
    (first.resource as Record<string, unknown>)['custom'] = await reference({ user_id: user.id, package_id: pp.id });
    await send.paypal(first);
    expect((await balanceOf(user.id)).balance).toBe(3 + 100);
    const refund = {
      id: id('WH'), event_version: '1.0', resource_type: 'refund', event_type: 'PAYMENT.SALE.REFUNDED',
      resource: { id: id('REF'), state: 'completed', sale_id: refunded, amount: { total: '-4.00', currency: 'USD' }, parent_payment: id('PAY') },
    };
    expect((await send.paypal(refund)).status).toBeLessThan(300);
    await send.paypal(refund);
    expect((await balanceOf(user.id)).balance).toBe(3 + 60);
    const reversed = id('SALE');
    const second = sale(reversed);
    (second.resource as Record<string, unknown>)['custom'] = await reference({ user_id: user.id, package_id: pp.id });
    await send.paypal(second);
    expect((await balanceOf(user.id)).balance).toBe(3 + 60 + 100);
    await send.paypal({
      id: id('WH'), event_version: '1.0', resource_type: 'refund', event_type: 'PAYMENT.SALE.REVERSED',
      resource: { id: id('REV'), state: 'completed', sale_id: reversed, amount: { total: '-10.00', currency: 'USD' } },
    });
    expect((await balanceOf(user.id)).balance).toBe(3 + 60);
    await expectReconciled();
  });

  it('malformed PayPal refunds are 400 and change nothing, whatever shape their fields take', async () => {
    const user = await makeUser(app);
    const before = await balanceOf(user.id);
    const capture = id('CAP');
    const refund = (resource: Record<string, unknown>) => ({ id: id('WH'), resource_type: 'refund', event_type: 'PAYMENT.CAPTURE.REFUNDED', resource: { id: id('REF'), status: 'COMPLETED', ...resource } });
    const up = [{ rel: 'up', href: `https://api.paypal.com/v2/payments/captures/${capture}` }];
    const shapes = [
      refund({ amount: { currency_code: 'USD', value: '1.00' }, links: 7 }),
      refund({ amount: { currency_code: 'USD', value: '1.00' }, links: { rel: 'up' } }),
      refund({ amount: { currency_code: 'USD', value: '1.00' }, links: [null, 3, 'x'] }),
      refund({ amount: 'lots', links: up }),
      refund({ amount: { currency_code: 'USD', value: { n: 1 } }, links: up }),
      refund({ seller_payable_breakdown: 5, links: up }),
      { id: id('WH'), resource_type: 'refund', event_type: 'PAYMENT.SALE.REFUNDED', resource: { id: id('REF'), sale_id: { x: 1 }, amount: { total: '-1.00', currency: 'USD' } } },
      { id: id('WH'), resource_type: 'refund', event_type: 'PAYMENT.SALE.REFUNDED', resource: 'not an object' },
      { id: id('WH'), resource_type: 'refund', event_type: 'PAYMENT.CAPTURE.REFUNDED' },
    ];
    for (const shape of shapes) {
      const res = await send.paypal(shape);
      expect(res.status, JSON.stringify(shape)).toBeGreaterThanOrEqual(400);
      expect(res.status, JSON.stringify(shape)).toBeLessThan(500);
    }
    expect(await balanceOf(user.id)).toEqual(before);
    await expectReconciled();
  });

  it('an unsigned metadata user_id still matches its payment but never links a provider customer: a stranger cannot pre-link someone else’s customer', async () => {
    // (Verified: on Lemon Squeezy a signed reference links only the user's own verified address.)
    const victim = await makeUser(app, { is_email_verified: true });
    const attacker = await makeUser(app);
    const variant = num();
    await pkg({ provider: 'lemonsqueezy', provider_price_id: variant, credits: 50, price_amount: 500, currency: 'usd' });
    const customerId = Number(num());
    // The attacker checks out as the victim's Lemon Squeezy customer (the store keys customers on e-mail), naming himself.
    const first = await send.lemonsqueezy(lsOrder({ variant, total: 500, customerId, email: victim.email, custom: { user_id: attacker.id } }));
    expect(first.body.outcome).toContain(`granted 50 credits to ${attacker.id}`);
    expect((await svc().get(`/v1/users/${attacker.id}/customers`)).body.data).toEqual([]);
    // The victim's own next order under that customer is not sent to the attacker.
    const second = lsOrder({ variant, total: 500, customerId, email: victim.email, custom: { tally_ref: await reference({ user_id: victim.id }) } });
    await send.lemonsqueezy(second);
    expect((await balanceOf(victim.id)).balance).toBe(53);
    expect((await balanceOf(attacker.id)).balance).toBe(53);
    // A signed reference does link: the victim's customer is now theirs, first link wins.
    expect((await svc().get(`/v1/users/${victim.id}/customers`)).body.data.map((c: { provider_customer_id: string }) => c.provider_customer_id)).toEqual([String(customerId)]);
    const third = await send.lemonsqueezy(lsOrder({ variant, total: 500, customerId, custom: { user_id: attacker.id } }));
    expect(third.body.outcome).toContain(`to ${victim.id}`);
    await expectReconciled();
  });
});

describe('refunds and disputes find their payment by every id the provider uses (item 6)', () => {
  const basilInvoice = (o: { invoice: string; customer: string; userId: string; price: string; amount: number }) => ({
    id: id('evt'), object: 'event', api_version: '2025-03-31.basil', type: 'invoice.paid',
    data: {
      object: {
        id: o.invoice, object: 'invoice', customer: o.customer, amount_due: o.amount, amount_paid: o.amount, currency: 'usd', status: 'paid', total_taxes: [],
        parent: { type: 'subscription_details', subscription_details: { subscription: id('sub'), metadata: { user_id: o.userId } } },
        lines: { data: [{ pricing: { type: 'price_details', price_details: { price: o.price, product: id('prod') } }, period: { start: 1767225600, end: 1769904000 } }] },
        status_transitions: { paid_at: 1767225700 },
      },
    },
  });
  const invoicePayment = (invoice: string, pi: string, shape: 'basil' | 'preview' = 'basil') => ({
    id: id('evt'), object: 'event', type: 'invoice_payment.paid',
    data: {
      object: shape === 'basil'
        ? { id: id('inpay'), object: 'invoice_payment', invoice, amount_paid: 900, amount_requested: 900, currency: 'usd', status: 'paid', is_default: true, payment: { type: 'payment_intent', payment_intent: pi } }
        : { id: id('inpay'), object: 'invoice_payment', invoice, amount_paid: 900, currency: 'usd', status: 'paid', payment_intent: pi, charge: null },
    },
  });
  const charge = (o: { pi: string | null; ch: string; refunded: number }) => ({ id: id('evt'), type: 'charge.refunded', data: { object: { id: o.ch, object: 'charge', payment_intent: o.pi, amount: 900, amount_refunded: o.refunded, currency: 'usd', refunded: o.refunded === 900 } } });
  const dispute = (o: { pi: string | null; ch: string }) => ({ id: id('evt'), type: 'charge.dispute.created', data: { object: { id: id('dp'), object: 'dispute', charge: o.ch, payment_intent: o.pi, amount: 900, currency: 'usd', status: 'needs_response' } } });

  it('current API (2025-03-31.basil and later): a refund and a dispute of an invoice payment claw back, whichever order invoice_payment.paid arrives in', async () => {
    const user = await makeUser(app);
    const price = id('price');
    await pkg({ provider: 'stripe', provider_price_id: price, credits: 500, price_amount: 900, currency: 'usd' });
    const invoice = id('in');
    const pi = id('pi');
    const ch = id('ch');
    await send.stripe(basilInvoice({ invoice, customer: id('cus'), userId: user.id, price, amount: 900 }));
    expect((await balanceOf(user.id)).balance).toBe(503);
    // The refund names the payment intent Tally has not seen yet: 5xx, retried.
    const refund = charge({ pi, ch, refunded: 450 });
    expect((await send.stripe(refund)).status).toBe(500);
    expect((await send.stripe(invoicePayment(invoice, pi))).status).toBe(200);
    expect((await send.stripe(refund)).status).toBe(200);
    expect(await paymentOf('stripe', invoice)).toMatchObject({ amount_refunded: 450, credits_clawed_back: 250 });
    // The dispute names the charge (learned from the refund) and no payment intent.
    expect((await send.stripe(dispute({ pi: null, ch }))).status).toBe(200);
    expect(await paymentOf('stripe', invoice)).toMatchObject({ status: 'disputed', credits_clawed_back: 500 });
    expect((await balanceOf(user.id)).balance).toBe(3);
    // The newer InvoicePayment shape (payment_intent at the top level) links too.
    const inv2 = id('in');
    const pi2 = id('pi');
    await send.stripe(invoicePayment(inv2, pi2, 'preview'));
    await send.stripe(basilInvoice({ invoice: inv2, customer: id('cus'), userId: user.id, price, amount: 900 }));
    expect((await send.stripe(charge({ pi: pi2, ch: id('ch'), refunded: 900 }))).status).toBe(200);
    expect(await paymentOf('stripe', inv2)).toMatchObject({ status: 'refunded', credits_clawed_back: 500 });
    expect((await balanceOf(user.id)).balance).toBe(3);
    await expectReconciled();
  });

  it('older API versions: a dispute naming only the charge finds the invoice payment keyed by its payment intent', async () => {
    const user = await makeUser(app);
    const price = id('price');
    await pkg({ provider: 'stripe', provider_price_id: price, credits: 200, price_amount: 900, currency: 'usd' });
    const pi = id('pi');
    const ch = id('ch');
    const invoice = id('in');
    await send.stripe({
      id: id('evt'), type: 'invoice.paid',
      data: { object: { id: invoice, customer: id('cus'), subscription: id('sub'), subscription_details: { metadata: { user_id: user.id } }, payment_intent: pi, charge: ch, amount_due: 900, amount_paid: 900, currency: 'usd', status: 'paid', lines: { data: [{ price: { id: price, recurring: { interval: 'month' } }, period: { start: 1767225600, end: 1769904000 } }] } } },
    });
    expect((await balanceOf(user.id)).balance).toBe(203);
    expect((await send.stripe(dispute({ pi: null, ch }))).status).toBe(200);
    expect(await paymentOf('stripe', pi)).toMatchObject({ status: 'disputed', credits_clawed_back: 200 });
    await expectReconciled();
  });

  it('a checkout and the invoice it created are one payment under any API version: it buys once, whichever event comes first', async () => {
    const user = await makeUser(app);
    const price = id('price');
    await pkg({ provider: 'stripe', provider_price_id: price, credits: 100, price_amount: 1000, currency: 'usd' });
    const oneTimeInvoice = (invoice: string) => ({
      id: id('evt'), type: 'invoice.paid',
      data: { object: { id: invoice, customer: null, amount_due: 1000, amount_paid: 1000, currency: 'usd', status: 'paid', metadata: { user_id: user.id }, lines: { data: [{ pricing: { price_details: { price } } }] } } },
    });
    const in1 = id('in');
    await send.stripe(checkout({ amount: 1000, invoice: in1, metadata: { user_id: user.id, price_id: price } }));
    await send.stripe(oneTimeInvoice(in1));
    const in2 = id('in');
    await send.stripe(oneTimeInvoice(in2));
    await send.stripe(checkout({ amount: 1000, invoice: in2, metadata: { user_id: user.id, price_id: price } }));
    expect((await balanceOf(user.id)).balance).toBe(203);
    await expectReconciled();
  });

  it('a refund names a payment of its own provider only', async () => {
    const user = await makeUser(app);
    const shared = id('ord');
    const price = id('price');
    await pkg({ provider: 'stripe', provider_price_id: price, credits: 10, price_amount: 100, currency: 'usd' });
    await send.stripe(checkout({ amount: 100, pi: shared, metadata: { user_id: user.id, price_id: price } }));
    const refund = await send.creem({ id: id('evt'), eventType: 'refund.created', created_at: Date.now(), object: { id: id('ref'), refund_amount: 100, order: { id: shared } } });
    expect(refund.status).toBe(500);
    expect((await balanceOf(user.id)).balance).toBe(13);
  });
});

describe('resolving keeps what was bought; unknown statuses are not paid (item 8)', () => {
  it('resolving an unmatched payment grants its package’s credit class and expiry, as priced when paid, even after the package changed or was deleted', async () => {
    const variant = num();
    const p = await pkg({ provider: 'lemonsqueezy', provider_price_id: variant, credits: 200, class: 'BC', expires_in_days: 30, price_amount: 1999, currency: 'usd' });
    const order = lsOrder({ variant, total: 1999 });
    await send.lemonsqueezy(order);
    const queued = await paymentOf('lemonsqueezy', `order_${order.data.id}`);
    expect(queued).toMatchObject({ match_status: 'unmatched', credits: 200, package_id: p.id, credit_class: 'BC', credits_expire_days: 30 });
    expect(queued.unmatched_reason).toContain('no user matched');
    expect((await svc().patch(`/v1/credit-packages/${p.id}`, { class: 'RC', credits: 1 })).status).toBe(200);
    expect((await svc().del(`/v1/credit-packages/${p.id}`)).status).toBe(200);
    const user = await makeUser(app);
    expect((await svc().post(`/v1/payments/${queued.id}/resolve`, { user_id: user.id })).status).toBe(200);
    const grant = must((await balanceOf(user.id)).grants.find((g) => g.source === 'purchase'), 'a matching item');
    expect(grant).toMatchObject({ class: 'BC', remaining: 200 });
    const days = (new Date(must(grant.expires_at, 'grant.expires_at')).getTime() - now) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThan(30.1);
    await expectReconciled();
  });

  it('an order status Tally does not know is not paid (Lemon Squeezy), and a Creem checkout whose order is not paid grants nothing', async () => {
    const user = await makeUser(app);
    const variant = num();
    await pkg({ provider: 'lemonsqueezy', provider_price_id: variant, credits: 60, price_amount: 600, currency: 'usd' });
    const odd = lsOrder({ variant, total: 600, status: 'chargeback_pending', custom: { user_id: user.id } });
    await send.lemonsqueezy(odd);
    expect(await paymentOf('lemonsqueezy', `order_${odd.data.id}`)).toMatchObject({ status: 'processing', credits: 0 });
    const product = id('prod');
    await pkg({ provider: 'creem', provider_price_id: product, credits: 60, price_amount: 600, currency: 'usd' });
    const creemOrder = id('ord');
    await send.creem({
      id: id('evt'), eventType: 'checkout.completed', created_at: Date.now(),
      object: { id: id('ch'), order: { id: creemOrder, amount: 600, currency: 'USD', status: 'pending' }, product: { id: product }, customer: { id: id('cust') }, status: 'completed', metadata: { user_id: user.id } },
    });
    expect(await paymentOf('creem', creemOrder)).toMatchObject({ status: 'processing', credits: 0 });
    expect((await balanceOf(user.id)).balance).toBe(3);
  });
});

/**
 * Events arrive out of order (Stripe's asynchronous payments: checkout.session.completed with
 * payment_status 'unpaid', then charge.refunded, then checkout.session.async_payment_succeeded;
 * any provider's retries). The review found that a refund recorded on a payment still
 * `processing` was forgotten when the success arrived: the success granted everything.
 */
describe('refunds and disputes that arrive before the payment succeeds (review)', () => {
  /** One payment of 10.00 buying a 100-credit package, as one provider's events say it. */
  interface Flow {
    provider: 'stripe' | 'paypal' | 'creem';
    pid: string;
    send(event: object): Promise<{ status: number; body: Json }>;
    processing(): object;
    success(): object;
    /** The refunded total so far becomes `total` (Creem sends the difference: its refunds are deltas). */
    refund(total: number): object;
    dispute(): object;
  }
  const AMOUNT = 1000;
  const CREDITS = 100;

  const stripeFlow = async (userId: string, packageId?: string, priceId?: string): Promise<Flow> => {
    const pi = id('pi');
    const ch = id('ch');
    const metadata = { tally_ref: await reference({ user_id: userId, ...(packageId ? { package_id: packageId } : {}) }), ...(priceId ? { price_id: priceId } : {}) };
    const session = stripeCheckout({ amount: AMOUNT, pi, metadata }).data.object;
    const checkoutEvent = (type: string, paymentStatus: string) => ({ id: id('evt'), object: 'event', type, data: { object: { ...session, payment_status: paymentStatus } } });
    return {
      provider: 'stripe',
      pid: pi,
      send: (e) => send.stripe(e),
      processing: () => checkoutEvent('checkout.session.completed', 'unpaid'),
      success: () => checkoutEvent('checkout.session.async_payment_succeeded', 'paid'),
      refund: (total) => ({ id: id('evt'), object: 'event', type: 'charge.refunded', data: { object: { id: ch, object: 'charge', payment_intent: pi, amount: AMOUNT, amount_refunded: total, currency: 'usd', refunded: total === AMOUNT } } }),
      dispute: () => ({ id: id('evt'), object: 'event', type: 'charge.dispute.created', data: { object: { id: id('dp'), object: 'dispute', charge: ch, payment_intent: pi, amount: AMOUNT, currency: 'usd', status: 'needs_response' } } }),
    };
  };
  const dollars = (minor: number) => (minor / 100).toFixed(2);
  const paypalFlow = async (userId: string, packageId: string): Promise<Flow> => {
    const capture = id('CAP');
    const customId = await reference({ user_id: userId, package_id: packageId });
    const captureEvent = (type: string, status: string) => ({ id: id('WH'), event_version: '1.0', resource_type: 'capture', event_type: type, resource: { id: capture, status, amount: { currency_code: 'USD', value: dollars(AMOUNT) }, custom_id: customId } });
    let last = 0;
    return {
      provider: 'paypal',
      pid: capture,
      send: (e) => send.paypal(e),
      processing: () => captureEvent('PAYMENT.CAPTURE.PENDING', 'PENDING'),
      success: () => captureEvent('PAYMENT.CAPTURE.COMPLETED', 'COMPLETED'),
      refund: (total) => {
        const delta = Math.max(0, total - last);
        last = Math.max(last, total);
        return {
          id: id('WH'), resource_type: 'refund', event_type: 'PAYMENT.CAPTURE.REFUNDED',
          resource: {
            id: id('REF'), status: 'COMPLETED', amount: { currency_code: 'USD', value: dollars(delta) },
            seller_payable_breakdown: { total_refunded_amount: { currency_code: 'USD', value: dollars(total) } },
            links: [{ rel: 'up', method: 'GET', href: `https://api.paypal.com/v2/payments/captures/${capture}` }],
          },
        };
      },
      dispute: () => ({ id: id('WH'), resource_type: 'capture', event_type: 'PAYMENT.CAPTURE.REVERSED', resource: { id: capture, status: 'REVERSED', amount: { currency_code: 'USD', value: dollars(AMOUNT) } } }),
    };
  };
  const creemFlow = async (userId: string, packageId: string, product: string): Promise<Flow> => {
    const order = id('ord');
    const tallyRef = await reference({ user_id: userId, package_id: packageId });
    const checkoutEvent = (status: string) => ({
      id: id('evt'), eventType: 'checkout.completed', created_at: Date.now(),
      object: { id: id('ch'), object: 'checkout', order: { id: order, amount: AMOUNT, currency: 'USD', status }, product: { id: product }, customer: { id: id('cust') }, status: 'completed', metadata: { tally_ref: tallyRef } },
    });
    let last = 0;
    return {
      provider: 'creem',
      pid: order,
      send: (e) => send.creem(e),
      processing: () => checkoutEvent('pending'),
      success: () => checkoutEvent('paid'),
      refund: (total) => {
        const delta = total - last;
        last = total;
        return { id: id('evt'), eventType: 'refund.created', created_at: Date.now(), object: { id: id('ref'), object: 'refund', status: 'succeeded', refund_amount: delta, refund_currency: 'USD', order: { id: order } } };
      },
      dispute: () => ({ id: id('evt'), eventType: 'dispute.created', created_at: Date.now(), object: { id: id('dsp'), amount: AMOUNT, order: { id: order } } }),
    };
  };

  type Step = 'processing' | 'success' | 'dispute' | number;
  /** Delivers each step's event twice (the second is a replay and must change nothing). */
  const deliver = async (flow: Flow, steps: Step[]) => {
    for (const step of steps) {
      const event = step === 'processing' ? flow.processing() : step === 'success' ? flow.success() : step === 'dispute' ? flow.dispute() : flow.refund(step);
      const first = await flow.send(event);
      expect(first.status, `${flow.provider} ${String(step)}: ${JSON.stringify(first.body)}`).toBe(200);
      expect((await flow.send(event)).body.replayed).toBe(true);
    }
  };
  /** Credits the payment leaves its buyer with, rounded as the pro-rata clawback rounds. */
  const kept = (refunded: number) => CREDITS - Math.round((CREDITS * refunded) / AMOUNT);

  it('a refund that arrives before the payment succeeds is never granted back: the success grants only what was not refunded (nothing, for a full refund), whatever order the events come in', async () => {
    const price = { stripe: id('price'), paypal: id('SKU'), creem: id('prod') };
    const pkgs = {
      stripe: await pkg({ provider: 'stripe', provider_price_id: price.stripe, credits: CREDITS, price_amount: AMOUNT, currency: 'usd' }),
      paypal: await pkg({ provider: 'paypal', provider_price_id: price.paypal, credits: CREDITS, price_amount: AMOUNT, currency: 'usd' }),
      creem: await pkg({ provider: 'creem', provider_price_id: price.creem, credits: CREDITS, price_amount: AMOUNT, currency: 'usd' }),
    };
    const flows: Record<Flow['provider'], (userId: string) => Promise<Flow>> = {
      stripe: (u) => stripeFlow(u, pkgs.stripe.id, price.stripe),
      paypal: (u) => paypalFlow(u, pkgs.paypal.id),
      creem: (u) => creemFlow(u, pkgs.creem.id, price.creem),
    };
    // 335 of 1000 refunded: 33.5 credits, rounded to 34 taken back, 66 kept.
    const partial = 335;
    const scenarios: Array<{ name: string; steps: Step[]; balance: number; then?: { steps: Step[]; balance: number }; providers?: Array<Flow['provider']> }> = [
      { name: 'success, then a partial refund (the reference order)', steps: ['success', partial], balance: kept(partial), then: { steps: [AMOUNT], balance: 0 } },
      { name: 'a partial refund before the success', steps: ['processing', partial, 'success'], balance: kept(partial), then: { steps: [AMOUNT], balance: 0 } },
      { name: 'a partial, then a full refund, before the success', steps: ['processing', partial, AMOUNT, 'success'], balance: 0 },
      { name: 'a full refund before the success', steps: ['processing', AMOUNT, 'success'], balance: 0, then: { steps: ['dispute'], balance: 0 } },
      // Cumulative totals only (a stale total arriving late changes nothing); Creem sends deltas.
      { name: 'a full refund before the success, then a stale partial total', steps: ['processing', AMOUNT, 'success', partial], balance: 0, providers: ['stripe', 'paypal'] },
    ];
    for (const provider of ['stripe', 'paypal', 'creem'] as const) {
      for (const s of scenarios) {
        if (s.providers && !s.providers.includes(provider)) continue;
        const user = await makeUser(app);
        const flow = await flows[provider](user.id);
        const label = `${provider}: ${s.name}`;
        await deliver(flow, s.steps);
        // Another delivery of the success under a new event id: the payment is settled, nothing more.
        await deliver(flow, ['success']);
        expect((await balanceOf(user.id)).balance, label).toBe(3 + s.balance);
        const row = await paymentOf(provider, flow.pid);
        expect(row.credits_clawed_back, label).toBe(CREDITS - s.balance);
        expect(row.status, label).toBe(row.amount_refunded === AMOUNT ? 'refunded' : 'succeeded');
        if (s.then) {
          await deliver(flow, s.then.steps);
          expect((await balanceOf(user.id)).balance, `${label}, then ${s.then.steps.join(', ')}`).toBe(3 + s.then.balance);
        }
      }
      // A refund and the success delivered at the same moment: one waits for the other (the
      // payment's row lock), and either way the buyer keeps the same credits.
      const user = await makeUser(app);
      const flow = await flows[provider](user.id);
      await deliver(flow, ['processing']);
      const answers = await Promise.all([flow.send(flow.refund(partial)), flow.send(flow.success())]);
      expect(answers.map((a) => a.status), provider).toEqual([200, 200]);
      expect((await balanceOf(user.id)).balance, `${provider}: concurrent`).toBe(3 + kept(partial));
    }
    await expectReconciled();
  });

  it('a dispute that arrives before the payment succeeds leaves it never granted, as a dispute after the success takes everything back, whatever order the events come in', async () => {
    const price = id('price');
    const p = await pkg({ provider: 'stripe', provider_price_id: price, credits: CREDITS, price_amount: AMOUNT, currency: 'usd' });
    const ppPrice = id('SKU');
    const pp = await pkg({ provider: 'paypal', provider_price_id: ppPrice, credits: CREDITS, price_amount: AMOUNT, currency: 'usd' });
    const orders: Step[][] = [
      ['success', 'dispute'],
      ['processing', 'dispute', 'success'],
      ['processing', 335, 'dispute', 'success'],
      ['processing', 335, 'success', 'dispute'],
      ['processing', 'dispute', AMOUNT, 'success'],
    ];
    for (const make of [(u: string) => stripeFlow(u, p.id, price), (u: string) => paypalFlow(u, pp.id)]) {
      for (const steps of orders) {
        const user = await makeUser(app);
        const flow = await make(user.id);
        await deliver(flow, steps);
        const label = `${flow.provider}: ${steps.join(', ')}`;
        expect((await balanceOf(user.id)).balance, label).toBe(3);
        expect((await paymentOf(flow.provider, flow.pid)).status, label).toBe('disputed');
      }
    }
    await expectReconciled();
  });

  it('a one-time payment for a plan that was fully refunded or disputed before it succeeded never activates the plan; after it succeeded, a full refund or a dispute ends it; a partial refund keeps it in either order', async () => {
    const slug = `r${randomBytes(4).toString('hex')}`;
    const priceId = id('price');
    const plan = await svc().post('/v1/plans', { slug, name: slug, trial_days: 0, price_monthly: AMOUNT, allowances: [{ class: 'Usage', amount: 40 }], prices: [{ provider: 'stripe', provider_price_id: priceId, billing_interval: 'monthly' }] });
    expect(plan.status).toBe(201);
    const planOf = async (userId: string, flow: Flow) => {
      const subs = (await svc().get(`/v1/users/${userId}/subscriptions`)).body.data as Array<{ plan_id: string; status: string; provider_subscription_id: string | null }>;
      return subs.find((s) => s.plan_id === plan.body.id && s.provider_subscription_id === flow.pid)?.status ?? 'none';
    };
    const cases: Array<{ steps: Step[]; plan: string; balance: number }> = [
      { steps: ['success'], plan: 'active', balance: 40 },
      { steps: ['processing', AMOUNT, 'success'], plan: 'none', balance: 0 },
      { steps: ['processing', 'dispute', 'success'], plan: 'none', balance: 0 },
      { steps: ['success', AMOUNT], plan: 'canceled', balance: 0 },
      { steps: ['success', 'dispute'], plan: 'canceled', balance: 0 },
      { steps: ['processing', 335, 'success'], plan: 'active', balance: 40 },
      { steps: ['success', 335], plan: 'active', balance: 40 },
    ];
    for (const c of cases) {
      const user = await makeUser(app);
      const flow = await stripeFlow(user.id, undefined, priceId);
      await deliver(flow, c.steps);
      const label = c.steps.join(', ');
      expect(await planOf(user.id, flow), label).toBe(c.plan);
      expect((await balanceOf(user.id)).balance, label).toBe(3 + c.balance);
    }
    await expectReconciled();
  });

  it('a plan bought by a one-time payment and then refunded in full or disputed takes back the allowance credits spent before it ended (into debt), once; what was left ends with it; a partial refund changes no allowance', async () => {
    const ALLOWANCE = 40;
    const SPENT = 25;
    const makePlan = async (rollover: 'none' | '1_cycle') => {
      const slug = `c${randomBytes(4).toString('hex')}`;
      const priceId = id('price');
      const res = await svc().post('/v1/plans', { slug, name: slug, trial_days: 0, price_monthly: AMOUNT, allowances: [{ class: 'Usage', amount: ALLOWANCE, rollover_policy: rollover }], prices: [{ provider: 'stripe', provider_price_id: priceId, billing_interval: 'monthly' }] });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return { id: res.body.id as string, priceId };
    };
    const spend = (userId: string, amount: number) => svc().post('/v1/credits/debit', { user_id: userId, amount, reason: 'render' }, { idempotencyKey: id('spend') });
    const ledgerSum = async (userId: string) => {
      const rows = await app.database.db.selectFrom('credit_ledger').select('amount').where('user_id', '=', userId).execute();
      return rows.reduce((sum, r) => sum + Number(r.amount), 0);
    };
    const allowanceLeft = async (userId: string) => (await balanceOf(userId)).grants.filter((g) => g.source === 'allowance' || g.source === 'rollover').reduce((sum, g) => sum + g.remaining, 0);
    const planStatus = async (userId: string, flow: Flow) => {
      const subs = (await svc().get(`/v1/users/${userId}/subscriptions`)).body.data as Array<{ status: string; provider_subscription_id: string | null }>;
      return subs.find((x) => x.provider_subscription_id === flow.pid)?.status ?? 'none';
    };
    const plan = await makePlan('none');
    // After the success the buyer spends SPENT of the allowance; then the steps. `balance` is what
    // the buyer ends with (3 = the sign-up bonus).
    const cases: Array<{ steps: Step[]; plan: string; balance: number; allowanceLeft: number }> = [
      { steps: [AMOUNT], plan: 'canceled', balance: 3 - SPENT, allowanceLeft: 0 },
      { steps: ['dispute'], plan: 'canceled', balance: 3 - SPENT, allowanceLeft: 0 },
      { steps: [335], plan: 'active', balance: 3 + ALLOWANCE - SPENT, allowanceLeft: ALLOWANCE - SPENT },
      { steps: [335, AMOUNT], plan: 'canceled', balance: 3 - SPENT, allowanceLeft: 0 },
      { steps: [AMOUNT, 'dispute'], plan: 'canceled', balance: 3 - SPENT, allowanceLeft: 0 },
      { steps: ['dispute', AMOUNT], plan: 'canceled', balance: 3 - SPENT, allowanceLeft: 0 },
    ];
    for (const c of cases) {
      const label = c.steps.join(', ');
      const user = await makeUser(app);
      const flow = await stripeFlow(user.id, undefined, plan.priceId);
      await deliver(flow, ['success']);
      expect((await spend(user.id, SPENT)).status, label).toBe(201);
      expect((await balanceOf(user.id)).balance, label).toBe(3 + ALLOWANCE - SPENT);
      await deliver(flow, c.steps);
      // The same refund total and the same dispute again, as new events: nothing more moves.
      const last = c.steps[c.steps.length - 1] as Step;
      expect((await flow.send(last === 'dispute' ? flow.dispute() : flow.refund(last as number))).status, label).toBe(200);
      const b = await balanceOf(user.id);
      expect(b.balance, label).toBe(c.balance);
      expect(await ledgerSum(user.id), label).toBe(c.balance);
      expect(await allowanceLeft(user.id), label).toBe(c.allowanceLeft);
      expect(await planStatus(user.id, flow), label).toBe(c.plan);
      // In debt: spending is refused until new credits repay it.
      if (c.balance < 0) expect((await spend(user.id, 1)).status, label).toBe(402);
    }

    // Rollover: the first window's remainder rolled into a bucket and part of it was spent too;
    // the refund takes back everything spent (window and bucket) and ends the bucket.
    const rolling = await makePlan('1_cycle');
    const user = await makeUser(app);
    const flow = await stripeFlow(user.id, undefined, rolling.priceId);
    const signedNow = (e: object) => send.stripe(e as Record<string, unknown>, { timestamp: Math.floor(now / 1000) });
    expect((await signedNow(flow.success())).status).toBe(200);
    expect((await spend(user.id, SPENT)).status).toBe(201);
    now += 32 * 86_400_000;
    try {
      expect((await spend(user.id, 5)).status).toBe(201);
      const rolled = (await balanceOf(user.id)).grants.filter((g) => g.source === 'rollover');
      expect(rolled.map((g) => g.remaining)).toEqual([ALLOWANCE - SPENT - 5]);
      const refund = flow.refund(AMOUNT);
      expect((await signedNow(refund)).status).toBe(200);
      expect((await signedNow(refund)).body.replayed).toBe(true);
      expect((await signedNow(flow.dispute())).status).toBe(200);
      expect((await balanceOf(user.id)).balance).toBe(3 - SPENT - 5);
      expect(await ledgerSum(user.id)).toBe(3 - SPENT - 5);
      expect(await allowanceLeft(user.id)).toBe(0);
    } finally {
      now = Date.now();
    }
    await expectReconciled();
  });

  it('allowance credits an open hold keeps when the plan is taken back count as used: captured afterwards, that spend is clawed back too', async () => {
    const ALLOWANCE = 40;
    const SPENT = 25;
    const slug = `h${randomBytes(4).toString('hex')}`;
    const priceId = id('price');
    const plan = await svc().post('/v1/plans', { slug, name: slug, trial_days: 0, price_monthly: AMOUNT, allowances: [{ class: 'Usage', amount: ALLOWANCE }], prices: [{ provider: 'stripe', provider_price_id: priceId, billing_interval: 'monthly' }] });
    expect(plan.status, JSON.stringify(plan.body)).toBe(201);
    const money = (url: string, body: object) => svc().post(url, body, { idempotencyKey: id('k') });
    for (const end of [AMOUNT, 'dispute'] as const) {
      const user = await makeUser(app);
      const flow = await stripeFlow(user.id, undefined, priceId);
      await deliver(flow, ['success']);
      expect((await money('/v1/credits/debit', { user_id: user.id, amount: SPENT, reason: 'render' })).status).toBe(201);
      // Everything left (15 of the allowance and the 3 of the bonus) goes into one hold: an AI job running.
      const hold = await money('/v1/holds', { user_id: user.id, amount: ALLOWANCE - SPENT + 3, expires_in_seconds: 600 });
      expect(hold.status).toBe(201);
      await deliver(flow, [end]);
      // The job finishes and the app captures the hold after the plan was taken back.
      const captured = await money(`/v1/holds/${hold.body.id}/capture`, { user_id: user.id });
      expect(captured.body, String(end)).toMatchObject({ status: 'captured', captured: ALLOWANCE - SPENT + 3 });
      // The buyer paid for nothing of the plan: every allowance credit they spent (25 debited, 15
      // captured) is debt; what they had of their own (3) paid for the rest of the capture.
      const b = await balanceOf(user.id);
      expect(b.balance, String(end)).toBe(3 - SPENT - (ALLOWANCE - SPENT + 3));
      expect((await svc().get(`/v1/users/${user.id}/balance`)).body.held, String(end)).toBe(0);
      // A repeated event takes nothing more.
      expect((await flow.send(end === 'dispute' ? flow.dispute() : flow.refund(AMOUNT))).status).toBe(200);
      expect((await balanceOf(user.id)).balance, String(end)).toBe(3 - SPENT - (ALLOWANCE - SPENT + 3));
    }
    await expectReconciled();
  });
});
