import { obj, str } from '../payments.js';
import { callJson, type CheckoutOrder, type CheckoutPlugin, type CheckoutProvider, type CreatedCheckout, failure } from './checkout.provider.js';

/**
 * Creem checkouts (`POST /v1/checkouts`, `x-api-key`). Creem sells a product at the product's own
 * price (the package's `provider_price_id`, or the plan's `plan_prices` id); the webhook checks
 * what was paid against the signed price, so price the package as the product is. Tally's
 * checkout id is the `request_id`; the signed metadata comes back in `checkout.completed`, whose
 * `object.id` is this checkout's id (a payment through another checkout carrying copied metadata
 * is refused).
 */
export const creemCheckout: CheckoutPlugin<'creem'> = {
  name: 'creem',
  settings: 'CREEM_API_KEY',
  build(config) {
    return config ? new CreemCheckouts(config) : null;
  },
};

class CreemCheckouts implements CheckoutProvider {
  readonly name = 'creem' as const;
  readonly needsPriceId = true;

  constructor(private readonly config: { apiKey: string; apiBase: string }) {}

  async create(order: CheckoutOrder): Promise<CreatedCheckout> {
    const res = await callJson(`${this.config.apiBase}/v1/checkouts`, {
      method: 'POST',
      headers: { 'x-api-key': this.config.apiKey, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({
        product_id: order.item.providerPriceId,
        request_id: order.checkoutId,
        units: 1,
        ...(order.email ? { customer: { email: order.email } } : {}),
        metadata: order.metadata,
        success_url: order.successUrl,
      }),
    });
    const body = obj(res.body);
    if (res.status !== 200 && res.status !== 201) throw failure('Creem', res.status, str(body['message']) ?? str(body['error']) ?? '');
    const id = str(body['id']);
    const url = str(body['checkout_url']);
    if (!id || !url) throw failure('Creem', 502, 'a checkout without an id or checkout_url');
    return { providerCheckoutId: id, url };
  }
}
