import type { Executor } from '../../db/database.js';
import type { SpendCapRow } from './workspaces.spend-caps.js';

const COLUMNS = ['workspace_id', 'user_id', 'amount', 'period', 'set_by', 'updated_at'] as const;

export async function spendCapFind(db: Executor, workspaceId: string, userId: string): Promise<SpendCapRow | undefined> {
  return db.selectFrom('workspace_spend_caps').select(COLUMNS).where('workspace_id', '=', workspaceId).where('user_id', '=', userId).executeTakeFirst();
}

export async function spendCapUpsert(db: Executor, row: { workspace_id: string; user_id: string; amount: number; period: string; set_by: string | null }): Promise<SpendCapRow> {
  return db
    .insertInto('workspace_spend_caps')
    .values(row)
    .onConflict((oc) => oc.columns(['workspace_id', 'user_id']).doUpdateSet({ amount: row.amount, period: row.period, set_by: row.set_by }))
    .returning(COLUMNS)
    .executeTakeFirstOrThrow();
}

export async function spendCapDelete(db: Executor, workspaceId: string, userId: string): Promise<boolean> {
  const res = await db.deleteFrom('workspace_spend_caps').where('workspace_id', '=', workspaceId).where('user_id', '=', userId).executeTakeFirst();
  return Number(res.numDeletedRows) > 0;
}
