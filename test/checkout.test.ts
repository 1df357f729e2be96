/**
 * Checkouts Tally creates and signs (issue 18; docs/payments.md, "Checkouts"), end to end over
 * HTTP on both databases: POST /v1/checkout asks each provider's API (a local fake speaking its
 * shapes; Stripe through the official package) with signed metadata, and the webhook that
 * follows — signed by the provider as in test/payments.test.ts — grants exactly what was signed,
 * once. Changed metadata, another price, an expired signature, a replay (same or another user)
 * and another deployment's checkout change nothing.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { checkoutKey, compactToken, signedMetadata } from '../src/modules/payments/checkout/checkout.signing.js';
import { must } from '../src/lib/must.js';
import { client, type Json } from './support/client.js';
import { makeApiKey, makeUser, signUp } from './support/fixtures.js';
import { fakeCheckoutProviders, type FakeProviders, type Recorded } from './support/fake-checkout-providers.js';
import { createTestApp, type TestApp } from './support/harness.js';
import { webhookSenders, type Webhooks } from './support/payment-webhooks.js';

type Provider = 'stripe' | 'lemonsqueezy' | 'creem' | 'paypal';
const PROVIDERS: Provider[] = ['stripe', 'lemonsqueezy', 'creem', 'paypal'];

let app: TestApp;
let send: Webhooks;
let fake: FakeProviders;
let now = Date.now();
const encryptionKey = randomBytes(32);
const svc = () => client(app.server, app.serviceKey);

beforeAll(async () => {
  send = await webhookSenders(() => app);
  fake = await fakeCheckoutProviders();
  app = await createTestApp(
    {
      payments: { ...send.config, checkout: fake.config },
      credits: { balanceCap: null, signupBonus: 3 },
      encryptionKey,
      // Only the checkout limit (per signed-in user); the others are rate-limits.test.ts's.
      rateLimits: { loginPerIp: null, loginPerEmail: null, signupPerIp: null, signupPerEmail: null, failuresPerIp: null, checkoutPerUser: { max: 5, windowSeconds: 3600 }, entries: 1000 },
    },
    { clock: () => new Date(now) },
  );
});
afterAll(async () => {
  await app?.close();
  await send?.close();
  await fake?.close();
});

const rid = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;
const num = () => String(1e8 + Math.floor(Math.random() * 1e8));
const balanceOf = async (userId: string) => ((await svc().get(`/v1/users/${userId}/balance`)).body as { balance: number }).balance;
const paymentOf = async (provider: Provider, providerPaymentId: string) => {
  const list = await svc().get(`/v1/payments?provider=${provider}&limit=200`);
  return must((list.body.data as Array<Record<string, Json>>).find((p) => p.provider_payment_id === providerPaymentId), `payment ${providerPaymentId}`);
};
/** The provider customers linked to a user (their provider ids). */
const customersOf = async (userId: string) => ((await svc().get(`/v1/users/${userId}/customers`)).body.data as Array<Record<string, Json>>).map((c) => String(c.provider_customer_id));
const expectReconciled = async () => expect((await reconcile(app.database)).drift).toEqual([]);

/** A package sold through `provider`, known to the fake provider by its price id. */
async function packageFor(provider: Provider, o: { credits?: number; price?: number } = {}) {
  const priceId = provider === 'stripe' ? rid('price') : provider === 'lemonsqueezy' ? num() : provider === 'creem' ? rid('prod') : rid('PP');
  const price = o.price ?? 1999;
  if (provider === 'stripe') fake.stripePrices.set(priceId, { amount: price, currency: 'usd' });
  if (provider === 'lemonsqueezy') fake.lsVariants.add(priceId);
  if (provider === 'creem') fake.creemProducts.add(priceId);
  const res = await svc().post('/v1/credit-packages', { name: rid('pack'), provider, provider_price_id: priceId, credits: o.credits ?? 500, price_amount: price, currency: 'usd' });
  expect(res.status).toBe(201);
  return { id: res.body.id as string, priceId, price, credits: o.credits ?? 500 };
}

/** The signed metadata the provider received, as its webhook echoes it. */
function metadataOf(provider: Provider, rec: Recorded): Record<string, string> {
  const b = rec.body as Json;
  if (provider === 'stripe') return Object.fromEntries(Object.entries(b as Record<string, string>).filter(([k]) => k.startsWith('metadata[')).map(([k, v]) => [k.slice(9, -1), v]));
  if (provider === 'lemonsqueezy') return b.data.attributes.checkout_data.custom;
  if (provider === 'creem') return b.metadata;
  return { custom_id: b.purchase_units[0].custom_id };
}

interface Pay {
  amount: number;
  metadata: Record<string, string>;
  /** The provider's checkout the payment went through (Stripe session, Creem checkout, PayPal order). */
  checkoutId: string;
  paymentId?: string;
  eventId?: string;
  priceId?: string;
  /** The payer at the provider (Lemon Squeezy, Creem): its customer id and the e-mail typed there. */
  customerId?: string;
  email?: string;
  /** Lemon Squeezy's order status (default paid). */
  lsStatus?: 'paid' | 'failed' | 'pending';
}

/** The provider's webhook for a paid checkout, signed as the provider signs it; the provider payment id. */
async function pay(provider: Provider, p: Pay): Promise<{ status: number; body: Json; paymentId: string }> {
  const eventId = p.eventId ?? rid('evt');
  if (provider === 'stripe') {
    const pi = p.paymentId ?? rid('pi');
    const res = await send.stripe({
      id: eventId, object: 'event', type: 'checkout.session.completed',
      data: { object: { id: p.checkoutId, object: 'checkout.session', mode: 'payment', payment_status: 'paid', status: 'complete', amount_total: p.amount, amount_subtotal: p.amount, total_details: { amount_tax: 0 }, currency: 'usd', customer: null, customer_details: { email: null }, payment_intent: pi, metadata: p.metadata } },
    });
    return { ...res, paymentId: pi };
  }
  if (provider === 'lemonsqueezy') {
    const order = p.paymentId ?? num();
    const res = await send.lemonsqueezy({
      meta: { event_name: 'order_created', custom_data: p.metadata, test_mode: true },
      data: { type: 'orders', id: order, attributes: { store_id: 1, customer_id: Number(p.customerId ?? num()), user_email: p.email ?? `${rid('b')}@example.com`, currency: 'USD', subtotal: p.amount, tax: 0, total: p.amount, status: p.lsStatus ?? 'paid', first_order_item: { variant_id: Number(p.priceId ?? num()), product_id: 5, quantity: 1 }, created_at: '2026-01-01T00:00:00.000000Z', updated_at: `2026-01-01T00:00:0${eventId.length % 10}.000000Z` } },
    });
    return { ...res, paymentId: `order_${order}` };
  }
  if (provider === 'creem') {
    const order = p.paymentId ?? rid('ord');
    const res = await send.creem({
      id: eventId, eventType: 'checkout.completed', created_at: Date.now(),
      object: { id: p.checkoutId, order: { id: order, amount: p.amount, currency: 'USD', status: 'paid' }, product: { id: p.priceId ?? rid('prod') }, customer: { id: p.customerId ?? rid('cust'), email: p.email ?? `${rid('b')}@example.com` }, status: 'completed', metadata: p.metadata },
    });
    return { ...res, paymentId: order };
  }
  const capture = p.paymentId ?? rid('CAP');
  const value = `${Math.floor(p.amount / 100)}.${String(p.amount % 100).padStart(2, '0')}`;
  const res = await send.paypal({
    id: eventId, event_type: 'PAYMENT.CAPTURE.COMPLETED', resource_type: 'capture',
    resource: { id: capture, status: 'COMPLETED', amount: { currency_code: 'USD', value }, custom_id: p.metadata['custom_id'], supplementary_data: { related_ids: { order_id: p.checkoutId } } },
  });
  return { ...res, paymentId: capture };
}

/** Creates a checkout for `userId` as the service; what Tally answered and what the provider received. */
async function checkout(provider: Provider, userId: string, body: Record<string, unknown> = {}) {
  const pkg = await packageFor(provider);
  const res = await svc().post('/v1/checkout', { user_id: userId, package_id: pkg.id, success_url: 'https://app.example.com/thanks', ...body });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const rec = fake.last();
  return { pkg, checkout: res.body as Record<string, Json>, rec, metadata: metadataOf(provider, rec) };
}

describe('a checkout for each provider creates the session with signed metadata, and its webhook grants exactly the signed package once', () => {
  for (const provider of PROVIDERS) {
    it(`${provider}: checkout → signed metadata at the provider → paid → exactly the package's credits, once, and never again for a replayed delivery`, async () => {
      const user = await makeUser(app);
      const { pkg, checkout: c, rec, metadata } = await checkout(provider, user.id);
      expect(c).toMatchObject({ user_id: user.id, provider, package_id: pkg.id, amount: pkg.price, currency: 'usd', credits: pkg.credits, status: 'open', provider_checkout_id: rec.id, payment_id: null });
      expect(String(c.url)).toMatch(/^https:\/\//);
      // What the provider received carries the signature over user, item, price, expiry and nonce.
      if (provider === 'paypal') {
        expect(metadata['custom_id']).toMatch(new RegExp(`^tc1~${c.id}~[0-9a-z]+~[A-Za-z0-9_-]{43}$`));
        expect(metadata['custom_id']?.length).toBeLessThanOrEqual(127);
        expect((rec.body as Json).purchase_units[0].amount).toEqual({ currency_code: 'USD', value: '19.99' });
        expect(rec.headers['paypal-request-id']).toBe(c.id);
      } else {
        expect(metadata).toMatchObject({ tally_checkout: c.id, tally_user: user.id, tally_item: `package:${pkg.id}`, tally_price: `${pkg.price} usd`, tally_expires: String(Math.floor(Date.parse(String(c.expires_at)) / 1000)) });
        expect(metadata['tally_sig']).toMatch(/^[A-Za-z0-9_-]{43}$/);
      }
      if (provider === 'stripe') {
        expect(rec.body).toMatchObject({ mode: 'payment', 'line_items[0][price]': pkg.priceId, 'line_items[0][quantity]': '1', 'payment_intent_data[metadata][tally_checkout]': c.id });
        expect(rec.headers['idempotency-key']).toBe(c.id);
      }
      if (provider === 'lemonsqueezy') {
        expect((rec.body as Json).data.attributes.custom_price).toBe(pkg.price);
        // No discount code field: a discounted order would be below the signed price.
        expect((rec.body as Json).data.attributes.checkout_options).toMatchObject({ discount: false });
      }

      const before = await balanceOf(user.id);
      const eventId = rid('evt');
      const paid = await pay(provider, { amount: pkg.price, metadata, checkoutId: rec.id, eventId, priceId: pkg.priceId });
      expect(paid.status, JSON.stringify(paid.body)).toBe(200);
      expect(await balanceOf(user.id)).toBe(before + pkg.credits);
      const payment = await paymentOf(provider, paid.paymentId);
      expect(payment).toMatchObject({ user_id: user.id, match_status: 'matched', status: 'succeeded', package_id: pkg.id, credits: pkg.credits });
      expect((await svc().get(`/v1/checkouts/${c.id}`)).body).toMatchObject({ status: 'completed', payment_id: payment.id });

      // The same delivery again (the provider's retry): replayed, nothing more.
      if (provider !== 'lemonsqueezy') {
        const again = await pay(provider, { amount: pkg.price, metadata, checkoutId: rec.id, eventId, paymentId: paid.paymentId, priceId: pkg.priceId });
        expect(again.status).toBe(200);
        expect(again.body.replayed).toBe(true);
      }
      // A second payment with the same signed checkout (a replay): nothing more, refused with the reason.
      // (A Stripe session is paid once: a second payment comes through another session, and
      // Tally's own session names the first payment.)
      const replay = await pay(provider, { amount: pkg.price, metadata, checkoutId: provider === 'stripe' ? rid('cs_test') : rec.id, priceId: pkg.priceId });
      expect(replay.status).toBe(200);
      expect(await balanceOf(user.id)).toBe(before + pkg.credits);
      const refused = await paymentOf(provider, replay.paymentId);
      expect(refused).toMatchObject({ user_id: null, match_status: 'unmatched', credits: 0 });
      expect(refused.unmatched_reason).toContain(provider === 'stripe' ? `not ${rec.id} that Tally created` : `checkout ${c.id} was already used by payment ${payment.id}`);
      await expectReconciled();
    });
  }
});

describe('price, quantity and identity come only from what Tally signed', () => {
  for (const provider of PROVIDERS) {
    it(`${provider}: metadata changed after signing (another user, a cheaper price, another package) grants nothing and is refused with the reason`, async () => {
      const [victim, buyer] = [await makeUser(app), await makeUser(app)];
      const { rec, metadata, pkg } = await checkout(provider, buyer.id);
      const cheap = await packageFor(provider, { price: 100, credits: 5 });
      const balances = [await balanceOf(victim.id), await balanceOf(buyer.id)];
      const edits: Array<Record<string, string>> =
        provider === 'paypal'
          ? [{ custom_id: must(metadata['custom_id'], 'custom_id').replace(/~([0-9a-z]+)~/, (_m, exp: string) => `~${(parseInt(exp, 36) + 86_400).toString(36)}~`) }, { custom_id: `${must(metadata['custom_id'], 'custom_id').slice(0, -2)}AA` }]
          : [
              { ...metadata, tally_user: victim.id },
              { ...metadata, tally_price: '100 usd' },
              { ...metadata, tally_item: `package:${cheap.id}` },
              { ...metadata, tally_sig: `${must(metadata['tally_sig'], 'sig').slice(0, -2)}AA` },
            ];
      for (const edited of edits) {
        const amount = edited['tally_price'] === '100 usd' ? 100 : pkg.price;
        // (Tally's own Stripe session cannot be edited: edited metadata comes through another session.)
        const res = await pay(provider, { amount, metadata: edited, checkoutId: provider === 'stripe' ? rid('cs_test') : rec.id, priceId: pkg.priceId });
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        const payment = await paymentOf(provider, res.paymentId);
        expect(payment).toMatchObject({ user_id: null, match_status: 'unmatched', credits: 0, grant_transaction_id: null });
        expect(payment.unmatched_reason).toContain('signed checkout refused: the metadata does not verify');
      }
      expect([await balanceOf(victim.id), await balanceOf(buyer.id)]).toEqual(balances);
      // The checkout is still unused: the buyer's genuine payment still buys it.
      const genuine = await pay(provider, { amount: pkg.price, metadata, checkoutId: rec.id, priceId: pkg.priceId });
      expect(genuine.status).toBe(200);
      expect(await balanceOf(buyer.id)).toBe(must(balances[1], 'b') + pkg.credits);
      await expectReconciled();
    });

    it(`${provider}: paying less (or in another currency) than the signed price grants nothing; the payment waits with the reason`, async () => {
      const user = await makeUser(app);
      const { rec, metadata, pkg, checkout: c } = await checkout(provider, user.id);
      const before = await balanceOf(user.id);
      const res = await pay(provider, { amount: pkg.price - 1000, metadata, checkoutId: rec.id, priceId: pkg.priceId });
      expect(res.status).toBe(200);
      expect(await balanceOf(user.id)).toBe(before);
      const payment = await paymentOf(provider, res.paymentId);
      expect(payment).toMatchObject({ user_id: null, match_status: 'unmatched', credits: 0 });
      expect(payment.unmatched_reason).toContain(`checkout ${c.id} was signed at ${pkg.price} usd; paid ${pkg.price - 1000} usd`);
    });
  }

  it('an expired signature buys nothing: the payment is refused as expired', async () => {
    const user = await makeUser(app);
    const { rec, metadata, pkg, checkout: c } = await checkout('creem', user.id, { expires_in_seconds: 1800 });
    const before = await balanceOf(user.id);
    now += 3600_000;
    try {
      const res = await pay('creem', { amount: pkg.price, metadata, checkoutId: rec.id, priceId: pkg.priceId });
      expect(res.status).toBe(200);
      expect(await balanceOf(user.id)).toBe(before);
      expect((await paymentOf('creem', res.paymentId)).unmatched_reason).toContain(`checkout ${c.id} expired at ${c.expires_at}`);
    } finally {
      now -= 3600_000;
    }
  });

  it('a payment bound before the signature expired keeps it: pending at first, paid after the expiry, it grants once', async () => {
    const user = await makeUser(app);
    const { rec, metadata, pkg } = await checkout('creem', user.id, { expires_in_seconds: 1800 });
    const order = rid('ord');
    const event = (status: string) => ({
      id: rid('evt'), eventType: 'checkout.completed', created_at: Date.now(),
      object: { id: rec.id, order: { id: order, amount: pkg.price, currency: 'USD', status }, product: { id: pkg.priceId }, customer: { id: rid('cust') }, status: 'completed', metadata },
    });
    const before = await balanceOf(user.id);
    expect((await send.creem(event('pending'))).status).toBe(200);
    expect(await balanceOf(user.id)).toBe(before);
    now += 3 * 86_400_000;
    try {
      expect((await send.creem(event('paid'))).status).toBe(200);
      expect(await balanceOf(user.id)).toBe(before + pkg.credits);
      expect(await paymentOf('creem', order)).toMatchObject({ user_id: user.id, status: 'succeeded', credits: pkg.credits });
    } finally {
      now -= 3 * 86_400_000;
    }
  });

  it('two payments racing with one signed checkout: exactly one buys it, the other waits in the queue', async () => {
    const user = await makeUser(app);
    const { rec, metadata, pkg } = await checkout('creem', user.id);
    const before = await balanceOf(user.id);
    const results = await Promise.all([0, 1, 2].map(() => pay('creem', { amount: pkg.price, metadata, checkoutId: rec.id, priceId: pkg.priceId })));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(await balanceOf(user.id)).toBe(before + pkg.credits);
    const rows = await Promise.all(results.map((r) => paymentOf('creem', r.paymentId)));
    expect(rows.filter((r) => r.match_status === 'matched')).toHaveLength(1);
    expect(rows.filter((r) => r.match_status === 'unmatched' && String(r.unmatched_reason).includes('was already used by payment'))).toHaveLength(2);
    await expectReconciled();
  });

  it('a cross-user replay: another buyer paying through his own checkout with copied metadata gets nothing, and neither does its owner', async () => {
    const [owner, other] = [await makeUser(app), await makeUser(app)];
    const { metadata, pkg, rec } = await checkout('stripe', owner.id);
    const { rec: otherRec } = await checkout('stripe', other.id);
    const balances = [await balanceOf(owner.id), await balanceOf(other.id)];
    // The other buyer's own session, carrying the owner's signed metadata.
    const res = await pay('stripe', { amount: pkg.price, metadata, checkoutId: otherRec.id });
    expect(res.status).toBe(200);
    expect([await balanceOf(owner.id), await balanceOf(other.id)]).toEqual(balances);
    expect((await paymentOf('stripe', res.paymentId)).unmatched_reason).toContain(`paid through stripe checkout ${otherRec.id}, not ${rec.id}`);
    // Creem and PayPal name their checkout too.
    for (const provider of ['creem', 'paypal'] as const) {
      const a = await checkout(provider, owner.id);
      const b = await checkout(provider, other.id);
      const r = await pay(provider, { amount: a.pkg.price, metadata: a.metadata, checkoutId: b.rec.id, priceId: a.pkg.priceId });
      expect(r.status).toBe(200);
      expect((await paymentOf(provider, r.paymentId)).unmatched_reason).toContain(`not ${a.rec.id} that Tally created`);
    }
    expect([await balanceOf(owner.id), await balanceOf(other.id)]).toEqual(balances);
    // And the owner's metadata once used by the owner is spent for everybody (Lemon Squeezy names no checkout).
    const ls = await checkout('lemonsqueezy', owner.id);
    expect((await pay('lemonsqueezy', { amount: ls.pkg.price, metadata: ls.metadata, checkoutId: ls.rec.id, priceId: ls.pkg.priceId })).status).toBe(200);
    const afterOwn = await balanceOf(owner.id);
    const copied = await pay('lemonsqueezy', { amount: ls.pkg.price, metadata: ls.metadata, checkoutId: ls.rec.id, priceId: ls.pkg.priceId });
    expect(copied.status).toBe(200);
    expect([await balanceOf(owner.id), await balanceOf(other.id)]).toEqual([afterOwn, balances[1]]);
    expect((await paymentOf('lemonsqueezy', copied.paymentId)).unmatched_reason).toContain('was already used by payment');
    await expectReconciled();
  });

  it("another deployment's checkout (its own key, or the same key and a checkout this database never made) buys nothing here", async () => {
    const user = await makeUser(app);
    const before = await balanceOf(user.id);
    const fields = { checkoutId: `chk_${randomBytes(13).toString('hex')}`, userId: user.id, item: 'package:pkg_elsewhere', amount: 1999, currency: 'usd', expiresAt: new Date(now + 86_400_000) };
    const otherKey = signedMetadata(checkoutKey(randomBytes(32)), fields);
    const sameKey = signedMetadata(checkoutKey(encryptionKey), fields);
    const a = await pay('stripe', { amount: 1999, metadata: otherKey, checkoutId: rid('cs_test') });
    const b = await pay('stripe', { amount: 1999, metadata: sameKey, checkoutId: rid('cs_test') });
    const c = await pay('paypal', { amount: 1999, metadata: { custom_id: compactToken(checkoutKey(encryptionKey), fields) }, checkoutId: rid('ORDER') });
    expect([a.status, b.status, c.status]).toEqual([200, 200, 200]);
    expect(await balanceOf(user.id)).toBe(before);
    expect((await paymentOf('stripe', a.paymentId)).unmatched_reason).toContain('the metadata does not verify');
    expect((await paymentOf('stripe', b.paymentId)).unmatched_reason).toContain(`checkout ${fields.checkoutId} was not created by this deployment`);
    expect((await paymentOf('paypal', c.paymentId)).unmatched_reason).toContain('was not created by this deployment');
  });

  it('the existing matching paths still work beside signed checkouts: an unsigned payment at a package price matches by metadata as before', async () => {
    const user = await makeUser(app);
    const pkg = await packageFor('stripe');
    const before = await balanceOf(user.id);
    const res = await pay('stripe', { amount: pkg.price, metadata: { user_id: user.id, price_id: pkg.priceId }, checkoutId: rid('cs_test') });
    expect(res.status).toBe(200);
    expect(await balanceOf(user.id)).toBe(before + pkg.credits);
    expect(await paymentOf('stripe', res.paymentId)).toMatchObject({ match_status: 'matched', user_id: user.id, package_id: pkg.id });
  });
});

describe('attacker review of signed checkouts (F1, F2, F6)', () => {
  for (const provider of ['lemonsqueezy', 'creem'] as const) {
    it(`${provider}: a payer typing the victim's e-mail in the attacker's own checkout links no customer — underpaid, failed or paid — so the victim's later payments stay the victim's`, async () => {
      const victim = await makeUser(app, { is_email_verified: true });
      const attacker = await makeUser(app, { is_email_verified: true });
      const customerId = provider === 'lemonsqueezy' ? num() : rid('cust');
      const { rec, metadata, pkg } = await checkout(provider, attacker.id);
      const base = { metadata, checkoutId: rec.id, priceId: pkg.priceId, customerId, email: victim.email };
      // 1 cent with the attacker's signed data: refused on price, and links nobody.
      const cent = await pay(provider, { ...base, amount: 1 });
      expect(cent.status).toBe(200);
      expect(await paymentOf(provider, cent.paymentId)).toMatchObject({ user_id: null, match_status: 'unmatched' });
      expect(await customersOf(attacker.id)).toEqual([]);
      if (provider === 'lemonsqueezy') {
        const failed = await pay(provider, { ...base, amount: pkg.price, lsStatus: 'failed' });
        expect(await paymentOf(provider, failed.paymentId)).toMatchObject({ status: 'failed' });
        expect(await customersOf(attacker.id)).toEqual([]);
      }
      // Paid in full: the attacker gets what he paid for, but the payer's e-mail is not his
      // verified address, so the customer (keyed on the victim's e-mail) is not linked to him.
      const before = await balanceOf(attacker.id);
      const paid = await pay(provider, { ...base, amount: pkg.price });
      expect(await balanceOf(attacker.id)).toBe(before + pkg.credits);
      // (The customer id stays on the payment only.)
      expect(await paymentOf(provider, paid.paymentId)).toMatchObject({ user_id: attacker.id, provider_customer_id: customerId });
      expect(await customersOf(attacker.id)).toEqual([]);
      // The victim's own plain payment later, as that customer: the victim's, by verified e-mail.
      const plainPkg = await packageFor(provider);
      const victimBefore = await balanceOf(victim.id);
      const plain = await pay(provider, { amount: plainPkg.price, metadata: {}, checkoutId: rid('ch'), priceId: plainPkg.priceId, customerId, email: victim.email });
      expect(plain.status).toBe(200);
      expect(await paymentOf(provider, plain.paymentId)).toMatchObject({ user_id: victim.id, match_status: 'matched' });
      expect(await balanceOf(victim.id)).toBe(victimBefore + plainPkg.credits);
      // A buyer paying with his own verified address is linked as before.
      const own = await checkout(provider, attacker.id);
      const ownCustomer = provider === 'lemonsqueezy' ? num() : rid('cust');
      const ownPaid = await pay(provider, { amount: own.pkg.price, metadata: own.metadata, checkoutId: own.rec.id, priceId: own.pkg.priceId, customerId: ownCustomer, email: attacker.email.toUpperCase() });
      expect(ownPaid.status).toBe(200);
      expect(await customersOf(attacker.id)).toEqual([ownCustomer]);
      await expectReconciled();
    });
  }

  for (const provider of ['lemonsqueezy', 'creem'] as const) {
    it(`${provider}: a signed checkout reference (the older path) follows the same rule: the victim's e-mail links no customer to the reference's user, and matches that one payment only`, async () => {
      const victim = await makeUser(app, { is_email_verified: true });
      const attacker = await makeUser(app, { is_email_verified: true });
      const pkg = await packageFor(provider);
      const ref = await svc().post('/v1/checkout-references', { user_id: attacker.id, package_id: pkg.id });
      expect(ref.status).toBe(201);
      const customerId = provider === 'lemonsqueezy' ? num() : rid('cust');
      const paid = await pay(provider, { amount: pkg.price, metadata: { tally_ref: ref.body.reference as string }, checkoutId: rid('ch'), priceId: pkg.priceId, customerId, email: victim.email });
      expect(paid.status).toBe(200);
      expect(await paymentOf(provider, paid.paymentId)).toMatchObject({ user_id: attacker.id, match_status: 'matched' });
      expect(await customersOf(attacker.id)).toEqual([]);
      const plain = await pay(provider, { amount: pkg.price, metadata: {}, checkoutId: rid('ch'), priceId: pkg.priceId, customerId, email: victim.email });
      expect(await paymentOf(provider, plain.paymentId)).toMatchObject({ user_id: victim.id, match_status: 'matched' });
      // Underpaid with the reference: no grant, no link either.
      const cheap = await pay(provider, { amount: 1, metadata: { tally_ref: ref.body.reference as string }, checkoutId: rid('ch'), priceId: pkg.priceId, customerId: provider === 'lemonsqueezy' ? num() : rid('cust'), email: attacker.email });
      expect(await paymentOf(provider, cheap.paymentId)).toMatchObject({ match_status: 'unmatched' });
      expect(await customersOf(attacker.id)).toEqual([]);
      // Paying with his own verified address, the reference's user is linked as before.
      const ownCustomer = provider === 'lemonsqueezy' ? num() : rid('cust');
      const own = await pay(provider, { amount: pkg.price, metadata: { tally_ref: ref.body.reference as string }, checkoutId: rid('ch'), priceId: pkg.priceId, customerId: ownCustomer, email: attacker.email });
      expect(await paymentOf(provider, own.paymentId)).toMatchObject({ user_id: attacker.id, match_status: 'matched' });
      expect(await customersOf(attacker.id)).toEqual([ownCustomer]);
    });
  }

  it("lemonsqueezy: a subscription carrying the attacker's signed reference and the victim's e-mail links no customer either", async () => {
    const victim = await makeUser(app, { is_email_verified: true });
    const attacker = await makeUser(app, { is_email_verified: true });
    const pkg = await packageFor('lemonsqueezy');
    const ref = await svc().post('/v1/checkout-references', { user_id: attacker.id, package_id: pkg.id });
    expect(ref.status).toBe(201);
    const customerId = num();
    const created = await send.lemonsqueezy({
      meta: { event_name: 'subscription_created', custom_data: { tally_ref: ref.body.reference as string }, test_mode: true },
      data: { type: 'subscriptions', id: num(), attributes: { customer_id: Number(customerId), variant_id: Number(num()), user_email: victim.email, status: 'active', renews_at: '2026-02-01T00:00:00.000000Z', trial_ends_at: null, updated_at: '2026-01-01T00:00:00Z' } },
    });
    expect(created.status).toBe(200);
    expect(await customersOf(attacker.id)).toEqual([]);
    const plain = await pay('lemonsqueezy', { amount: pkg.price, metadata: {}, checkoutId: rid('ch'), priceId: pkg.priceId, customerId, email: victim.email });
    expect(await paymentOf('lemonsqueezy', plain.paymentId)).toMatchObject({ user_id: victim.id, match_status: 'matched' });
  });

  // (Not Stripe: Tally's Stripe session fixes the price, and a session is paid once — its id names
  // the first payment.)
  for (const provider of ['lemonsqueezy', 'creem', 'paypal'] as const) {
    it(`${provider}: an underpaid (or failed) payment does not use up the checkout: the buyer's genuine payment still buys it, once`, async () => {
      const user = await makeUser(app);
      const { rec, metadata, pkg, checkout: c } = await checkout(provider, user.id);
      const before = await balanceOf(user.id);
      const cent = await pay(provider, { amount: 1, metadata, checkoutId: rec.id, priceId: pkg.priceId });
      expect(cent.status).toBe(200);
      expect((await paymentOf(provider, cent.paymentId)).unmatched_reason).toContain('was signed at');
      expect((await svc().get(`/v1/checkouts/${c.id}`)).body).toMatchObject({ status: 'open', payment_id: null });
      if (provider === 'lemonsqueezy') {
        // Pending at the right price binds it; failing then gives it up again.
        const order = num();
        await pay(provider, { amount: pkg.price, metadata, checkoutId: rec.id, priceId: pkg.priceId, paymentId: order, lsStatus: 'pending' });
        expect((await svc().get(`/v1/checkouts/${c.id}`)).body.payment_id).not.toBeNull();
        await pay(provider, { amount: pkg.price, metadata, checkoutId: rec.id, priceId: pkg.priceId, paymentId: order, lsStatus: 'failed', eventId: 'e1' });
        expect((await svc().get(`/v1/checkouts/${c.id}`)).body.payment_id).toBeNull();
      }
      const genuine = await pay(provider, { amount: pkg.price, metadata, checkoutId: rec.id, priceId: pkg.priceId });
      expect(genuine.status).toBe(200);
      expect(await balanceOf(user.id)).toBe(before + pkg.credits);
      const payment = await paymentOf(provider, genuine.paymentId);
      expect((await svc().get(`/v1/checkouts/${c.id}`)).body).toMatchObject({ status: 'completed', payment_id: payment.id });
      // And it is still one payment per checkout.
      const again = await pay(provider, { amount: pkg.price, metadata, checkoutId: rec.id, priceId: pkg.priceId });
      expect((await paymentOf(provider, again.paymentId)).unmatched_reason).toContain('was already used by payment');
      expect(await balanceOf(user.id)).toBe(before + pkg.credits);
      await expectReconciled();
    });
  }

  it('a payment naming a provider checkout, for a checkout Tally recorded none for (the provider call failed or is still running), is refused', async () => {
    const user = await makeUser(app);
    const pkg = await packageFor('creem');
    fake.creemProducts.delete(pkg.priceId);
    const refused = await svc().post('/v1/checkout', { user_id: user.id, package_id: pkg.id, success_url: 'https://app.example.com/ok' });
    expect(refused.status).toBe(409);
    const row = (await svc().get(`/v1/checkouts/${refused.body.error.details.checkout_id}`)).body;
    expect(row).toMatchObject({ status: 'failed', provider_checkout_id: null });
    // The signed data as Tally would have sent it (the provider may have made the session before failing).
    const metadata = signedMetadata(checkoutKey(encryptionKey), { checkoutId: row.id, userId: user.id, item: `package:${pkg.id}`, amount: pkg.price, currency: 'usd', expiresAt: new Date(String(row.expires_at)) });
    const before = await balanceOf(user.id);
    const res = await pay('creem', { amount: pkg.price, metadata, checkoutId: rid('ch'), priceId: pkg.priceId });
    expect(res.status).toBe(200);
    expect(await balanceOf(user.id)).toBe(before);
    expect((await paymentOf('creem', res.paymentId)).unmatched_reason).toContain(`Tally recorded no creem checkout for checkout ${row.id}`);
  });

  it('a signed-in user may create (and capture) only so many checkouts an hour: then 429 rate_limited, before the provider is asked; the service and other users are not limited', async () => {
    const me = await signUp(app);
    const other = await signUp(app);
    const pkg = await packageFor('stripe');
    const body = { package_id: pkg.id, success_url: 'https://app.example.com/ok' };
    for (let i = 0; i < 4; i++) expect((await me.api.post('/v1/checkout', body)).status).toBe(201);
    const last = await me.api.post('/v1/checkout', body);
    expect(last.status).toBe(201);
    // Captures count against the same budget.
    const count = fake.requests.length;
    const limited = await me.api.post(`/v1/checkouts/${last.body.id}/capture`);
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    expect(limited.body.error.details.retry_after_seconds).toBeGreaterThan(0);
    expect((await me.api.post('/v1/checkout', body)).status).toBe(429);
    expect(fake.requests.length).toBe(count);
    expect((await other.api.post('/v1/checkout', body)).status).toBe(201);
    expect((await svc().post('/v1/checkout', { ...body, user_id: me.user.id })).status).toBe(201);
  });
});

describe('who may create a checkout, and for what', () => {
  it('a signed-in user creates checkouts for themself only (JWT or API key); another user id is 403; the service must name the user', async () => {
    const me = await signUp(app);
    const other = await makeUser(app);
    const pkg = await packageFor('stripe');
    const body = { package_id: pkg.id, success_url: 'https://app.example.com/ok' };
    const mine = await me.api.post('/v1/checkout', body);
    expect(mine.status, JSON.stringify(mine.body)).toBe(201);
    expect(mine.body.user_id).toBe(me.user.id);
    expect(metadataOf('stripe', fake.last())['tally_user']).toBe(me.user.id);
    expect((await me.api.get(`/v1/checkouts/${mine.body.id}`)).status).toBe(200);
    const count = fake.requests.length;
    const theirs = await me.api.post('/v1/checkout', { ...body, user_id: other.id });
    expect(theirs.status).toBe(403);
    expect(theirs.body.error.code).toBe('forbidden');
    const key = await makeApiKey(app, me.user.id, { name: 'read only', scopes: ['credits:read'] });
    expect((await client(app.server, key.key).post('/v1/checkout', body)).status).toBe(403);
    const writer = await makeApiKey(app, me.user.id, { name: 'buyer', scopes: ['billing:write'] });
    expect((await client(app.server, writer.key).post('/v1/checkout', body)).status).toBe(201);
    expect((await client(app.server, null).post('/v1/checkout', body)).status).toBe(401);
    expect((await svc().post('/v1/checkout', body)).status).toBe(400);
    // Another user's checkout is not theirs to read either (RLS hides it: 404).
    const foreign = await svc().post('/v1/checkout', { ...body, user_id: other.id });
    expect((await me.api.get(`/v1/checkouts/${foreign.body.id}`)).status).toBe(404);
    expect(fake.requests.length).toBe(count + 2);
  });

  it('an unknown package, plan or user is a clear 404; an inactive or unpriced package 409; bad combinations 400 — and no provider is asked', async () => {
    const user = await makeUser(app);
    const pkg = await packageFor('stripe');
    const count = fake.requests.length;
    const post = (b: Record<string, unknown>) => svc().post('/v1/checkout', { user_id: user.id, success_url: 'https://app.example.com/ok', ...b });
    const unknown = await post({ package_id: 'pkg_nope' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'not_found', message: 'Credit package pkg_nope not found' });
    expect((await post({ plan_id: 'plan_nope', provider: 'stripe' })).status).toBe(404);
    expect((await svc().post('/v1/checkout', { user_id: 'usr_nope', package_id: pkg.id, success_url: 'https://app.example.com/ok' })).status).toBe(404);
    expect((await post({ package_id: pkg.id, plan_id: 'plan_x' })).status).toBe(400);
    expect((await post({})).status).toBe(400);
    expect((await post({ package_id: pkg.id, provider: 'paypal' })).status).toBe(400);
    expect((await post({ package_id: pkg.id, success_url: 'javascript:alert(1)' })).status).toBe(400);
    expect((await post({ package_id: pkg.id, amount: 1 })).status).toBe(400);
    const unpriced = await svc().post('/v1/credit-packages', { name: rid('p'), provider: 'stripe', provider_price_id: rid('price'), credits: 10 });
    expect((await post({ package_id: unpriced.body.id })).status).toBe(409);
    await svc().patch(`/v1/credit-packages/${pkg.id}`, { is_active: false });
    expect((await post({ package_id: pkg.id })).status).toBe(409);
    expect(fake.requests.length).toBe(count);
  });

  it('a provider that refuses answers 409 and one that is down 503; the checkout is recorded failed and buys nothing', async () => {
    const user = await makeUser(app);
    const pkg = await packageFor('creem');
    fake.creemProducts.delete(pkg.priceId);
    const refused = await svc().post('/v1/checkout', { user_id: user.id, package_id: pkg.id, success_url: 'https://app.example.com/ok' });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain('Creem answered 404');
    expect((await svc().get(`/v1/checkouts/${refused.body.error.details.checkout_id}`)).body.status).toBe('failed');
    fake.failWith = 503;
    try {
      const down = await svc().post('/v1/checkout', { user_id: user.id, package_id: (await packageFor('lemonsqueezy')).id, success_url: 'https://app.example.com/ok' });
      expect(down.status).toBe(503);
      expect(down.body.error.code).toBe('unavailable');
    } finally {
      fake.failWith = null;
    }
    // A Stripe price that is not the package's price is refused before the buyer can pay it.
    const wrong = await packageFor('stripe');
    fake.stripePrices.set(wrong.priceId, { amount: 999, currency: 'usd' });
    const mismatch = await svc().post('/v1/checkout', { user_id: user.id, package_id: wrong.id, success_url: 'https://app.example.com/ok' });
    expect(mismatch.status).toBe(409);
    expect(mismatch.body.error.message).toContain(`costs 999 usd; package ${wrong.id} costs ${wrong.price} usd`);
  });

  it('PayPal: the approved order is captured through Tally (service or its buyer), and the capture webhook grants once; other providers have nothing to capture', async () => {
    const buyer = await signUp(app);
    const other = await signUp(app);
    const pkg = await packageFor('paypal');
    const created = await buyer.api.post('/v1/checkout', { package_id: pkg.id, success_url: 'https://app.example.com/back' });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const rec = fake.last();
    // Not approved yet: PayPal refuses, nothing is taken.
    const early = await buyer.api.post(`/v1/checkouts/${created.body.id}/capture`);
    expect(early.status).toBe(409);
    expect(early.body.error.message).toContain('ORDER_NOT_APPROVED');
    fake.paypalApproved.add(rec.id);
    expect((await other.api.post(`/v1/checkouts/${created.body.id}/capture`)).status).toBe(404);
    expect(fake.paypalCaptures.has(rec.id)).toBe(false);
    const captured = await buyer.api.post(`/v1/checkouts/${created.body.id}/capture`);
    expect(captured.status, JSON.stringify(captured.body)).toBe(200);
    expect(captured.body).toMatchObject({ id: created.body.id, provider_status: 'COMPLETED', status: 'open' });
    const capture = must(fake.paypalCaptures.get(rec.id), 'capture');
    expect(capture.headers['paypal-request-id']).toBe(`${created.body.id}-capture`);
    const before = await balanceOf(buyer.user.id);
    const paid = await pay('paypal', { amount: pkg.price, metadata: metadataOf('paypal', rec), checkoutId: rec.id, paymentId: capture.captureId });
    expect(paid.status).toBe(200);
    expect(await balanceOf(buyer.user.id)).toBe(before + pkg.credits);
    expect((await buyer.api.get(`/v1/checkouts/${created.body.id}`)).body.status).toBe('completed');
    // Completed: nothing more to capture. Stripe takes the money itself.
    expect((await buyer.api.post(`/v1/checkouts/${created.body.id}/capture`)).status).toBe(409);
    const stripe = await checkout('stripe', buyer.user.id);
    const none = await svc().post(`/v1/checkouts/${stripe.checkout.id}/capture`);
    expect(none.status).toBe(409);
    expect(none.body.error.message).toContain('nothing to capture');
    expect((await svc().post('/v1/checkouts/chk_nope/capture')).status).toBe(404);
  });

  it('a plan checkout sells one period at the plan price and the paid webhook activates the plan through billing', async () => {
    const user = await makeUser(app);
    const slug = `plan-${randomBytes(4).toString('hex')}`;
    const plan = await svc().post('/v1/plans', { slug, name: slug, trial_days: 0, price_monthly: 2900, allowances: [{ class: 'Usage', amount: 100 }] });
    expect(plan.status).toBe(201);
    const res = await svc().post('/v1/checkout', { user_id: user.id, plan_id: plan.body.id, provider: 'stripe', success_url: 'https://app.example.com/ok' });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toMatchObject({ plan_id: plan.body.id, interval: 'monthly', amount: 2900, credits: 0 });
    const rec = fake.last();
    expect(rec.body).toMatchObject({ 'line_items[0][price_data][unit_amount]': '2900', 'line_items[0][price_data][currency]': 'usd' });
    const metadata = metadataOf('stripe', rec);
    expect(metadata['tally_item']).toBe(`plan:${plan.body.id}:monthly`);
    // Lemon Squeezy sells only a variant it knows: a plan without one is refused before asking.
    expect((await svc().post('/v1/checkout', { user_id: user.id, plan_id: plan.body.id, provider: 'lemonsqueezy', success_url: 'https://app.example.com/ok' })).status).toBe(409);
    const paid = await pay('stripe', { amount: 2900, metadata, checkoutId: rec.id });
    expect(paid.status).toBe(200);
    expect(await paymentOf('stripe', paid.paymentId)).toMatchObject({ user_id: user.id, plan_id: plan.body.id, match_status: 'matched' });
    const subs = await svc().get(`/v1/users/${user.id}/subscriptions`);
    expect((subs.body.data as Array<Record<string, Json>>).some((s) => s.plan_id === plan.body.id && s.status === 'active')).toBe(true);
  });
});
