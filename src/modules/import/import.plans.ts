import type { BatchContext } from './import.js';

/**
 * The Tally plan of a plan the source knows only by name (003's `subscriptions.plan`, 001's
 * `plan_type`): the deployment's plan with that slug, or — when it has none — one made for the
 * import, **inactive, price 0 and no allowances** (`plan_imported_<slug>`), for the operator to price.
 * The source never said what the plan cost or granted, so the import never invents it
 * (docs/import.md, foundation and video-credits).
 */
export async function importedPlanOf(ctx: BatchContext, slug: string, shape: string): Promise<string> {
  await ctx.trx
    .insertInto('plans')
    .values({ id: `plan_imported_${slug}`, slug, name: `${slug[0]?.toUpperCase()}${slug.slice(1)} (imported)`, is_active: false, price_monthly: 0, metadata: JSON.stringify({ imported_from: shape, made_for_import: true }) })
    .onConflict((oc) => oc.doNothing())
    .execute();
  const row = await ctx.trx.selectFrom('plans').select('id').where('slug', '=', slug).executeTakeFirst();
  if (!row) throw new Error(`no plan ${slug} after making it (a plan of that name but another slug?)`);
  return row.id;
}
