import type { Executor } from '../../db/database.js';
import type { DB } from '../../db/database.types.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';

/** The tables of a project's agent work, all keyed by project_id and listed newest first. */
export type ProjectChildTable = 'conversations' | 'agent_sessions' | 'messages' | 'tool_usages' | 'user_requests' | 'commits';

type Row = Record<string, unknown>;
const JSON_COLUMNS = new Set(['settings', 'context', 'metadata', 'input_data', 'output_data', 'files_affected', 'result_metadata', 'files_changed', 'stats', 'service_data', 'config']);

/** jsonb columns are written as JSON text (Kysely passes values through as parameters). */
export function jsonColumns(values: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue;
    out[k] = JSON_COLUMNS.has(k) && v !== null ? JSON.stringify(v) : v;
  }
  return out;
}

export async function projectInsert(db: Executor, values: Row): Promise<Row> {
  return db.insertInto('projects').values(jsonColumns(values) as never).returningAll().executeTakeFirstOrThrow();
}

export async function projectFind(db: Executor, id: string) {
  return db.selectFrom('projects').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function projectUpdate(db: Executor, id: string, patch: Row): Promise<Row | undefined> {
  return db.updateTable('projects').set(jsonColumns(patch) as never).where('id', '=', id).returningAll().executeTakeFirst();
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


export async function childInsert(db: Executor, table: ProjectChildTable, values: Row): Promise<Row> {
  return db.insertInto(table).values(jsonColumns(values) as never).returningAll().executeTakeFirstOrThrow() as Promise<Row>;
}

export async function childFind(db: Executor, table: ProjectChildTable, projectId: string, id: string): Promise<Row | undefined> {
  return db
    .selectFrom(table as keyof DB & ProjectChildTable)
    .selectAll()
    .where('id' as never, '=', id as never)
    .where('project_id' as never, '=', projectId as never)
    .executeTakeFirst() as Promise<Row | undefined>;
}

export async function childUpdate(db: Executor, table: ProjectChildTable, projectId: string, id: string, patch: Row): Promise<Row | undefined> {
  return db
    .updateTable(table)
    .set(jsonColumns(patch) as never)
    .where('id' as never, '=', id as never)
    .where('project_id' as never, '=', projectId as never)
    .returningAll()
    .executeTakeFirst() as Promise<Row | undefined>;
}

export async function childList(
  db: Executor,
  table: ProjectChildTable,
  projectId: string,
  page: PageRequest,
  filters: Record<string, string | undefined> = {},
): Promise<(Row & { cursor_us: number; id: string })[]> {
  let q = db
    .selectFrom(table as 'messages')
    .selectAll()
    .select(cursorColumn(table).as('cursor_us'))
    .where('project_id', '=', projectId);
  for (const [col, v] of Object.entries(filters)) if (v !== undefined) q = q.where(col as 'id', '=', v);
  if (page.after) q = q.where(cursorBefore(table, page.after));
  return (await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute()) as never;
}
