import type { CheckoutConfig } from '../../../config/config.js';
import type { ProviderName } from '../payments.provider.js';

/**
 * One provider's checkout API, behind one interface (docs/payments.md, "Checkouts"): everything
 * Tally knows about creating a provider's checkout lives in that provider's file
 * (`checkout/<provider>.ts`); the service never asks which provider it is serving.
 */
export interface CheckoutOrder {
  /** Tally's checkout id: the nonce the signature covers, and the provider's idempotency key. */
  checkoutId: string;
  userId: string;
  /** The buyer's address, prefilled where the provider takes one (null: the buyer types it). */
  email: string | null;
  /** What is bought: its name (shown to the buyer) and the provider's id for it, when it has one. */
  item: { kind: 'package' | 'plan'; id: string; name: string; providerPriceId: string | null };
  /** Minor units; the signed price. */
  amount: number;
  currency: string;
  /** The signed metadata (Stripe metadata, Lemon Squeezy custom data, Creem metadata). */
  metadata: Record<string, string>;
  /** The same signature in PayPal's 127-character `custom_id`. */
  compactToken: string;
  expiresAt: Date;
  successUrl: string;
  cancelUrl: string | null;
}

/** What the provider answered: its own id for the checkout (webhooks name it) and the buyer's link. */
export interface CreatedCheckout {
  providerCheckoutId: string;
  url: string;
}

export interface CheckoutProvider {
  readonly name: ProviderName;
  /**
   * The provider sells only what it has an id for (a Lemon Squeezy variant, a Creem product): a
   * checkout for an item without one is refused before the provider is asked.
   */
  readonly needsPriceId: boolean;
  /** Creates the checkout; throws `CheckoutFailed` when the provider refuses or cannot be reached. */
  create(order: CheckoutOrder): Promise<CreatedCheckout>;
  /**
   * Only for providers whose approved checkout the merchant must still capture (PayPal orders):
   * takes the money; the provider's webhook that follows grants. Absent: the provider takes the
   * money itself when the buyer pays.
   */
  capture?(providerCheckoutId: string, checkoutId: string): Promise<{ status: string }>;
}

/** A provider's plug-in: its client, built once from its slice of the configuration (null: not configured). */
export type CheckoutPlugin<P extends ProviderName> = {
  readonly name: P;
  /** The settings that configure it, named in the 503 an unconfigured provider answers. */
  readonly settings: string;
  build(config: CheckoutConfig[P], clock: () => Date): CheckoutProvider | null;
};

/**
 * The provider refused the checkout (`refused`: a price id it does not know, a bad key) or could
 * not be asked (`unavailable`: unreachable, 5xx, timeout). The message names the provider's answer.
 */
export class CheckoutFailed extends Error {
  override name = 'CheckoutFailed';
  constructor(
    readonly kind: 'refused' | 'unavailable',
    message: string,
  ) {
    super(message);
  }
}

/** A JSON call to a provider's API, bounded by a timeout; unreachable → `unavailable`. */
export async function callJson(url: string, init: RequestInit, timeoutMs = 10_000): Promise<{ status: number; body: unknown }> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new CheckoutFailed('unavailable', `unreachable: ${(err as Error).message}`);
  }
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? (JSON.parse(text) as unknown) : null;
  } catch {
    body = null;
  }
  return { status: res.status, body };
}

/** A provider's non-2xx answer as a `CheckoutFailed`: 5xx and 429 are outages, the rest refusals. */
export function failure(provider: string, status: number, detail: string): CheckoutFailed {
  const kind = status >= 500 || status === 429 ? 'unavailable' : 'refused';
  return new CheckoutFailed(kind, `${provider} answered ${status}${detail ? `: ${detail.slice(0, 300)}` : ''}`);
}
