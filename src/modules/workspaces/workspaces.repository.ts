import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';
import { accountIdOf } from '../credits/credits.port.js';
import type { MemberRow, WorkspaceRole, WorkspaceRow } from './workspaces.js';

export async function workspaceInsert(
  db: Executor,
  row: { id: string; name: string; slug: string; description: string | null; owner_id: string; settings: Record<string, unknown> },
): Promise<WorkspaceRow> {
  return db
    .insertInto('workspaces')
    .values({ ...row, settings: JSON.stringify(row.settings) })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function workspaceFindById(db: Executor, id: string): Promise<WorkspaceRow | undefined> {
  return db.selectFrom('workspaces').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function workspaceSlugTaken(db: Executor, slug: string, exceptId?: string): Promise<boolean> {
  let q = db.selectFrom('workspaces').select('id').where('slug', '=', slug);
  if (exceptId) q = q.where('id', '<>', exceptId);
  return (await q.executeTakeFirst()) !== undefined;
}

export async function workspaceUpdate(
  db: Executor,
  id: string,
  patch: { name?: string; slug?: string; description?: string | null; settings?: Record<string, unknown>; is_active?: boolean },
): Promise<WorkspaceRow | undefined> {
  const { settings, ...rest } = patch;
  return db
    .updateTable('workspaces')
    .set({ ...rest, ...(settings !== undefined ? { settings: JSON.stringify(settings) } : {}) })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

export async function workspaceHasLedger(db: Executor, id: string): Promise<boolean> {
  const row = await db
    .selectFrom('credit_ledger')
    .select('id')
    .where('account_id', '=', accountIdOf({ workspaceId: id }))
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

export async function workspaceDelete(db: Executor, id: string): Promise<boolean> {
  const res = await db.deleteFrom('workspaces').where('id', '=', id).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

/** Workspaces newest first; `memberId` limits them to one user's (the service may list all). */
export async function workspaceList(db: Executor, page: PageRequest, memberId: string | null) {
  let q = db.selectFrom('workspaces').selectAll('workspaces').select(cursorColumn('workspaces').as('cursor_us'));
  if (memberId) {
    q = q.where((eb) =>
      eb.exists(
        eb
          .selectFrom('workspace_members')
          .select('workspace_members.user_id')
          .whereRef('workspace_members.workspace_id', '=', 'workspaces.id')
          .where('workspace_members.user_id', '=', memberId),
      ),
    );
  }
  if (page.after) q = q.where(cursorBefore('workspaces', page.after));
  return q.orderBy('workspaces.created_at', 'desc').orderBy('workspaces.id', 'desc').limit(page.limit + 1).execute();
}

export async function memberRole(db: Executor, workspaceId: string, userId: string): Promise<WorkspaceRole | null> {
  const row = await db
    .selectFrom('workspace_members')
    .select('role')
    .where('workspace_id', '=', workspaceId)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return (row?.role as WorkspaceRole | undefined) ?? null;
}

export async function memberInsert(
  db: Executor,
  row: { workspace_id: string; user_id: string; role: WorkspaceRole; invited_by: string | null },
): Promise<MemberRow> {
  return db.insertInto('workspace_members').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function memberUpdateRole(db: Executor, workspaceId: string, userId: string, role: WorkspaceRole) {
  return db
    .updateTable('workspace_members')
    .set({ role })
    .where('workspace_id', '=', workspaceId)
    .where('user_id', '=', userId)
    .returningAll()
    .executeTakeFirst();
}

export async function memberDelete(db: Executor, workspaceId: string, userId: string): Promise<boolean> {
  const res = await db
    .deleteFrom('workspace_members')
    .where('workspace_id', '=', workspaceId)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return res.numDeletedRows > 0n;
}

/** Members newest first, like every list; the member's user id is the cursor's tiebreaker. */
export async function memberList(db: Executor, workspaceId: string, page: PageRequest) {
  let q = db
    .selectFrom('workspace_members')
    .selectAll()
    .select(cursorColumn('workspace_members').as('cursor_us'))
    .select('workspace_members.user_id as id')
    .where('workspace_id', '=', workspaceId);
  if (page.after) q = q.where(cursorBefore('workspace_members', page.after, 'user_id'));
  return q.orderBy('workspace_members.created_at', 'desc').orderBy('workspace_members.user_id', 'desc').limit(page.limit + 1).execute();
}
