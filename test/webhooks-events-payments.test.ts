import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { stripeCheckout, webhookSenders, type Webhooks } from './support/payment-webhooks.js';
import { addEndpoint, localWebhooks, messages, receiver, verifyDelivery } from './support/webhooks.js';

/**
 * Payments' events (docs/webhooks-out.md): payment.succeeded, .unmatched, .refunded and .disputed,
 * each written in the transaction that records the provider's word about the payment.
 */
const id = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;
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

describe(`payment events (${TARGET})`, () => {
  let app: TestApp;
  let send: Webhooks;
  let rx: Awaited<ReturnType<typeof receiver>>;
  let endpoint: { id: string; secret: string };

  beforeAll(async () => {
    rx = await receiver();
    send = await webhookSenders(() => app, { unitAmount: 10, currency: 'usd' });
    app = await createTestApp({ ...localWebhooks, payments: send.config, credits: { balanceCap: null, signupBonus: 3 } });
    endpoint = await addEndpoint(app, rx.url, ['payment.succeeded', 'payment.unmatched', 'payment.refunded', 'payment.disputed', 'credits.granted']);
  });
  afterAll(async () => {
    await app?.close();
    await send?.close();
    await rx?.close();
  });

  const paymentId = async (pi: string) =>
    (await app.database.db.selectFrom('payments').select('id').where('provider_payment_id', '=', pi).executeTakeFirstOrThrow()).id;

  it('a paid checkout tells payment.succeeded once, with its grant, however often the provider repeats it; the delivery verifies', async () => {
    const user = await makeUser(app);
    const pi = id('pi');
    const event = stripeCheckout({ amount: 1000, pi, metadata: { user_id: user.id } });
    expect((await send.stripe(event)).status).toBe(200);
    await send.stripe(event);
    await send.stripe({ ...event, id: id('evt') });
    const told = await messages(app, 'payment.succeeded', user.id);
    expect(told).toHaveLength(1);
    expect(told[0]?.data).toMatchObject({ id: await paymentId(pi), status: 'succeeded', user_id: user.id, credits: 100, amount: 1000 });
    // The grant it made is told by the same transaction.
    const granted = await messages(app, 'credits.granted', user.id);
    expect(granted.map((m) => (m.data['transaction'] as { amount: number }).amount)).toEqual([3, 100]);

    const before = rx.got.length;
    await app.services.queue.runDue();
    const delivered = rx.got.slice(before).map((r) => verifyDelivery(endpoint.secret, r));
    expect(delivered.find((e) => e.type === 'payment.succeeded')?.id).toBe(told[0]?.id);
  });

  it('a paid checkout nobody can be matched to tells payment.succeeded and payment.unmatched', async () => {
    const pi = id('pi');
    await send.stripe(stripeCheckout({ amount: 500, pi, email: `nobody_${randomBytes(4).toString('hex')}@example.com` }));
    const pid = await paymentId(pi);
    const unmatched = (await messages(app, 'payment.unmatched')).filter((m) => m.data['id'] === pid);
    expect(unmatched).toHaveLength(1);
    expect(unmatched[0]?.data).toMatchObject({ match_status: 'unmatched', user_id: null });
    expect((await messages(app, 'payment.succeeded')).filter((m) => m.data['id'] === pid)).toHaveLength(1);
  });

  it('each refund that moves the refunded total tells payment.refunded; a repeated total tells nothing', async () => {
    const user = await makeUser(app);
    const pi = id('pi');
    await send.stripe(stripeCheckout({ amount: 1000, pi, metadata: { user_id: user.id } }));
    await send.stripe(charge('charge.refunded', pi, 500));
    await send.stripe(charge('charge.refunded', pi, 500)); // the same cumulative total: nothing moves
    await send.stripe(charge('charge.refunded', pi, 1000));
    const told = await messages(app, 'payment.refunded', user.id);
    expect(told.map((m) => [m.data['amount_refunded'], m.data['status'], m.data['credits_clawed_back']])).toEqual([
      [500, 'succeeded', 50],
      [1000, 'refunded', 100],
    ]);
  });

  it('a dispute tells payment.disputed once; a refund before its payment fails and tells nothing', async () => {
    const user = await makeUser(app);
    const pi = id('pi');
    await send.stripe(stripeCheckout({ amount: 1000, pi, metadata: { user_id: user.id } }));
    await send.stripe(charge('charge.dispute.created', pi, 1000));
    await send.stripe(charge('charge.dispute.created', pi, 1000));
    expect((await messages(app, 'payment.disputed', user.id)).map((m) => m.data['status'])).toEqual(['disputed']);

    const early = id('pi');
    const before = (await messages(app, 'payment.refunded')).length;
    expect((await send.stripe(charge('charge.refunded', early, 500))).status).toBeGreaterThanOrEqual(500);
    expect(await messages(app, 'payment.refunded')).toHaveLength(before);
  });
});
