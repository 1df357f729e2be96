import type { Insertable, Selectable, Updateable } from 'kysely';
import type { Executor } from '../../../db/database.js';
import type { Checkouts } from '../../../db/database.types.js';
import type { ProviderName } from '../payments.provider.js';

/** SQL for checkouts. Functions take the executor first (the caller owns the transaction). */
export type CheckoutRow = Selectable<Checkouts>;

export async function checkoutInsert(db: Executor, row: Insertable<Checkouts>): Promise<CheckoutRow> {
  return db.insertInto('checkouts').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function checkoutUpdate(db: Executor, id: string, patch: Updateable<Checkouts>): Promise<CheckoutRow> {
  return db.updateTable('checkouts').set(patch).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
}

/** The columns a checkout's buyer may read (RLS and column grants: 0024_checkouts.sql). */
export const CHECKOUT_COLUMNS = [
  'id', 'user_id', 'provider', 'package_id', 'plan_id', 'billing_interval', 'amount', 'currency', 'credits', 'status',
  'provider_checkout_id', 'url', 'payment_id', 'expires_at', 'completed_at', 'created_at', 'updated_at',
] as const;
export type CheckoutView = Pick<CheckoutRow, (typeof CHECKOUT_COLUMNS)[number]>;

export async function checkoutFind(db: Executor, id: string): Promise<CheckoutView | undefined> {
  return db.selectFrom('checkouts').select([...CHECKOUT_COLUMNS]).where('id', '=', id).executeTakeFirst();
}

/** The checkout, locked for the webhook's transaction: two payments racing for it take turns. */
export async function checkoutLock(db: Executor, id: string): Promise<CheckoutRow | undefined> {
  return db.selectFrom('checkouts').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

/** The buyer: their address, to prefill the checkout (null: no such user). */
export async function checkoutBuyer(db: Executor, userId: string): Promise<{ email: string | null } | undefined> {
  return db.selectFrom('users').select('email').where('id', '=', userId).executeTakeFirst();
}

export async function checkoutPackage(db: Executor, id: string) {
  return db
    .selectFrom('credit_packages')
    .select(['id', 'name', 'provider', 'provider_price_id', 'credits', 'class', 'expires_in_days', 'price_amount', 'currency', 'is_active'])
    .where('id', '=', id)
    .executeTakeFirst();
}

export async function checkoutPlan(db: Executor, id: string) {
  return db.selectFrom('plans').select(['id', 'name', 'price_monthly', 'price_yearly', 'currency', 'is_active']).where('id', '=', id).executeTakeFirst();
}

/** The provider's price id for a plan at an interval (billing's `plan_prices`), if it has one. */
export async function checkoutPlanPrice(db: Executor, provider: ProviderName, planId: string, interval: 'monthly' | 'yearly'): Promise<string | null> {
  const row = await db
    .selectFrom('plan_prices')
    .select('provider_price_id')
    .where('provider', '=', provider)
    .where('plan_id', '=', planId)
    .where('billing_interval', '=', interval)
    .orderBy('created_at')
    .executeTakeFirst();
  return row?.provider_price_id ?? null;
}
