import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';
import type { JobRow } from './jobs.js';

export async function jobInsert(
  db: Executor,
  row: {
    id: string;
    user_id: string;
    workspace_id: string | null;
    project_id: string | null;
    kind: string;
    model: string | null;
    provider: string;
    external_id: string | null;
    input: Record<string, unknown>;
    prompt: string | null;
    image_url: string | null;
    cost: number;
    hold_id: string | null;
    metadata: Record<string, unknown>;
    timeout_at: Date;
  },
): Promise<JobRow> {
  return (await db
    .insertInto('jobs')
    .values({ ...row, input: JSON.stringify(row.input), metadata: JSON.stringify(row.metadata) })
    .returningAll()
    .executeTakeFirstOrThrow()) as JobRow;
}

export async function jobFind(db: Executor, id: string): Promise<JobRow | undefined> {
  return (await db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst()) as JobRow | undefined;
}

/** The job's row, locked for the rest of the transaction: transitions on one job run one at a time. */
export async function jobLock(db: Executor, id: string): Promise<JobRow | undefined> {
  return (await db.selectFrom('jobs').selectAll().where('id', '=', id).forUpdate().executeTakeFirst()) as JobRow | undefined;
}

export async function jobUpdate(
  db: Executor,
  id: string,
  patch: Partial<{
    status: string;
    external_id: string | null;
    output: unknown;
    result_url: string | null;
    error: string | null;
    tokens_used: number | null;
    captured: number | null;
    started_at: Date;
    completed_at: Date;
    duration_ms: number | null;
  }>,
): Promise<JobRow> {
  const { output, ...rest } = patch;
  return (await db
    .updateTable('jobs')
    .set({ ...rest, ...('output' in patch ? { output: JSON.stringify(output ?? null) } : {}) })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow()) as JobRow;
}

export async function jobListByUser(db: Executor, userId: string, page: PageRequest, status?: string) {
  let q = db
    .selectFrom('jobs')
    .selectAll('jobs')
    .select(cursorColumn('jobs').as('cursor_us'))
    .where('user_id', '=', userId);
  if (status) q = q.where('status', '=', status);
  if (page.after) q = q.where(cursorBefore('jobs', page.after));
  return (await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute()) as (JobRow & { cursor_us: number })[];
}

/** Every job, newest first (the operator's view; service only). */
export async function jobList(db: Executor, page: PageRequest, filter: { status?: string; userId?: string }) {
  let q = db.selectFrom('jobs').selectAll('jobs').select(cursorColumn('jobs').as('cursor_us'));
  if (filter.status) q = q.where('status', '=', filter.status);
  if (filter.userId) q = q.where('user_id', '=', filter.userId);
  if (page.after) q = q.where(cursorBefore('jobs', page.after));
  return (await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute()) as (JobRow & { cursor_us: number })[];
}
