import type Stripe from 'stripe';
import { type CheckoutOrder, type CheckoutPlugin, CheckoutFailed, type CreatedCheckout, type CheckoutProvider } from './checkout.provider.js';

/**
 * Stripe Checkout Sessions, through the official `stripe` package (`checkout.sessions.create`,
 * mode `payment`). A package is sold at its Stripe price (`provider_price_id`), so the merchant's
 * product, tax code and reporting stay theirs; a plan is sold for one period at its price
 * (`price_data`). The signed metadata goes on the session and on its payment intent (so a
 * failed payment names the checkout too). Tally's checkout id is the idempotency key: a retry
 * never makes two sessions.
 */
export const stripeCheckout: CheckoutPlugin<'stripe'> = {
  name: 'stripe',
  settings: 'STRIPE_SECRET_KEY',
  build(config, clock) {
    if (!config) return null;
    const url = new URL(config.apiBase);
    // The package takes ~0.3 s to import: loaded on the first checkout, not at every start (issue 17).
    let client: Promise<Stripe> | null = null;
    const connect = () =>
      (client ??= import('stripe').then(
        ({ default: StripeClient }) =>
          new StripeClient(config.secretKey, {
            host: url.hostname,
            port: url.port || (url.protocol === 'http:' ? 80 : 443),
            protocol: url.protocol === 'http:' ? 'http' : 'https',
            timeout: 10_000,
            maxNetworkRetries: 1,
            telemetry: false,
          }),
      ));
    return new StripeCheckouts(connect, clock);
  },
};

/** Stripe keeps a session open 30 minutes at least and 24 hours at most. */
const MIN_OPEN_S = 1800;
const MAX_OPEN_S = 86_400;

class StripeCheckouts implements CheckoutProvider {
  readonly name = 'stripe' as const;
  readonly needsPriceId = false;

  constructor(
    private readonly client: () => Promise<Stripe>,
    private readonly clock: () => Date,
  ) {}

  async create(order: CheckoutOrder): Promise<CreatedCheckout> {
    const now = Math.floor(this.clock().getTime() / 1000);
    const until = Math.floor(order.expiresAt.getTime() / 1000);
    const lineItem: Stripe.Checkout.SessionCreateParams.LineItem =
      order.item.kind === 'package' && order.item.providerPriceId
        ? { price: order.item.providerPriceId, quantity: 1 }
        : { price_data: { currency: order.currency, unit_amount: order.amount, product_data: { name: order.item.name } }, quantity: 1 };
    let session: Stripe.Checkout.Session;
    try {
      session = await (await this.client()).checkout.sessions.create(
        {
          mode: 'payment',
          line_items: [lineItem],
          success_url: order.successUrl,
          ...(order.cancelUrl ? { cancel_url: order.cancelUrl } : {}),
          ...(order.email ? { customer_email: order.email } : {}),
          client_reference_id: order.userId,
          metadata: order.metadata,
          payment_intent_data: { metadata: order.metadata },
          expires_at: now + Math.min(MAX_OPEN_S, Math.max(MIN_OPEN_S, until - now)),
        },
        { idempotencyKey: order.checkoutId },
      );
    } catch (err) {
      // Already loaded by the call that failed (the module cache answers at once).
      const { default: StripeClient } = await import('stripe');
      if (err instanceof StripeClient.errors.StripeError) {
        const status = err.statusCode ?? 0;
        const outage = status === 0 || status >= 500 || status === 429 || err.type === 'StripeConnectionError';
        throw new CheckoutFailed(outage ? 'unavailable' : 'refused', `Stripe answered ${status || 'nothing'}: ${err.message.slice(0, 300)}`);
      }
      throw err;
    }
    // The price the session charges must be the price Tally signed: a Stripe price that differs
    // would only be refused by the webhook after the buyer paid.
    if (typeof session.amount_subtotal === 'number' && (session.amount_subtotal !== order.amount || session.currency !== order.currency)) {
      throw new CheckoutFailed('refused', `Stripe price ${order.item.providerPriceId} costs ${session.amount_subtotal} ${String(session.currency)}; ${order.item.kind} ${order.item.id} costs ${order.amount} ${order.currency}`);
    }
    if (!session.url) throw new CheckoutFailed('unavailable', `Stripe answered session ${session.id} without a url`);
    return { providerCheckoutId: session.id, url: session.url };
  }
}
