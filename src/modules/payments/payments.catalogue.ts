import type { Updateable } from 'kysely';
import type { PaymentsConfig } from '../../config/config.js';
import type { CreditPackages } from '../../db/database.types.js';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { type PageRequest, toPage } from '../../core/paging.js';
import { newId } from '../../lib/ids.js';
import { creditPackageBody, type PaymentFacts } from './payments.js';
import type { ProviderSubscriptionSync } from './payments.ports.js';
import type { ProviderName } from './payments.provider.js';
import type { CheckoutReference } from './payments.reference.js';
import * as repo from './payments.repository.js';

/** What a payment buys; frozen on its row when priced (a package changed later changes nothing). */
export interface Purchase {
  credits: number;
  class: string;
  /** Days from the grant until the credits expire (a package's; null: never). */
  expireDays: number | null;
  packageId: string | null;
  planId: string | null;
  interval: ProviderSubscriptionSync['interval'];
}

/** A price check's outcome; `purchase` is what it would buy (kept on the row even when not ok). */
export type Priced = { ok: true; purchase: Purchase } | { ok: false; reason: string; purchase: Purchase };

const NOTHING: Purchase = { credits: 0, class: 'default', expireDays: null, packageId: null, planId: null, interval: null };

/**
 * The catalogue: what a payment can buy — credit packages (service CRUD here), plans through
 * billing's `plan_prices`, and the configured credit price — and the price check that decides it.
 * Only server-side configuration decides: metadata is the buyer's to set on some providers'
 * checkout links, so it never chooses credits, a package or a plan.
 */
export class Catalogue {
  constructor(private readonly creditPrice: PaymentsConfig['creditPrice'] | null) {}

  /**
   * What a payment buys: the credit package its price/variant/product id maps to, or the package a
   * signed checkout reference names — at that package's price, net of tax, in its currency; for a
   * one-time payment, else the plan its price (or the reference) names, at the plan's price; else
   * the configured credit price, floor(net ÷ price). A subscription's payment buys only a package
   * (its plan comes through billing's port). Anything else — a price that does not match, a
   * package without a price, a one-time payment that buys nothing — is not ok: it never grants.
   */
  async purchaseOf(trx: Executor, provider: ProviderName, p: PaymentFacts, ref: CheckoutReference | null): Promise<Priced> {
    const ok = (purchase: Purchase): Priced => ({ ok: true, purchase });
    const fail = (reason: string, purchase: Purchase = NOTHING): Priced => ({ ok: false, reason, purchase });
    const net = p.amount - (p.tax ?? 0);
    const paid = `paid ${net} ${p.currency}${p.tax ? ` (net of ${p.tax} tax)` : ''}`;

    const byPrice = await repo.packageByPrice(trx, provider, p.priceIds);
    let pkg = byPrice;
    if (ref?.packageId) {
      const named = await repo.packageFind(trx, ref.packageId);
      if (!named || named.provider !== provider || !named.is_active) {
        return fail(`the checkout reference names package ${ref.packageId}, which is not an active ${provider} package`);
      }
      if (byPrice && byPrice.id !== named.id) {
        return fail(`the checkout reference names package ${named.id}, but the price paid is package ${byPrice.id}`, fromPackage(named));
      }
      pkg = named;
    }
    if (pkg) {
      const bought = fromPackage(pkg);
      const packageId = pkg.id;
      const price = pkg.price_amount;
      const currency = pkg.currency;
      if (price === null || currency === null) return fail(`package ${packageId} has no price to check the payment against`, bought);
      if (price !== net || currency !== p.currency) return fail(`package ${packageId} costs ${price} ${currency}; ${paid}`, bought);
      return ok(bought);
    }
    if (p.providerSubscriptionId) return ok(NOTHING);

    const plan = ref?.planId ? await repo.planFind(trx, ref.planId) : await repo.planByPrice(trx, provider, p.priceIds);
    if (ref?.planId && !plan) return fail(`the checkout reference names plan ${ref.planId}, which does not exist`);
    if (plan) {
      const planId = plan.id;
      // A missing price reads as 0 (never a hit), as before.
      const prices: Array<[NonNullable<Purchase['interval']>, number]> = [
        ['monthly', plan.price_monthly ?? 0],
        ['yearly', plan.price_yearly ?? 0],
      ];
      const allowed = plan.billing_interval ? prices.filter(([i]) => i === plan.billing_interval) : prices;
      const hit = allowed.find(([, price]) => price > 0 && price === net);
      if (!plan.is_active) return fail(`plan ${planId} is not active`);
      if (!hit || plan.currency !== p.currency) {
        return fail(`plan ${planId} costs ${allowed.map(([i, price]) => `${price} ${plan.currency} ${i}`).join(' or ')}; ${paid}`);
      }
      return ok({ ...NOTHING, planId, interval: hit[0] });
    }
    const unit = this.creditPrice;
    if (unit && unit.currency === p.currency && net >= unit.unitAmount) return ok({ ...NOTHING, credits: Math.floor(net / unit.unitAmount) });
    return fail(`it buys nothing: no package or plan for its price${p.priceIds.length ? ` (${p.priceIds.join(', ')})` : ''} and no credit price in ${p.currency}`);
  }

  // Credit packages (service CRUD) ---------------------------------------------------------------

  async createPackage(db: Executor, b: PackageInput & { name: string; credits: number; provider: ProviderName; provider_price_id: string }) {
    const row = await repo.packageInsert(db, { id: newId('creditPackage'), ...packageRow(b) });
    return creditPackageBody(row);
  }

  async getPackage(db: Executor, id: string) {
    const row = await repo.packageFind(db, id);
    if (!row) throw errors.notFound('Credit package', id);
    return creditPackageBody(row);
  }

  /** Payments already made keep what they bought: it is frozen on their rows. */
  async updatePackage(db: Executor, id: string, b: PackageInput) {
    const row = await repo.packageUpdate(db, id, packageRow(b));
    if (!row) throw errors.notFound('Credit package', id);
    return creditPackageBody(row);
  }

  async deletePackage(db: Executor, id: string) {
    if (!(await repo.packageDelete(db, id))) throw errors.notFound('Credit package', id);
    return { id, deleted: true as const };
  }

  async packages(db: Executor, page: PageRequest) {
    return toPage(await repo.packagesPage(db, page), page.limit, creditPackageBody);
  }
}

function fromPackage(pkg: repo.PackageRow): Purchase {
  return {
    credits: pkg.credits,
    class: pkg.class,
    expireDays: pkg.expires_in_days,
    packageId: pkg.id,
    planId: null,
    interval: null,
  };
}

interface PackageInput {
  name?: string;
  credits?: number;
  class?: string;
  expires_in_days?: number | null;
  price_amount?: number | null;
  currency?: string | null;
  is_active?: boolean;
  metadata?: Record<string, unknown>;
}

function packageRow<T extends PackageInput & { provider?: string; provider_price_id?: string }>(b: T): Omit<T, 'metadata'> & Updateable<CreditPackages> {
  const { metadata, ...rest } = b;
  return { ...rest, ...(metadata !== undefined ? { metadata: JSON.stringify(metadata) } : {}) };
}
