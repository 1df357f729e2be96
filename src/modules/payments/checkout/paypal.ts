import { fromMinorUnits, obj, str } from '../payments.js';
import { PayPalToken } from '../payments.paypal.js';
import { callJson, type CheckoutOrder, type CheckoutPlugin, type CheckoutProvider, CheckoutFailed, type CreatedCheckout, failure } from './checkout.provider.js';

/**
 * PayPal orders (`POST /v2/checkout/orders`, intent CAPTURE) after an OAuth2 client-credentials
 * token (cached until it expires; one fresh token on a 401). The amount is Tally's, the signature
 * rides in the purchase unit's `custom_id` (the compact form: 127 characters at most), and
 * `PayPal-Request-Id` is Tally's checkout id (a retry never makes two orders). The buyer approves
 * at the `payer-action` (or `approve`) link; the capture's webhook names this order
 * (`supplementary_data.related_ids.order_id`), so copied metadata on another order is refused.
 */
export const paypalCheckout: CheckoutPlugin<'paypal'> = {
  name: 'paypal',
  settings: 'PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET',
  build(config, clock) {
    return config ? new PayPalCheckouts(config, clock) : null;
  },
};

class PayPalCheckouts implements CheckoutProvider {
  readonly name = 'paypal' as const;
  readonly needsPriceId = false;
  private readonly token: PayPalToken;

  constructor(private readonly config: { clientId: string; clientSecret: string; apiBase: string }, clock: () => Date) {
    this.token = new PayPalToken(config, clock, (path, init) => callJson(`${config.apiBase}${path}`, init), (status) =>
      new CheckoutFailed(status === 401 ? 'refused' : 'unavailable', `PayPal oauth2/token answered ${status}`));
  }

  async create(order: CheckoutOrder): Promise<CreatedCheckout> {
    const body = JSON.stringify({
      intent: 'CAPTURE',
      purchase_units: [
        {
          reference_id: order.checkoutId,
          custom_id: order.compactToken,
          description: order.item.name.slice(0, 127),
          amount: { currency_code: order.currency.toUpperCase(), value: fromMinorUnits(order.amount, order.currency) },
        },
      ],
      payment_source: {
        paypal: {
          ...(order.email ? { email_address: order.email } : {}),
          experience_context: { return_url: order.successUrl, cancel_url: order.cancelUrl ?? order.successUrl, user_action: 'PAY_NOW', shipping_preference: 'NO_SHIPPING' },
        },
      },
    });
    const post = async () =>
      callJson(`${this.config.apiBase}/v2/checkout/orders`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await this.accessToken()}`, 'content-type': 'application/json', accept: 'application/json', 'paypal-request-id': order.checkoutId },
        body,
      });
    const res = await this.withToken(post);
    const answer = obj(res.body);
    if (res.status !== 200 && res.status !== 201) throw failure('PayPal', res.status, str(answer['message']) ?? str(answer['name']) ?? '');
    const id = str(answer['id']);
    const links = Array.isArray(answer['links']) ? (answer['links'] as unknown[]).map(obj) : [];
    const link = links.find((l) => l['rel'] === 'payer-action') ?? links.find((l) => l['rel'] === 'approve');
    const url = link ? str(link['href']) : null;
    if (!id || !url) throw failure('PayPal', 502, 'an order without an id or an approval link');
    return { providerCheckoutId: id, url };
  }

  /**
   * Captures the approved order (`POST /v2/checkout/orders/{id}/capture`). The capture's webhook
   * (PAYMENT.CAPTURE.COMPLETED, naming this order) is what grants. PayPal-Request-Id makes a retried
   * capture the same capture.
   */
  async capture(orderId: string, checkoutId: string): Promise<{ status: string }> {
    const res = await this.withToken(async () =>
      callJson(`${this.config.apiBase}/v2/checkout/orders/${encodeURIComponent(orderId)}/capture`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await this.accessToken()}`,
          'content-type': 'application/json',
          accept: 'application/json',
          'paypal-request-id': `${checkoutId}-capture`,
        },
        body: '{}',
      }),
    );
    const answer = obj(res.body);
    if (res.status !== 200 && res.status !== 201) {
      const issue = str(obj(Array.isArray(answer['details']) ? answer['details'][0] : null)['issue']);
      throw failure('PayPal', res.status, issue ?? str(answer['message']) ?? str(answer['name']) ?? '');
    }
    return { status: str(answer['status']) ?? 'UNKNOWN' };
  }

  /** One call, with one fresh token on a 401 (expired early or revoked). */
  private async withToken(call: () => Promise<{ status: number; body: unknown }>) {
    const res = await call();
    if (res.status !== 401) return res;
    this.token.reset();
    return call();
  }

  private accessToken(): Promise<string> {
    return this.token.get();
  }
}
