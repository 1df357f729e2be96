/**
 * Payment webhooks end to end over HTTP, on both databases: each provider's documented payloads,
 * signed the way that provider signs them (Stripe also through the official package's test-header
 * helper), PayPal verified against a local fake of its API that checks a real RSA signature.
 */
import { createHmac, createSign, generateKeyPairSync, createVerify, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';
import { sql } from 'kysely';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PaymentsConfig } from '../src/config/config.js';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client, type Json } from './support/client.js';
import { stripeCheckout } from './support/payment-webhooks.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

const STRIPE_SECRET = `whsec_${randomBytes(16).toString('hex')}`;
const STRIPE_OLD_SECRET = `whsec_${randomBytes(16).toString('hex')}`;
const LS_SECRET = randomBytes(16).toString('hex');
const CREEM_SECRET = `whsec_${randomBytes(16).toString('hex')}`;
const PAYPAL_WEBHOOK_ID = 'WH-ID-TEST-1';
const stripe = new Stripe('sk_test_unused');

// ---------------------------------------------------------------------------------------------
// A fake PayPal API: OAuth2 client credentials, and verify-webhook-signature checking the real
// scheme (RSA-SHA256 over "<transmission_id>|<transmission_time>|<webhook_id>|<crc32(body)>").
// ---------------------------------------------------------------------------------------------
const paypalKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
let paypalServer: Server;
let paypalBase = '';
const paypalCalls: string[] = [];

function startFakePayPal(): Promise<void> {
  paypalServer = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      paypalCalls.push(req.url ?? '');
      res.setHeader('content-type', 'application/json');
      if (req.url === '/v1/oauth2/token') {
        const ok = req.headers.authorization === `Basic ${Buffer.from('client-id:client-secret').toString('base64')}` && body === 'grant_type=client_credentials';
        res.statusCode = ok ? 200 : 401;
        res.end(JSON.stringify(ok ? { access_token: 'A21AA-fake', token_type: 'Bearer', expires_in: 32400 } : { error: 'invalid_client' }));
        return;
      }
      if (req.url === '/v1/notifications/verify-webhook-signature' && req.headers.authorization === 'Bearer A21AA-fake') {
        const b = JSON.parse(body) as Record<string, string> & { webhook_event: unknown };
        // PayPal signs the body it sent; the verifier re-serialises the parsed event like PayPal's own SDKs do.
        const signed = `${b.transmission_id}|${b.transmission_time}|${b.webhook_id}|${crc32(JSON.stringify(b.webhook_event))}`;
        const verifier = createVerify('sha256');
        verifier.update(signed);
        const valid = b.auth_algo === 'SHA256withRSA' && verifier.verify(paypalKeys.publicKey, String(b.transmission_sig), 'base64');
        res.end(JSON.stringify({ verification_status: valid ? 'SUCCESS' : 'FAILURE' }));
        return;
      }
      res.statusCode = 401;
      res.end(JSON.stringify({ error: 'unauthorized' }));
    });
  });
  return new Promise((resolve) => paypalServer.listen(0, '127.0.0.1', () => {
    paypalBase = `http://127.0.0.1:${(paypalServer.address() as AddressInfo).port}`;
    resolve();
  }));
}

let app: TestApp;
const svc = () => client(app.server, app.serviceKey);

beforeAll(async () => {
  await startFakePayPal();
  const payments: PaymentsConfig = {
    stripe: { webhookSecrets: [STRIPE_OLD_SECRET, STRIPE_SECRET] },
    lemonsqueezy: { webhookSecret: LS_SECRET },
    creem: { webhookSecret: CREEM_SECRET },
    paypal: { webhookId: PAYPAL_WEBHOOK_ID, clientId: 'client-id', clientSecret: 'client-secret', apiBase: paypalBase },
    toleranceSeconds: 300,
    // 10 cents a credit: what a checkout buys comes from the amount paid (metadata never decides it).
    creditPrice: { unitAmount: 10, currency: 'usd' },
  };
  app = await createTestApp({ payments, credits: { balanceCap: null, signupBonus: 3 } });
});
afterAll(async () => {
  await app?.close();
  await new Promise((r) => paypalServer?.close(r));
});

async function post(provider: string, raw: string, headers: Record<string, string>) {
  const res = await app.server.inject({ method: 'POST', url: `/v1/webhooks/${provider}`, headers: { 'content-type': 'application/json', ...headers }, payload: raw });
  return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : null };
}
const stripeSend = (event: object, secret = STRIPE_SECRET, timestamp?: number) => {
  const raw = JSON.stringify(event);
  return post('stripe', raw, { 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: raw, secret, ...(timestamp ? { timestamp } : {}) }) });
};
const lsSend = (event: object) => {
  const raw = JSON.stringify(event);
  return post('lemonsqueezy', raw, { 'x-signature': createHmac('sha256', LS_SECRET).update(raw).digest('hex'), 'x-event-name': (event as { meta: { event_name: string } }).meta.event_name });
};
const creemSend = (event: object) => {
  const raw = JSON.stringify(event);
  return post('creem', raw, { 'creem-signature': createHmac('sha256', CREEM_SECRET).update(raw).digest('hex') });
};
const paypalSend = (event: object, tamper = false) => {
  const raw = JSON.stringify(event);
  const transmissionId = randomBytes(8).toString('hex');
  const time = new Date().toISOString();
  const signer = createSign('sha256');
  signer.update(`${transmissionId}|${time}|${PAYPAL_WEBHOOK_ID}|${crc32(tamper ? raw + ' ' : raw)}`);
  return post('paypal', raw, {
    'paypal-auth-algo': 'SHA256withRSA',
    'paypal-cert-url': `${paypalBase}/v1/notifications/certs/CERT-fake`,
    'paypal-transmission-id': transmissionId,
    'paypal-transmission-sig': signer.sign(paypalKeys.privateKey, 'base64'),
    'paypal-transmission-time': time,
  });
};

const balanceOf = async (userId: string) => (await svc().get(`/v1/users/${userId}/balance`)).body as { balance: number; available: number };
const paymentOf = async (provider: string, providerPaymentId: string) => {
  const list = await svc().get(`/v1/payments?provider=${provider}&limit=200`);
  return must((list.body.data as Array<Record<string, Json>>).find((p) => p.provider_payment_id === providerPaymentId), 'a matching item');
};
const id = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;
const expectReconciled = async () => expect((await reconcile(app.database)).drift).toEqual([]);

const checkout = (userId: string | null, opts: { credits?: string; pi?: string; email?: string; customer?: string; priceId?: string } = {}) =>
  stripeCheckout({
    amount: opts.credits ? Number(opts.credits) * 10 : 1000,
    customer: opts.customer ?? null,
    email: opts.email ?? null,
    ...(opts.pi ? { pi: opts.pi } : {}),
    metadata: { ...(userId ? { user_id: userId } : {}), ...(opts.credits ? { credits: opts.credits } : {}), ...(opts.priceId ? { price_id: opts.priceId } : {}) },
  });
const charge = (type: 'charge.refunded' | 'charge.dispute.created', pi: string, amount: number) => ({
  id: id('evt'),
  object: 'event',
  type,
  data: {
    object:
      type === 'charge.refunded'
        ? { id: id('ch'), object: 'charge', payment_intent: pi, amount: 1000, amount_refunded: amount, currency: 'usd', refunded: amount === 1000 }
        : { id: id('dp'), object: 'dispute', charge: id('ch'), payment_intent: pi, amount, currency: 'usd', status: 'needs_response' },
  },
});

describe('Stripe webhooks', () => {
  it('a checkout paying for 100 credits (at the credit price) grants 100 exactly once under replays and concurrent duplicate deliveries', async () => {
    const user = await makeUser(app);
    const event = checkout(user.id, { credits: '100' });
    const raw = JSON.stringify(event);
    const header = stripe.webhooks.generateTestHeaderString({ payload: raw, secret: STRIPE_SECRET });
    const answers = await Promise.all(Array.from({ length: 6 }, () => post('stripe', raw, { 'stripe-signature': header })));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(answers.filter((a) => a.body.replayed === false)).toHaveLength(1);
    const replay = await stripeSend(event);
    expect(replay).toMatchObject({ status: 200, body: { replayed: true, status: 'processed' } });
    // The same payment through another event id (a resent checkout) grants nothing more either.
    await stripeSend({ ...event, id: id('evt') });
    expect((await balanceOf(user.id)).balance).toBe(103);
    const pay = await paymentOf('stripe', event.data.object.payment_intent);
    expect(pay).toMatchObject({ status: 'succeeded', user_id: user.id, credits: 100, match_status: 'matched', amount: 1000, currency: 'usd' });
    const log = await svc().get('/v1/webhook-events?provider=stripe&limit=200');
    const rows = (log.body.data as Array<Record<string, Json>>).filter((r) => r.event_id === event.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'processed', attempts: 1, error: null });
    await expectReconciled();
  });

  it('bad, missing or stale signatures are 400 and process nothing; a rotated-out secret still verifies', async () => {
    const user = await makeUser(app);
    const event = checkout(user.id, { credits: '50' });
    const raw = JSON.stringify(event);
    const forged = stripe.webhooks.generateTestHeaderString({ payload: raw, secret: 'whsec_wrong' });
    expect((await post('stripe', raw, { 'stripe-signature': forged })).status).toBe(400);
    expect((await post('stripe', raw, {})).status).toBe(400);
    const stale = await stripeSend(event, STRIPE_SECRET, Math.floor(Date.now() / 1000) - 301);
    expect(stale.status).toBe(400);
    expect(stale.body.error.code).toBe('invalid_request');
    // A body changed after signing.
    const tampered = raw.replace('"50"', '"5000"');
    expect((await post('stripe', tampered, { 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: raw, secret: STRIPE_SECRET }) })).status).toBe(400);
    expect((await balanceOf(user.id)).balance).toBe(3);
    const rejected = await svc().get('/v1/webhook-events?provider=stripe&status=rejected');
    // One row per reason, counting its deliveries (test/webhook-abuse.test.ts).
    expect(rejected.body.data.reduce((n: number, r: { attempts: number }) => n + r.attempts, 0)).toBeGreaterThanOrEqual(4);
    expect(rejected.body.data[0].payload).toBeNull();
    // Secret rotation: deliveries signed with the old secret still verify while both are configured.
    expect((await stripeSend(event, STRIPE_OLD_SECRET)).status).toBe(200);
    expect((await balanceOf(user.id)).balance).toBe(53);
  });

  it('a partial refund claws back pro rata, a full refund the rest, each exactly once', async () => {
    const user = await makeUser(app);
    const pi = id('pi');
    await stripeSend(checkout(user.id, { credits: '100', pi }));
    const half = charge('charge.refunded', pi, 500);
    expect((await stripeSend(half)).status).toBe(200);
    await stripeSend(half);
    expect((await balanceOf(user.id)).balance).toBe(53);
    expect(await paymentOf('stripe', pi)).toMatchObject({ status: 'succeeded', amount_refunded: 500, credits_clawed_back: 50 });
    // A second event repeating the same cumulative refund moves nothing.
    await stripeSend(charge('charge.refunded', pi, 500));
    expect((await balanceOf(user.id)).balance).toBe(53);
    await stripeSend(charge('charge.refunded', pi, 1000));
    expect((await balanceOf(user.id)).balance).toBe(3);
    expect(await paymentOf('stripe', pi)).toMatchObject({ status: 'refunded', amount_refunded: 1000, credits_clawed_back: 100 });
    const txns = await svc().get(`/v1/users/${user.id}/transactions?type=clawback`);
    expect(txns.body.data.map((t: { amount: number }) => t.amount).sort()).toEqual([-50, -50]);
    await expectReconciled();
  });

  it('a dispute after the credits were spent takes the balance negative, and spending is refused until new credits repay it', async () => {
    const user = await makeUser(app);
    const pi = id('pi');
    await stripeSend(checkout(user.id, { credits: '100', pi }));
    const spend = await svc().post('/v1/credits/debit', { user_id: user.id, amount: 90, reason: 'renders' }, { idempotencyKey: id('k') });
    expect(spend.status).toBe(201);
    expect((await stripeSend(charge('charge.dispute.created', pi, 1000))).status).toBe(200);
    expect(await balanceOf(user.id)).toMatchObject({ balance: -87, available: -87 });
    expect(await paymentOf('stripe', pi)).toMatchObject({ status: 'disputed', credits_clawed_back: 100 });
    const refused = await svc().post('/v1/credits/debit', { user_id: user.id, amount: 1, reason: 'x' }, { idempotencyKey: id('k') });
    expect(refused.status).toBe(402);
    expect((await svc().post('/v1/holds', { user_id: user.id, amount: 1 }, { idempotencyKey: id('k') })).status).toBe(402);
    await stripeSend(checkout(user.id, { credits: '100' }));
    expect((await balanceOf(user.id)).balance).toBe(13);
    expect((await svc().post('/v1/credits/debit', { user_id: user.id, amount: 13, reason: 'x' }, { idempotencyKey: id('k') })).status).toBe(201);
    await expectReconciled();
  });

  it('an unmatched payment waits in the queue; resolving it grants its credits exactly once', async () => {
    const email = `stranger_${randomBytes(4).toString('hex')}@example.com`;
    const pi = id('pi');
    const ans = await stripeSend(checkout(null, { credits: '40', pi, email, customer: id('cus') }));
    expect(ans.body.outcome).toContain('unmatched');
    const queued = await paymentOf('stripe', pi);
    expect(queued).toMatchObject({ match_status: 'unmatched', user_id: null, credits: 40, grant_transaction_id: null });
    const queue = await svc().get('/v1/payments?match_status=unmatched');
    expect(queue.body.data.map((p: { id: string }) => p.id)).toContain(queued.id);
    const user = await makeUser(app);
    const resolved = await Promise.all([1, 2, 3].map(() => svc().post(`/v1/payments/${queued.id}/resolve`, { user_id: user.id, add_alias: true })));
    expect(resolved.map((r) => r.status).sort()).toEqual([200, 409, 409]);
    expect((await balanceOf(user.id)).balance).toBe(43);
    expect(await paymentOf('stripe', pi)).toMatchObject({ match_status: 'resolved', user_id: user.id });
    // The alias now matches this user's next payment by e-mail, and the customer link too.
    const next = await stripeSend(checkout(null, { credits: '5', email: email.toUpperCase() }));
    expect(next.body.outcome).toContain(`granted 5 credits to ${user.id}`);
    // The user sees their own payments (read-only), not anyone else's.
    await expectReconciled();
  });

  it('a processing failure answers 5xx, is logged as failed, and the retry succeeds and grants once', async () => {
    const user = await makeUser(app);
    const schema = sql.id(app.database.schema);
    await sql`create function ${schema}.fail_payments() returns trigger language plpgsql as $$ begin raise exception 'database hiccup'; end $$`.execute(app.database.root);
    await sql`create trigger fail_payments before insert on ${schema}.payments for each row execute function ${schema}.fail_payments()`.execute(app.database.root);
    const event = checkout(user.id, { credits: '30' });
    let failed;
    try {
      failed = await stripeSend(event);
    } finally {
      await sql`drop trigger fail_payments on ${schema}.payments`.execute(app.database.root);
      await sql`drop function ${schema}.fail_payments()`.execute(app.database.root);
    }
    expect(failed.status).toBe(500);
    const log = await svc().get('/v1/webhook-events?provider=stripe&status=failed');
    const row = (log.body.data as Array<Record<string, Json>>).find((r) => r.event_id === event.id);
    expect(row).toMatchObject({ status: 'failed', attempts: 1 });
    expect(must(row, 'row').error).toContain('database hiccup');
    expect((await balanceOf(user.id)).balance).toBe(3);
    const retry = await stripeSend(event);
    expect(retry).toMatchObject({ status: 200, body: { status: 'processed', replayed: false } });
    await stripeSend(event);
    expect((await balanceOf(user.id)).balance).toBe(33);
    const done = await svc().get('/v1/webhook-events?provider=stripe&status=processed&limit=200');
    expect((done.body.data as Array<Record<string, Json>>).find((r) => r.event_id === event.id)).toMatchObject({ attempts: 2, error: null });
  });

  it('provider subscriptions drive billing: created → allowances; failed renewal → past_due; paid renewal → next period, once; deleted → canceled', async () => {
    const user = await makeUser(app);
    const priceId = id('price');
    const slug = `st${randomBytes(4).toString('hex')}`;
    const plan = await svc().post('/v1/plans', {
      slug, name: `Stripe ${slug}`, trial_days: 0, price_monthly: 2000,
      allowances: [{ class: 'Usage', amount: 100 }],
      prices: [{ provider: 'stripe', provider_price_id: priceId, billing_interval: 'monthly' }],
    });
    expect(plan.status).toBe(201);
    const cus = id('cus');
    const sub = id('sub');
    const day = 86_400;
    const start = Math.floor(Date.now() / 1000) - 10 * day;
    const end = start + 30 * day;
    const item = { price: { id: priceId, recurring: { interval: 'month' } } };
    // The app signs a checkout reference for the user: only that links the customer (an unsigned metadata user id does not).
    const reference = (await svc().post('/v1/checkout-references', { user_id: user.id })).body.reference as string;
    const link = await stripeSend({ id: id('evt'), type: 'checkout.session.completed', data: { object: { id: id('cs'), mode: 'subscription', customer: cus, subscription: sub, client_reference_id: reference, metadata: {} } } });
    expect(link.body.outcome).toContain('linked');
    const created = await stripeSend({
      id: id('evt'),
      type: 'customer.subscription.created',
      data: { object: { id: sub, object: 'subscription', customer: cus, status: 'active', cancel_at_period_end: false, current_period_start: start, current_period_end: end, items: { data: [item] } } },
    });
    expect(created.body).toMatchObject({ status: 'processed' });
    expect(created.body.outcome).toMatch(/synced to sub_/);
    const mine = async () => (await svc().get(`/v1/users/${user.id}/subscriptions`)).body.data[0];
    expect(await mine()).toMatchObject({ status: 'active', plan_id: plan.body.id, provider: 'stripe', provider_subscription_id: sub, provider_customer_id: cus });
    expect((await balanceOf(user.id)).balance).toBe(103); // the sign-up bonus and this period's allowance
    // A failed renewal: an open invoice and past_due.
    const invoice = (type: string, paid: boolean, from: number, to: number) => ({
      id: id('evt'),
      type,
      data: { object: { id: id('in'), customer: cus, subscription: sub, amount_due: 2000, amount_paid: paid ? 2000 : 0, currency: 'usd', status: paid ? 'paid' : 'open', lines: { data: [{ price: item.price, period: { start: from, end: to } }] } } },
    });
    const failed = await stripeSend(invoice('invoice.payment_failed', false, end, end + 30 * day));
    expect(failed.body.outcome).toContain('past_due');
    expect(await mine()).toMatchObject({ status: 'past_due' });
    const invoices = await svc().get(`/v1/users/${user.id}/invoices`);
    expect(invoices.body.data[0]).toMatchObject({ status: 'open', amount_due: 2000, provider_subscription_id: sub, user_id: user.id });
    // Paid after all: active again and the period moves on — once, however often it is delivered.
    const paid = invoice('invoice.paid', true, end, end + 30 * day);
    await stripeSend(paid);
    await stripeSend(paid);
    await stripeSend(invoice('invoice.paid', true, end, end + 30 * day));
    const renewed = await mine();
    expect(renewed).toMatchObject({ status: 'active', current_period_start: new Date(end * 1000).toISOString() });
    expect(renewed.current_period_end).toBe(new Date((end + 30 * day) * 1000).toISOString());
    expect((await balanceOf(user.id)).balance).toBe(103);
    // Deleted at the provider: canceled here, its allowance ends now.
    const deleted = await stripeSend({
      id: id('evt'),
      type: 'customer.subscription.deleted',
      data: { object: { id: sub, object: 'subscription', customer: cus, status: 'canceled', canceled_at: Math.floor(Date.now() / 1000), items: { data: [item] } } },
    });
    expect(deleted.body).toMatchObject({ status: 'processed' });
    expect(await mine()).toMatchObject({ status: 'canceled' });
    expect((await balanceOf(user.id)).balance).toBe(3);
    const ignored = await stripeSend({ id: id('evt'), type: 'customer.created', data: { object: {} } });
    expect(ignored.body).toMatchObject({ status: 'ignored' });
    const customers = await svc().get(`/v1/users/${user.id}/customers`);
    expect(customers.body.data[0]).toMatchObject({ provider: 'stripe', provider_customer_id: cus });
    expect((await reconcile(app.database)).drift).toEqual([]);
  });

  it('a paid subscription invoice buys its credit package each period (renewal), once per invoice', async () => {
    // Matched by the invoice's customer_email: only a verified address matches (docs/payments.md).
    const user = await makeUser(app, { is_email_verified: true });
    const price = id('price');
    expect((await svc().post('/v1/credit-packages', { name: 'Monthly 500', provider: 'stripe', provider_price_id: price, credits: 500, price_amount: 900, currency: 'usd' })).status).toBe(201);
    const cus = id('cus');
    const invoice = (pi: string) => ({
      id: id('evt'),
      type: 'invoice.paid',
      data: { object: { id: id('in'), customer: cus, customer_email: user.email, subscription: id('sub'), payment_intent: pi, amount_due: 900, amount_paid: 900, currency: 'usd', status: 'paid', lines: { data: [{ price: { id: price, recurring: { interval: 'month' } }, period: { start: 1767225600, end: 1769904000 } }] } } },
    });
    const first = invoice(id('pi'));
    await stripeSend(first);
    await stripeSend(first);
    await stripeSend(invoice(id('pi')));
    expect((await balanceOf(user.id)).balance).toBe(1003);
    const invoices = await svc().get(`/v1/users/${user.id}/invoices`);
    expect(invoices.body.data).toHaveLength(2);
    expect(invoices.body.data[0]).toMatchObject({ status: 'paid', amount_paid: 900 });
    expect(invoices.body.data[0].payment_id).toMatch(/^pay_/);
  });
});

describe('Lemon Squeezy, Creem and PayPal webhooks', () => {
  it('Lemon Squeezy: order_created buys the variant’s package; order_refunded claws it back; bad X-Signature is 400', async () => {
    const user = await makeUser(app);
    const variant = String(Math.floor(Math.random() * 1e9));
    await svc().post('/v1/credit-packages', { name: 'LS 200', provider: 'lemonsqueezy', provider_price_id: variant, credits: 200, price_amount: 1999, currency: 'usd' });
    const orderId = String(Math.floor(Math.random() * 1e9));
    const order = (event: string, attrs: object) => ({
      meta: { event_name: event, custom_data: { user_id: user.id }, test_mode: true },
      data: {
        type: 'orders',
        id: orderId,
        attributes: { store_id: 1, customer_id: 77, identifier: 'uuid', user_email: user.email, currency: 'USD', total: 1999, status: 'paid', first_order_item: { variant_id: Number(variant), product_id: 5 }, urls: { receipt: 'https://app.lemonsqueezy.com/r' }, created_at: '2026-01-01T00:00:00.000000Z', updated_at: '2026-01-01T00:00:00.000000Z', ...attrs },
      },
    });
    const created = order('order_created', {});
    const raw = JSON.stringify(created);
    expect((await post('lemonsqueezy', raw, { 'x-signature': createHmac('sha256', 'wrong').update(raw).digest('hex') })).status).toBe(400);
    expect((await lsSend(created)).status).toBe(200);
    expect((await lsSend(created)).body.replayed).toBe(true);
    expect((await balanceOf(user.id)).balance).toBe(203);
    const refunded = order('order_refunded', { status: 'refunded', refunded: true, refunded_amount: 1999, updated_at: '2026-01-02T00:00:00.000000Z' });
    expect((await lsSend(refunded)).status).toBe(200);
    expect((await balanceOf(user.id)).balance).toBe(3);
    expect(await paymentOf('lemonsqueezy', `order_${orderId}`)).toMatchObject({ status: 'refunded', credits_clawed_back: 200 });
    await expectReconciled();
  });

  it('Creem: checkout.completed (its real envelope) grants its product’s package; refund.created claws back; matched by e-mail', async () => {
    const user = await makeUser(app, { is_email_verified: true });
    const orderId = id('ord');
    const product = id('prod');
    await svc().post('/v1/credit-packages', { name: 'Creem 70', provider: 'creem', provider_price_id: product, credits: 70, price_amount: 1000, currency: 'eur' });
    const event = {
      id: id('evt'),
      eventType: 'checkout.completed',
      created_at: Date.now(),
      object: {
        id: id('ch'),
        object: 'checkout',
        order: { id: orderId, customer: id('cust'), product, amount: 1000, currency: 'EUR', status: 'paid', type: 'onetime' },
        product: { id: product, name: 'Credits', price: 1000, currency: 'EUR', billing_type: 'onetime' },
        customer: { id: id('cust'), object: 'customer', email: user.email.toUpperCase(), name: 'T' },
        status: 'completed',
        metadata: { credits: '70' },
      },
    };
    expect((await creemSend(event)).status).toBe(200);
    expect((await creemSend(event)).body.replayed).toBe(true);
    expect((await balanceOf(user.id)).balance).toBe(73);
    expect(await paymentOf('creem', orderId)).toMatchObject({ currency: 'eur', credits: 70, user_id: user.id });
    const refund = { id: id('evt'), eventType: 'refund.created', created_at: Date.now(), object: { id: id('ref'), object: 'refund', status: 'succeeded', refund_amount: 500, refund_currency: 'EUR', order: { id: orderId } } };
    await creemSend(refund);
    await creemSend(refund);
    expect((await balanceOf(user.id)).balance).toBe(38);
    const bad = JSON.stringify(event);
    expect((await post('creem', bad, { 'creem-signature': 'ab'.repeat(32) })).status).toBe(400);
    await expectReconciled();
  });

  it('PayPal: verified through its verify-webhook-signature API; capture completed grants, a forged delivery is 400, a refund claws back', async () => {
    const user = await makeUser(app);
    const capture = id('CAP');
    const event = {
      id: id('WH'),
      event_version: '1.0',
      resource_type: 'capture',
      event_type: 'PAYMENT.CAPTURE.COMPLETED',
      resource: { id: capture, status: 'COMPLETED', amount: { currency_code: 'USD', value: '25.00' }, custom_id: JSON.stringify({ user_id: user.id, credits: '250' }), final_capture: true },
    };
    expect((await paypalSend(event, true)).status).toBe(400);
    expect((await balanceOf(user.id)).balance).toBe(3);
    expect((await paypalSend(event)).status).toBe(200);
    expect((await paypalSend(event)).body.replayed).toBe(true);
    expect((await balanceOf(user.id)).balance).toBe(253);
    expect(await paymentOf('paypal', capture)).toMatchObject({ amount: 2500, currency: 'usd', credits: 250 });
    const refund = {
      id: id('WH'),
      resource_type: 'refund',
      event_type: 'PAYMENT.CAPTURE.REFUNDED',
      resource: {
        id: id('REF'),
        status: 'COMPLETED',
        amount: { currency_code: 'USD', value: '10.00' },
        seller_payable_breakdown: { total_refunded_amount: { currency_code: 'USD', value: '10.00' } },
        links: [{ rel: 'up', method: 'GET', href: `https://api.paypal.com/v2/payments/captures/${capture}` }],
      },
    };
    expect((await paypalSend(refund)).status).toBe(200);
    expect((await balanceOf(user.id)).balance).toBe(153);
    expect(paypalCalls.filter((c) => c === '/v1/oauth2/token')).toHaveLength(1); // the token is cached
    await expectReconciled();
  });

  it('an unconfigured provider answers 503 and records nothing; unknown providers are 400', async () => {
    const bare = await createTestApp();
    try {
      const res = await bare.server.inject({ method: 'POST', url: '/v1/webhooks/stripe', headers: { 'content-type': 'application/json' }, payload: '{}' });
      expect(res.statusCode).toBe(503);
      expect(JSON.parse(res.body).error.message).toContain('STRIPE_WEBHOOK_SECRET');
      const unknown = await bare.server.inject({ method: 'POST', url: '/v1/webhooks/square', headers: { 'content-type': 'application/json' }, payload: '{}' });
      expect(unknown.statusCode).toBe(400);
      const log = await client(bare.server, bare.serviceKey).get('/v1/webhook-events');
      expect(log.body.data).toEqual([]);
    } finally {
      await bare.close();
    }
  });
});
