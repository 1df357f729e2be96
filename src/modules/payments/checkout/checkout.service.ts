import type { CheckoutConfig } from '../../../config/config.js';
import { errors } from '../../../core/errors.js';
import type { Logger } from '../../../core/logger.js';
import { assertSelfOrService, type Principal } from '../../../core/principal.js';
import type { Db, Executor } from '../../../db/database.js';
import { newId } from '../../../lib/ids.js';
import type { ProviderName } from '../payments.provider.js';
import { checkoutBody, type INTERVALS } from './checkout.js';
import { CheckoutFailed, type CheckoutOrder } from './checkout.provider.js';
import { CheckoutProviders } from './checkout.providers.js';
import * as repo from './checkout.repository.js';
import { compactToken, itemOf, type SignedFields, signedMetadata } from './checkout.signing.js';

export interface CheckoutInput {
  user_id?: string;
  package_id?: string;
  plan_id?: string;
  interval?: (typeof INTERVALS)[number];
  provider?: ProviderName;
  success_url: string;
  cancel_url?: string;
  expires_in_seconds?: number;
}

/**
 * Checkouts Tally creates and signs (docs/payments.md, "Checkouts"): the price, the item and the
 * buyer are Tally's — from the catalogue and the caller's identity — never the client's. Three
 * steps, no HTTP call inside a transaction: the checkout row is written (status `creating`), the
 * provider is asked, the row records its answer (`open` with the link, or `failed`).
 */
export class CheckoutService {
  private readonly providers: CheckoutProviders;

  constructor(
    private readonly db: Db,
    /** Signs with the first key (rotation: the others still verify, in the webhook). */
    private readonly keys: readonly Buffer[],
    config: CheckoutConfig | undefined,
    private readonly clock: () => Date,
    private readonly logger: Logger,
  ) {
    this.providers = new CheckoutProviders(config, clock);
  }

  async create(principal: Principal, input: CheckoutInput) {
    const userId = input.user_id ?? (principal.kind === 'user' ? principal.userId : null);
    if (!userId) throw errors.invalidRequest('Name the buyer: user_id', { field: 'user_id' });
    assertSelfOrService(principal, userId);
    if (Boolean(input.package_id) === Boolean(input.plan_id)) throw errors.invalidRequest('Name a package or a plan (one of them)', { field: 'package_id' });
    const key = this.keys[0];
    if (!key) throw errors.unavailable('No key to sign checkouts with');

    const { row, order } = await this.db.transaction().execute(async (trx) => this.prepare(trx, userId, input));
    const fields: SignedFields = {
      checkoutId: row.id,
      userId,
      item: itemOf(row),
      amount: Number(row.amount),
      currency: row.currency,
      expiresAt: row.expires_at as Date,
    };
    const provider = this.providers.require(row.provider as ProviderName);
    try {
      const created = await provider.create({ ...order, metadata: signedMetadata(key, fields), compactToken: compactToken(key, fields) });
      const open = await repo.checkoutUpdate(this.db, row.id, { status: 'open', provider_checkout_id: created.providerCheckoutId, url: created.url });
      return checkoutBody(open);
    } catch (err) {
      if (!(err instanceof CheckoutFailed)) throw err;
      this.logger.warn({ checkoutId: row.id, provider: row.provider, kind: err.kind, err: err.message }, 'checkout not created');
      await repo.checkoutUpdate(this.db, row.id, { status: 'failed', error: err.message.slice(0, 500) });
      const details = { provider: row.provider, checkout_id: row.id };
      if (err.kind === 'unavailable') throw errors.unavailable(`The ${row.provider} checkout could not be created: ${err.message}`, details);
      throw errors.invalidState(`${row.provider} refused the checkout: ${err.message}`, details);
    }
  }

  /**
   * Takes the money of an approved checkout whose provider leaves that to the merchant (PayPal
   * orders); the provider's webhook that follows grants, as for every checkout. Outside any
   * transaction (an HTTP call). Only an open checkout of such a provider (else 409); the buyer's own.
   */
  async capture(principal: Principal, id: string) {
    const row = await repo.checkoutFind(this.db, id);
    if (!row || (principal.kind !== 'service' && !(principal.kind === 'user' && principal.userId === row.user_id))) throw errors.notFound('Checkout', id);
    const provider = this.providers.require(row.provider as ProviderName);
    if (!provider.capture) throw errors.invalidState(`${row.provider} takes the money itself when the buyer pays: there is nothing to capture`, { provider: row.provider });
    if (row.status !== 'open' || !row.provider_checkout_id) throw errors.invalidState(`Checkout ${id} is ${row.status}`, { status: row.status });
    try {
      const captured = await provider.capture(row.provider_checkout_id, row.id);
      return { ...checkoutBody(row), provider_status: captured.status };
    } catch (err) {
      if (!(err instanceof CheckoutFailed)) throw err;
      const details = { provider: row.provider, checkout_id: row.id };
      if (err.kind === 'unavailable') throw errors.unavailable(`The ${row.provider} capture could not be made: ${err.message}`, details);
      throw errors.invalidState(`${row.provider} refused the capture: ${err.message}`, details);
    }
  }

  async get(db: Executor, principal: Principal, id: string) {
    const row = await repo.checkoutFind(db, id);
    if (!row) throw errors.notFound('Checkout', id);
    assertSelfOrService(principal, row.user_id);
    return checkoutBody(row);
  }

  /** Prices the item from the catalogue and writes the checkout row (its id is the nonce). */
  private async prepare(trx: Executor, userId: string, input: CheckoutInput) {
    const buyer = await repo.checkoutBuyer(trx, userId);
    if (!buyer) throw errors.notFound('User', userId);
    const now = this.clock();
    const expiresAt = new Date(Math.floor(now.getTime() / 1000) * 1000 + (input.expires_in_seconds ?? 86_400) * 1000);
    const base = { id: newId('checkout'), user_id: userId, status: 'creating', expires_at: expiresAt };
    let provider: ProviderName;
    let priced: { amount: number; currency: string; name: string; providerPriceId: string | null; kind: 'package' | 'plan'; itemId: string };
    let row: repo.CheckoutRow;
    if (input.package_id) {
      const pkg = await repo.checkoutPackage(trx, input.package_id);
      if (!pkg) throw errors.notFound('Credit package', input.package_id);
      if (!pkg.is_active) throw errors.invalidState(`Credit package ${pkg.id} is not active`);
      if (pkg.price_amount === null || pkg.currency === null || Number(pkg.price_amount) <= 0) {
        throw errors.invalidState(`Credit package ${pkg.id} has no price to sell it at`);
      }
      provider = pkg.provider as ProviderName;
      if (input.provider && input.provider !== provider) {
        throw errors.invalidRequest(`Credit package ${pkg.id} is sold through ${provider}, not ${input.provider}`, { field: 'provider' });
      }
      if (input.interval) throw errors.invalidRequest('interval is for plans', { field: 'interval' });
      priced = { amount: Number(pkg.price_amount), currency: pkg.currency, name: pkg.name, providerPriceId: pkg.provider_price_id, kind: 'package', itemId: pkg.id };
      this.providers.require(provider);
      row = await repo.checkoutInsert(trx, {
        ...base,
        provider,
        package_id: pkg.id,
        amount: priced.amount,
        currency: priced.currency,
        credits: Number(pkg.credits),
        credit_class: pkg.class,
        credits_expire_days: pkg.expires_in_days,
      });
    } else {
      const planId = String(input.plan_id);
      const plan = await repo.checkoutPlan(trx, planId);
      if (!plan) throw errors.notFound('Plan', planId);
      if (!plan.is_active) throw errors.invalidState(`Plan ${plan.id} is not active`);
      if (!input.provider) throw errors.invalidRequest('Name the provider to sell the plan through', { field: 'provider' });
      provider = input.provider;
      const interval = input.interval ?? (Number(plan.price_monthly) > 0 ? 'monthly' : 'yearly');
      const amount = Number(interval === 'monthly' ? plan.price_monthly : plan.price_yearly);
      if (amount <= 0) throw errors.invalidState(`Plan ${plan.id} has no ${interval} price`);
      const checkouts = this.providers.require(provider);
      const providerPriceId = await repo.checkoutPlanPrice(trx, provider, plan.id, interval);
      if (checkouts.needsPriceId && !providerPriceId) {
        throw errors.invalidState(`Plan ${plan.id} has no ${provider} price for ${interval} (billing's plan prices): ${provider} sells only what it has an id for`);
      }
      priced = { amount, currency: plan.currency, name: `${plan.name} (${interval})`, providerPriceId, kind: 'plan', itemId: plan.id };
      row = await repo.checkoutInsert(trx, { ...base, provider, plan_id: plan.id, billing_interval: interval, amount, currency: plan.currency });
    }
    const order: Omit<CheckoutOrder, 'metadata' | 'compactToken'> = {
      checkoutId: row.id,
      userId,
      email: buyer.email,
      item: { kind: priced.kind, id: priced.itemId, name: priced.name, providerPriceId: priced.providerPriceId },
      amount: priced.amount,
      currency: priced.currency,
      expiresAt,
      successUrl: input.success_url,
      cancelUrl: input.cancel_url ?? null,
    };
    return { row, order };
  }
}
