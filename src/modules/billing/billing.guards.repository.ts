import type { Insertable, Updateable } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { BudgetGuards, OverageCharges } from '../../db/database.types.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import type { PageRequest } from '../../core/paging.js';
import type { BudgetGuardRow, OverageChargeRow } from './billing.js';

/** Budget guards' and overage charges' SQL (executor first; guardOf and overageChargeOf map the rows). */

/** The user, and the zone a new guard takes when none is given. */
export async function userFindZone(db: Executor, userId: string) {
  return db.selectFrom('users').select(['id', 'time_zone']).where('id', '=', userId).executeTakeFirst();
}

/** Inserts the user's guard, or on conflict (one per user) sets `onConflict` on the one there. */
export async function guardUpsert(db: Executor, values: Insertable<BudgetGuards>, onConflict: Updateable<BudgetGuards>): Promise<BudgetGuardRow> {
  return db
    .insertInto('budget_guards')
    .values(values)
    .onConflict((oc) => oc.column('user_id').doUpdateSet(onConflict))
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function guardFind(db: Executor, userId: string): Promise<BudgetGuardRow | undefined> {
  return db.selectFrom('budget_guards').selectAll().where('user_id', '=', userId).executeTakeFirst();
}

/** Deletes the user's guard; undefined: there was none. */
export async function guardDelete(db: Executor, userId: string) {
  return db.deleteFrom('budget_guards').where('user_id', '=', userId).returning('id').executeTakeFirst();
}

/** A page of the user's overage charges, newest first (limit + 1 rows: the extra says there is more). */
export async function overageChargePage(db: Executor, userId: string, page: PageRequest): Promise<(OverageChargeRow & { cursor_us: number })[]> {
  let q = db
    .selectFrom('overage_charges')
    .selectAll()
    .select(cursorColumn('overage_charges').as('cursor_us'))
    .where('user_id', '=', userId)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(page.limit + 1);
  if (page.after) q = q.where(cursorBefore('overage_charges', page.after));
  return q.execute();
}

/** Locks an overage charge (FOR UPDATE) and reads its status. */
export async function overageChargeLock(db: Executor, id: string) {
  return db.selectFrom('overage_charges').select(['id', 'status']).where('id', '=', id).forUpdate().executeTakeFirst();
}

export async function overageChargeUpdate(db: Executor, id: string, set: Updateable<OverageCharges>): Promise<OverageChargeRow> {
  return db.updateTable('overage_charges').set(set).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
}
