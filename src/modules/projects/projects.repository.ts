import { type Insertable, sql, type Updateable } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { DB } from '../../db/database.types.js';
import { encodeJson, type NewRow, type RowOf, type RowPatch } from '../../db/rows.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';

/** The tables of a project's agent work, all keyed by project_id and listed newest first. */
export type ProjectChildTable = 'conversations' | 'agent_sessions' | 'messages' | 'tool_usages' | 'user_requests' | 'commits';

/** The jsonb columns of these tables: written as JSON text (src/db/rows.ts, encodeJson). */
const JSON_COLUMNS: ReadonlySet<string> = new Set([
  'settings', 'context', 'metadata', 'input_data', 'output_data', 'files_affected', 'result_metadata', 'files_changed', 'stats', 'service_data', 'config',
]);

export type ProjectRow = RowOf<'projects'>;
/** A row of one of a project's agent-work tables, as stored. */
export type ChildRow<T extends ProjectChildTable> = RowOf<T>;

export async function projectInsert(db: Executor, values: NewRow<'projects'>): Promise<ProjectRow> {
  return db.insertInto('projects').values(encodeJson(values, JSON_COLUMNS) as Insertable<DB['projects']>).returningAll().executeTakeFirstOrThrow();
}

export async function projectFind(db: Executor, id: string) {
  return db.selectFrom('projects').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function projectUpdate(db: Executor, id: string, patch: RowPatch<'projects'>): Promise<ProjectRow | undefined> {
  return db.updateTable('projects').set(encodeJson(patch, JSON_COLUMNS) as Updateable<DB['projects']>).where('id', '=', id).returningAll().executeTakeFirst();
}

export async function projectDelete(db: Executor, id: string): Promise<boolean> {
  const res = await db.deleteFrom('projects').where('id', '=', id).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

/** Projects a user may see (own, and their workspaces'), or one owner's. */
export async function projectList(db: Executor, page: PageRequest, filter: { memberId?: string; userId?: string; workspaceId?: string }) {
  let q = db.selectFrom('projects').selectAll('projects').select(cursorColumn('projects').as('cursor_us'));
  if (filter.memberId) {
    const member = filter.memberId;
    q = q.where((eb) =>
      eb.or([
        eb('projects.user_id', '=', member),
        eb('projects.workspace_id', 'in', eb.selectFrom('workspace_members').select('workspace_id').where('user_id', '=', member)),
      ]),
    );
  }
  if (filter.userId) q = q.where('projects.user_id', '=', filter.userId);
  if (filter.workspaceId) q = q.where('projects.workspace_id', '=', filter.workspaceId);
  if (page.after) q = q.where(cursorBefore('projects', page.after));
  return q.orderBy('projects.created_at', 'desc').orderBy('projects.id', 'desc').limit(page.limit + 1).execute();
}

/*
 * The agent-work tables share one shape of access (by project id and row id), so these are generic
 * over the table: the values, patches and rows are the generated types of that table. Kysely cannot
 * resolve a column reference on a table-generic builder, so each statement is built on one member
 * of the union (`messages`, which has every column used here) and its row retyped as T's: the
 * typed signatures, not the builder, are what callers are checked against.
 */
type Builder = 'messages';

export async function childInsert<T extends ProjectChildTable>(db: Executor, table: T, values: NewRow<T>): Promise<ChildRow<T>> {
  const row = await db
    .insertInto(table as Builder)
    .values(encodeJson(values, JSON_COLUMNS) as Insertable<DB[Builder]>)
    .returningAll()
    .executeTakeFirstOrThrow();
  return row as unknown as ChildRow<T>;
}

export async function childFind<T extends ProjectChildTable>(db: Executor, table: T, projectId: string, id: string): Promise<ChildRow<T> | undefined> {
  const row = await db.selectFrom(table as Builder).selectAll().where('id', '=', id).where('project_id', '=', projectId).executeTakeFirst();
  return row as unknown as ChildRow<T> | undefined;
}

export async function childUpdate<T extends ProjectChildTable>(db: Executor, table: T, projectId: string, id: string, patch: RowPatch<T>): Promise<ChildRow<T> | undefined> {
  const row = await db
    .updateTable(table as Builder)
    .set(encodeJson(patch, JSON_COLUMNS) as Updateable<DB[Builder]>)
    .where('id', '=', id)
    .where('project_id', '=', projectId)
    .returningAll()
    .executeTakeFirst();
  return row as unknown as ChildRow<T> | undefined;
}

/** Equality filters on columns of T (the routes' query parameters of the same name). */
export type ChildFilters<T extends ProjectChildTable> = Partial<Record<keyof ChildRow<T> & string, string | undefined>>;

export async function childList<T extends ProjectChildTable>(
  db: Executor,
  table: T,
  projectId: string,
  page: PageRequest,
  filters: ChildFilters<T> = {},
): Promise<(ChildRow<T> & { cursor_us: number })[]> {
  let q = db
    .selectFrom(table as Builder)
    .selectAll()
    .select(cursorColumn(table).as('cursor_us'))
    .where('project_id', '=', projectId);
  for (const [col, v] of Object.entries(filters)) if (v !== undefined) q = q.where(sql.ref(col), '=', v);
  if (page.after) q = q.where(cursorBefore(table, page.after));
  const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
  return rows as unknown as (ChildRow<T> & { cursor_us: number })[];
}
