import { obj, str } from '../payments.js';
import { callJson, type CheckoutOrder, type CheckoutPlugin, type CheckoutProvider, type CreatedCheckout, failure } from './checkout.provider.js';

/**
 * Lemon Squeezy checkouts (`POST /v1/checkouts`, JSON:API). The variant is the package's (or
 * the plan's `plan_prices`) id; `custom_price` fixes the price at the signed amount, and the
 * signed metadata is the checkout's custom data (`meta.custom_data` in the order's webhook). The
 * store's currency is Lemon Squeezy's to choose: a package priced in another currency is refused
 * by the webhook's price check, so price packages in the store's currency.
 */
export const lemonsqueezyCheckout: CheckoutPlugin<'lemonsqueezy'> = {
  name: 'lemonsqueezy',
  settings: 'LEMONSQUEEZY_API_KEY and LEMONSQUEEZY_STORE_ID',
  build(config) {
    return config ? new LemonSqueezyCheckouts(config) : null;
  },
};

class LemonSqueezyCheckouts implements CheckoutProvider {
  readonly name = 'lemonsqueezy' as const;
  readonly needsPriceId = true;

  constructor(private readonly config: { apiKey: string; storeId: string; apiBase: string }) {}

  async create(order: CheckoutOrder): Promise<CreatedCheckout> {
    const variant = String(order.item.providerPriceId);
    const res = await callJson(`${this.config.apiBase}/v1/checkouts`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${this.config.apiKey}`,
        accept: 'application/vnd.api+json',
        'content-type': 'application/vnd.api+json',
      },
      body: JSON.stringify({
        data: {
          type: 'checkouts',
          attributes: {
            custom_price: order.amount,
            // No discount code field: a discounted order is below the signed price (the webhook
            // refuses it, and it does not use up the checkout), so offering one only confuses.
            checkout_options: { discount: false },
            product_options: { redirect_url: order.successUrl, enabled_variants: [Number(variant) || variant] },
            checkout_data: { ...(order.email ? { email: order.email } : {}), custom: order.metadata },
            expires_at: order.expiresAt.toISOString(),
          },
          relationships: {
            store: { data: { type: 'stores', id: this.config.storeId } },
            variant: { data: { type: 'variants', id: variant } },
          },
        },
      }),
    });
    const data = obj(obj(res.body)['data']);
    const errors = (obj(res.body)['errors'] as unknown[] | undefined) ?? [];
    if (res.status !== 201 && res.status !== 200) throw failure('Lemon Squeezy', res.status, str(obj(errors[0])['detail']) ?? '');
    const id = str(data['id']);
    const url = str(obj(data['attributes'])['url']);
    if (!id || !url) throw failure('Lemon Squeezy', 502, 'a checkout without an id or url');
    return { providerCheckoutId: id, url };
  }
}
