import type { BatchContext } from './import.js';

/** The Tally plan an imported subscription joins, and whether the deployment offers it. */
export interface ImportedPlan {
  id: string;
  /** Active, or made for this import (inactive until the operator prices it). */
  offered: boolean;
}

/**
 * The Tally plan of a plan the source knows only by name (003's `subscriptions.plan`, 001's
 * `plan_type`): the deployment's plan with that slug, or — when it has none — one made for the
 * import, **inactive, price 0 and no allowances** (`plan_imported_<slug>`), for the operator to price.
 * The source never said what the plan cost or granted, so the import never invents it
 * (docs/import.md, foundation and video-credits).
 */
export async function importedPlanOf(ctx: BatchContext, slug: string, shape: string): Promise<ImportedPlan> {
  await ctx.trx
    .insertInto('plans')
    .values({ id: `plan_imported_${slug}`, slug, name: `${slug[0]?.toUpperCase()}${slug.slice(1)} (imported)`, is_active: false, price_monthly: 0, metadata: JSON.stringify({ imported_from: shape, made_for_import: true }) })
    .onConflict((oc) => oc.doNothing())
    .execute();
  const row = await ctx.trx.selectFrom('plans').select(['id', 'is_active']).where('slug', '=', slug).executeTakeFirst();
  if (!row) throw new Error(`no plan ${slug} after making it (a plan of that name but another slug?)`);
  return { id: row.id, offered: row.is_active || row.id === `plan_imported_${slug}` };
}

/**
 * How an imported subscription may renew (attacker review 5). A hostile source names any plan — a
 * deployment's paid one, or an internal one it does not offer — for any user. Linked to a provider
 * subscription, the provider's paid invoices renew it (docs/billing.md). Without a link nobody pays
 * for it, so it is the user's own (`self_service`): it renews only while its plan is free, and a
 * paid plan — or one the operator prices later — ends at the period's end; on a plan the deployment
 * does not offer it ends there whatever the price. The current period stays (its credits are already
 * in the opening balance); allowances would open only at its end.
 */
export function renewalTerms(plan: ImportedPlan, linked: boolean): { self_service: boolean; cancel_at_period_end: boolean } {
  if (linked) return { self_service: false, cancel_at_period_end: false };
  return { self_service: true, cancel_at_period_end: !plan.offered };
}
