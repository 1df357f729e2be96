import type { Insertable, Updateable } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { CostModels, PlanAllowances, PlanPrices, Plans } from '../../db/database.types.js';
import type { CostModelRow, PlanAllowanceRow, PlanPriceRow, PlanRow } from './billing.js';

/**
 * The catalogue's SQL: plans, their allowances and provider prices, and cost models. Every function
 * takes the executor first (the caller owns the transaction) and returns generated row types;
 * `billing.ts` maps them to API shapes (planOf, costModelOf).
 */

// ---- plans ---------------------------------------------------------------------------------

/** A plan that already has this id, slug or name (a new plan may share none of them). */
export async function planFindClash(db: Executor, key: { id: string; slug: string; name: string }) {
  return db
    .selectFrom('plans')
    .select(['id', 'slug', 'name'])
    .where((eb) => eb.or([eb('id', '=', key.id), eb('slug', '=', key.slug), eb('name', '=', key.name)]))
    .executeTakeFirst();
}

/** Another plan with this name. */
export async function planFindNameClash(db: Executor, name: string, exceptId: string) {
  return db.selectFrom('plans').select('id').where('name', '=', name).where('id', '<>', exceptId).executeTakeFirst();
}

export async function planInsert(db: Executor, values: Insertable<Plans>): Promise<void> {
  await db.insertInto('plans').values(values).execute();
}

/** Locks a plan (by id or slug) for an update and reads what the update's rules need. */
export async function planLockForUpdate(db: Executor, idOrSlug: string) {
  return db
    .selectFrom('plans')
    .select(['id', 'price_monthly', 'price_yearly'])
    .where((eb) => eb.or([eb('id', '=', idOrSlug), eb('slug', '=', idOrSlug)]))
    .forUpdate()
    .executeTakeFirst();
}

/** Sets the given columns (an undefined value leaves its column alone); nothing given, nothing written. */
export async function planUpdate(db: Executor, id: string, set: Updateable<Plans>): Promise<void> {
  if (Object.values(set).every((v) => v === undefined)) return;
  await db.updateTable('plans').set(set).where('id', '=', id).execute();
}

export async function planFind(db: Executor, idOrSlug: string): Promise<PlanRow | undefined> {
  return db
    .selectFrom('plans')
    .selectAll()
    .where((eb) => eb.or([eb('id', '=', idOrSlug), eb('slug', '=', idOrSlug)]))
    .executeTakeFirst();
}

export async function planList(db: Executor, opts: { includeInactive: boolean }): Promise<PlanRow[]> {
  let q = db.selectFrom('plans').selectAll().orderBy('sort_order').orderBy('created_at').orderBy('id');
  if (!opts.includeInactive) q = q.where('is_active', '=', true);
  return q.limit(500).execute();
}

// ---- allowances and provider prices --------------------------------------------------------

/** The allowances and provider prices of these plans, in the order the API lists them. */
export async function planPartsOf(db: Executor, planIds: string[]): Promise<{ allowances: PlanAllowanceRow[]; prices: PlanPriceRow[] }> {
  const [allowances, prices] = await Promise.all([
    db.selectFrom('plan_allowances').selectAll().where('plan_id', 'in', planIds).orderBy('class').orderBy('window').execute(),
    db.selectFrom('plan_prices').selectAll().where('plan_id', 'in', planIds).orderBy('provider').orderBy('provider_price_id').execute(),
  ]);
  return { allowances, prices };
}

export async function planAllowancesReplace(db: Executor, planId: string, rows: Omit<Insertable<PlanAllowances>, 'plan_id'>[]): Promise<void> {
  await db.deleteFrom('plan_allowances').where('plan_id', '=', planId).execute();
  if (rows.length === 0) return;
  await db
    .insertInto('plan_allowances')
    .values(rows.map((r) => ({ ...r, plan_id: planId })))
    .execute();
}

/** A price among these that already buys another plan. */
export async function planPriceFindTaken(db: Executor, planId: string, prices: { provider: string; provider_price_id: string }[]) {
  if (prices.length === 0) return undefined;
  return db
    .selectFrom('plan_prices')
    .select(['provider', 'provider_price_id', 'plan_id'])
    .where('plan_id', '<>', planId)
    .where((eb) => eb.or(prices.map((p) => eb.and([eb('provider', '=', p.provider), eb('provider_price_id', '=', p.provider_price_id)]))))
    .executeTakeFirst();
}

export async function planPricesReplace(db: Executor, planId: string, rows: Omit<Insertable<PlanPrices>, 'plan_id'>[]): Promise<void> {
  await db.deleteFrom('plan_prices').where('plan_id', '=', planId).execute();
  if (rows.length === 0) return;
  await db
    .insertInto('plan_prices')
    .values(rows.map((r) => ({ ...r, plan_id: planId })))
    .execute();
}

/** The plan a provider price buys, and on which interval. */
export async function planPriceFind(db: Executor, provider: string, providerPriceId: string) {
  return db
    .selectFrom('plan_prices')
    .select(['plan_id', 'billing_interval'])
    .where('provider', '=', provider)
    .where('provider_price_id', '=', providerPriceId)
    .executeTakeFirst();
}

// ---- cost models ---------------------------------------------------------------------------

export async function costModelFind(db: Executor, metric: string): Promise<CostModelRow | undefined> {
  return db.selectFrom('cost_models').selectAll().where('metric', '=', metric).executeTakeFirst();
}

export async function costModelInsert(db: Executor, values: Insertable<CostModels>): Promise<CostModelRow> {
  return db.insertInto('cost_models').values(values).returningAll().executeTakeFirstOrThrow();
}

/** Sets the given columns; undefined: no such cost model. */
export async function costModelUpdate(db: Executor, metric: string, set: Updateable<CostModels>): Promise<CostModelRow | undefined> {
  return db.updateTable('cost_models').set(set).where('metric', '=', metric).returningAll().executeTakeFirst();
}

export async function costModelList(db: Executor, opts: { includeInactive: boolean }): Promise<CostModelRow[]> {
  let q = db.selectFrom('cost_models').selectAll().orderBy('metric');
  if (!opts.includeInactive) q = q.where('is_active', '=', true);
  return q.limit(1000).execute();
}
