import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { paymentsMode } from '../src/config/load.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { stripeCheckout, webhookSenders, type Webhooks } from './support/payment-webhooks.js';

/**
 * Live and test mode (docs/payments.md): a deployment that takes live payments ignores a
 * provider's test-mode events — a test endpoint's secret configured beside the live one must not
 * let test cards buy real credits. Ignored means answered 200 (the provider stops retrying),
 * recorded with the reason, nothing granted.
 */
describe(`payments: live and test mode (${TARGET})`, () => {
  let app: TestApp;
  let send: Webhooks;
  const svc = () => client(app.server, app.serviceKey);
  const id = (p: string) => `${p}_${randomBytes(6).toString('hex')}`;
  const balance = async (userId: string) => (await svc().get(`/v1/users/${userId}/balance`)).body.balance as number;
  const logged = async (provider: string, eventId: string) =>
    ((await svc().get(`/v1/webhook-events?provider=${provider}&limit=200`)).body.data as Array<Record<string, unknown>>).find((e) => e['event_id'] === eventId);

  beforeAll(async () => {
    send = await webhookSenders(() => app);
    app = await createTestApp({ payments: { ...send.config, mode: 'live' }, credits: { balanceCap: null, signupBonus: 3 } });
  });
  afterAll(async () => {
    await app?.close();
    await send?.close();
  });

  it('the setting follows the Stripe secret key when left on auto', () => {
    expect(paymentsMode('auto', 'sk_live_abc')).toBe('live');
    expect(paymentsMode('auto', 'rk_live_abc')).toBe('live');
    expect(paymentsMode('auto', 'sk_test_abc')).toBe('test');
    expect(paymentsMode('auto', undefined)).toBe('any');
    expect(paymentsMode('test', 'sk_live_abc')).toBe('test');
    expect(paymentsMode('any', 'sk_live_abc')).toBe('any');
  });

  it('a live deployment ignores a Stripe test-mode payment (200, recorded with the reason, nothing granted) and takes the live one', async () => {
    const user = await makeUser(app);
    const price = id('price');
    expect((await svc().post('/v1/credit-packages', { name: id('pkg'), provider: 'stripe', provider_price_id: price, credits: 100, price_amount: 1000, currency: 'usd' })).status).toBe(201);
    const test = { ...stripeCheckout({ amount: 1000, metadata: { user_id: user.id, price_id: price } }), livemode: false };
    const res = await send.stripe(test);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'ignored' });
    expect(String(res.body.outcome)).toContain('test-mode event ignored');
    expect(await logged('stripe', test.id)).toMatchObject({ status: 'ignored' });
    expect(await balance(user.id)).toBe(3);
    expect((await svc().get('/v1/payments?provider=stripe&limit=200')).body.data.some((p: { user_id: string }) => p.user_id === user.id)).toBe(false);

    const live = { ...stripeCheckout({ amount: 1000, metadata: { user_id: user.id, price_id: price } }), livemode: true };
    expect((await send.stripe(live)).body).toMatchObject({ status: 'processed' });
    expect(await balance(user.id)).toBe(103);
  });

  it("a live deployment ignores Lemon Squeezy's test_mode orders", async () => {
    const user = await makeUser(app);
    const variant = String(Math.floor(Math.random() * 1e9));
    expect((await svc().post('/v1/credit-packages', { name: id('pkg'), provider: 'lemonsqueezy', provider_price_id: variant, credits: 50, price_amount: 500, currency: 'usd' })).status).toBe(201);
    const order = (testMode: boolean) => ({
      meta: { event_name: 'order_created', custom_data: { user_id: user.id }, test_mode: testMode },
      data: {
        type: 'orders', id: String(Math.floor(Math.random() * 1e9)),
        attributes: {
          store_id: 1, customer_id: Math.floor(Math.random() * 1e9), identifier: 'uuid', user_email: `${id('b')}@example.com`, currency: 'USD',
          subtotal: 500, tax: 0, total: 500, status: 'paid', first_order_item: { variant_id: Number(variant), product_id: 5, quantity: 1 },
          created_at: '2026-01-01T00:00:00.000000Z', updated_at: '2026-01-01T00:00:00.000000Z',
        },
      },
    });
    expect((await send.lemonsqueezy(order(true))).body).toMatchObject({ status: 'ignored' });
    expect(await balance(user.id)).toBe(3);
    expect((await send.lemonsqueezy(order(false))).body).toMatchObject({ status: 'processed' });
    expect(await balance(user.id)).toBe(53);
  });
});

/**
 * TALLY_PAYMENTS_UNSIGNED_USER_ID=off: a buyer-settable metadata user id matches nobody (a stolen
 * card cannot credit a chosen victim whose credits a dispute later claws back); a signed reference
 * still matches.
 */
describe(`payments: unsigned metadata user ids off (${TARGET})`, () => {
  let app: TestApp;
  let send: Webhooks;
  const svc = () => client(app.server, app.serviceKey);
  const id = (p: string) => `${p}_${randomBytes(6).toString('hex')}`;

  beforeAll(async () => {
    send = await webhookSenders(() => app);
    app = await createTestApp({ payments: { ...send.config, unsignedUserIds: false }, credits: { balanceCap: null, signupBonus: 3 } });
  });
  afterAll(async () => {
    await app?.close();
    await send?.close();
  });

  it('an unsigned user_id leaves the payment unmatched; a signed reference matches it', async () => {
    const user = await makeUser(app);
    const price = id('price');
    const pkg = (await svc().post('/v1/credit-packages', { name: id('pkg'), provider: 'stripe', provider_price_id: price, credits: 100, price_amount: 1000, currency: 'usd' })).body;
    const unsigned = stripeCheckout({ amount: 1000, metadata: { user_id: user.id, price_id: price } });
    expect((await send.stripe(unsigned)).status).toBe(200);
    const queued = (await svc().get('/v1/payments?match_status=unmatched&limit=200')).body.data as Array<{ user_id: string | null; provider_payment_id: string }>;
    expect(queued.some((p) => p.user_id === null && p.provider_payment_id === unsigned.data.object.payment_intent)).toBe(true);
    expect((await svc().get(`/v1/users/${user.id}/balance`)).body.balance).toBe(3);

    const ref = (await svc().post('/v1/checkout-references', { user_id: user.id, package_id: pkg.id })).body.reference as string;
    expect((await send.stripe(stripeCheckout({ amount: 1000, clientRef: ref, metadata: { price_id: price } }))).body).toMatchObject({ status: 'processed' });
    expect((await svc().get(`/v1/users/${user.id}/balance`)).body.balance).toBe(103);
  });
});
