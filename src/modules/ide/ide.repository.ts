import { type Insertable, sql, type Updateable } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { DB } from '../../db/database.types.js';
import { encodeJson, type NewRow, type RowOf, type RowPatch } from '../../db/rows.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import type { PageRequest } from '../../core/paging.js';

/**
 * SQL for the six IDE tables. Each table's readable columns are listed once (the git credentials'
 * ciphertext is not among them: only `gitCredentialsRead` selects it). The caller owns the
 * transaction; every statement is scoped by project id as well as row id.
 */
export type IdeTable = 'editor_sessions' | 'terminal_sessions' | 'code_executions' | 'code_analyses' | 'git_repositories' | 'deployments';

export const IDE_COLUMNS = {
  editor_sessions: ['id', 'project_id', 'user_id', 'status', 'open_files', 'active_file_id', 'layout_state', 'last_active_at', 'closed_at', 'created_at', 'updated_at'],
  terminal_sessions: [
    'id', 'project_id', 'user_id', 'shell', 'working_directory', 'command', 'status', 'output', 'exit_code', 'duration_ms', 'started_at', 'ended_at',
    'created_at', 'updated_at',
  ],
  code_executions: [
    'id', 'project_id', 'user_id', 'language', 'source_code', 'file_version_id', 'stdin', 'stdout', 'stderr', 'compile_output', 'status',
    'status_detail', 'exit_code', 'execution_time_ms', 'memory_kb', 'external_token', 'started_at', 'finished_at', 'created_at', 'updated_at',
    'hold_id',
  ],
  code_analyses: ['id', 'project_id', 'file_path', 'analysis_type', 'result', 'model', 'created_by', 'expires_at', 'created_at', 'updated_at'],
  git_repositories: [
    'id', 'project_id', 'provider', 'repo_url', 'repo_full_name', 'default_branch', 'last_sync_at', 'sync_status', 'key_id', 'credentials_hint',
    'created_by', 'created_at', 'updated_at',
  ],
  deployments: [
    'id', 'project_id', 'environment', 'status', 'commit_sha', 'branch', 'deploy_url', 'logs', 'logs_url', 'build_time_ms', 'deployed_by',
    'deployed_at', 'finished_at', 'created_at', 'updated_at',
  ],
} as const satisfies { readonly [T in IdeTable]: readonly (keyof RowOf<T>)[] };

/** A row of an IDE table as these functions read it: its readable columns, generated types. */
export type IdeRow<T extends IdeTable> = Pick<RowOf<T>, (typeof IDE_COLUMNS)[T][number] & keyof RowOf<T>>;
/** A listed row: with its cursor position. */
export type IdeListedRow<T extends IdeTable> = IdeRow<T> & { id: string; cursor_us: number };

const JSON_COLUMNS: ReadonlySet<string> = new Set(['open_files', 'layout_state', 'result']);

/*
 * Generic over the table: callers are checked against T's generated values, patches and rows.
 * Kysely cannot resolve columns on a table-generic builder, so each statement is built on the
 * union of the six tables (id, project_id, created_at are common; status and expires_at go by
 * sql.ref) and its row retyped as T's readable columns, which are exactly what it selects.
 */
const cols = (table: IdeTable) => IDE_COLUMNS[table] as readonly string[] as never[];

export async function ideInsert<T extends IdeTable>(db: Executor, table: T, values: NewRow<T>): Promise<IdeRow<T>> {
  const row = await db
    .insertInto(table as IdeTable)
    .values(encodeJson(values, JSON_COLUMNS) as Insertable<DB[IdeTable]>)
    .returning(cols(table))
    .executeTakeFirstOrThrow();
  return row as IdeRow<T>;
}

export async function ideFind<T extends IdeTable>(db: Executor, table: T, projectId: string, id: string): Promise<IdeRow<T> | undefined> {
  const row = await db
    .selectFrom(table as IdeTable)
    .select(cols(table))
    .where('id', '=', id)
    .where('project_id', '=', projectId)
    .executeTakeFirst();
  return row as IdeRow<T> | undefined;
}

/**
 * Updates a row; with `fromStatus`, only while it still has that status (a lifecycle move is a
 * compare-and-set, so two racing moves cannot both apply). Undefined when nothing matched.
 */
export async function ideUpdate<T extends IdeTable>(
  db: Executor,
  table: T,
  projectId: string,
  id: string,
  patch: RowPatch<T>,
  fromStatus?: string,
): Promise<IdeRow<T> | undefined> {
  let q = db
    .updateTable(table as IdeTable)
    .set(encodeJson(patch, JSON_COLUMNS) as Updateable<DB[IdeTable]>)
    .where('id', '=', id)
    .where('project_id', '=', projectId);
  if (fromStatus !== undefined) q = q.where(sql.ref('status'), '=', fromStatus);
  return (await q.returning(cols(table)).executeTakeFirst()) as IdeRow<T> | undefined;
}

/** Deletes a row; with `unlessStatus`, only while it does not have that status (checked by the delete itself). */
export async function ideDelete(db: Executor, table: IdeTable, projectId: string, id: string, unlessStatus?: string): Promise<boolean> {
  let q = db.deleteFrom(table).where('id', '=', id).where('project_id', '=', projectId);
  if (unlessStatus !== undefined) q = q.where(sql.ref('status'), '<>', unlessStatus);
  const res = await q.executeTakeFirst();
  return res.numDeletedRows > 0n;
}

/** Whether a project has a code execution in this status (one is enough). */
export async function ideHasStatus(db: Executor, table: IdeTable, projectId: string, status: string): Promise<boolean> {
  const row = await db.selectFrom(table).select('id').where('project_id', '=', projectId).where(sql.ref('status'), '=', status).limit(1).executeTakeFirst();
  return row !== undefined;
}

export interface IdeListFilter {
  /** column = value, for each defined value */
  equals?: Record<string, string | undefined>;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
  /** code analyses: hide rows whose expires_at has passed (the sweep may not have run yet) */
  liveAt?: Date;
}

/** A project's rows, newest first, one page (limit + 1 rows: the extra says there is more). */
export async function ideList<T extends IdeTable>(db: Executor, table: T, projectId: string, page: PageRequest, filter: IdeListFilter = {}): Promise<IdeListedRow<T>[]> {
  let q = db.selectFrom(table as IdeTable).select(cols(table)).select(cursorColumn(table).as('cursor_us')).where('project_id', '=', projectId);
  for (const [col, v] of Object.entries(filter.equals ?? {})) if (v !== undefined) q = q.where(sql.ref(col), '=', v);
  if (filter.createdAfter) q = q.where('created_at', '>', filter.createdAfter);
  if (filter.createdBefore) q = q.where('created_at', '<', filter.createdBefore);
  if (filter.liveAt) {
    const at = filter.liveAt;
    q = q.where((eb) => eb.or([eb(sql.ref('expires_at'), 'is', null), eb(sql.ref('expires_at'), '>', at)]));
  }
  if (page.after) q = q.where(cursorBefore(table, page.after));
  return (await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute()) as unknown as IdeListedRow<T>[];
}

/** Whether every id names a file of this project. */
export async function projectFilesExist(db: Executor, projectId: string, ids: readonly string[]): Promise<boolean> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return true;
  const found = await db.selectFrom('project_files').select('id').where('project_id', '=', projectId).where('id', 'in', unique).execute();
  return found.length === unique.length;
}

export async function fileVersionInProject(db: Executor, projectId: string, versionId: string): Promise<boolean> {
  return (await db.selectFrom('project_file_versions').select('id').where('id', '=', versionId).where('project_id', '=', projectId).executeTakeFirst()) !== undefined;
}

/** The live deployment of an environment becomes `superseded` (before a newer one succeeds). */
export async function deploymentSupersedeLive(db: Executor, projectId: string, environment: string, exceptId: string): Promise<number> {
  const res = await db
    .updateTable('deployments')
    .set({ status: 'superseded' })
    .where('project_id', '=', projectId)
    .where('environment', '=', environment)
    .where('status', '=', 'success')
    .where('id', '<>', exceptId)
    .executeTakeFirst();
  return Number(res.numUpdatedRows);
}

/** The sealed credentials of a repository (the service's sync work and the key rotation only). */
export async function gitCredentialsRead(db: Executor, id: string): Promise<{ credentials_enc: string | null; key_id: string | null } | undefined> {
  return db.selectFrom('git_repositories').select(['credentials_enc', 'key_id']).where('id', '=', id).executeTakeFirst();
}

export async function gitCredentialsSealedNotUnder(db: Executor, keyId: string) {
  return db.selectFrom('git_repositories').select(['id', 'credentials_enc']).where('credentials_enc', 'is not', null).where('key_id', '<>', keyId).execute();
}

/** Deletes analyses whose expires_at has passed; answers how many. */
export async function analysesDeleteExpired(db: Executor, now: Date): Promise<number> {
  const res = await db.deleteFrom('code_analyses').where('expires_at', '<=', now).executeTakeFirst();
  return Number(res.numDeletedRows);
}
