import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { BackgroundJob, BackgroundStatus } from './queue.js';

interface Row {
  id: string;
  type: string;
  name: string | null;
  status: string;
  input: unknown;
  output: unknown;
  last_error: string | null;
  attempts: number;
  max_attempts: number;
  priority: number;
  run_at: Date | string;
  dedupe_key: string | null;
  locked_by: string | null;
  locked_at: Date | string | null;
  started_at: Date | string | null;
  completed_at: Date | string | null;
  created_at: Date | string;
}

const date = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));
const dateOrNull = (v: Date | string | null): Date | null => (v === null ? null : date(v));

export function backgroundJobFromRow(r: Row): BackgroundJob {
  return {
    id: r.id,
    type: r.type,
    name: r.name,
    status: r.status as BackgroundStatus,
    input: (r.input ?? {}) as Record<string, unknown>,
    output: r.output,
    lastError: r.last_error,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    priority: r.priority,
    runAt: date(r.run_at),
    dedupeKey: r.dedupe_key,
    lockedBy: r.locked_by,
    lockedAt: dateOrNull(r.locked_at),
    startedAt: dateOrNull(r.started_at),
    completedAt: dateOrNull(r.completed_at),
    createdAt: date(r.created_at),
  };
}

export async function backgroundJobInsert(
  db: Executor,
  row: {
    id: string;
    type: string;
    name: string | null;
    input: Record<string, unknown>;
    run_at: Date;
    priority: number;
    max_attempts: number;
    dedupe_key: string | null;
  },
): Promise<BackgroundJob | undefined> {
  const inserted = await db
    .insertInto('background_jobs')
    .values({ ...row, input: JSON.stringify(row.input) })
    .onConflict((oc) => oc.column('dedupe_key').doNothing())
    .returningAll()
    .executeTakeFirst();
  return inserted ? backgroundJobFromRow(inserted as Row) : undefined;
}

export async function backgroundJobFindByDedupeKey(db: Executor, key: string): Promise<BackgroundJob | undefined> {
  const row = await db.selectFrom('background_jobs').selectAll().where('dedupe_key', '=', key).executeTakeFirst();
  return row ? backgroundJobFromRow(row as Row) : undefined;
}

export async function backgroundJobFind(db: Executor, id: string): Promise<BackgroundJob | undefined> {
  const row = await db.selectFrom('background_jobs').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? backgroundJobFromRow(row as Row) : undefined;
}

/**
 * Claims up to `limit` due jobs of the given types for `worker`: pending ones whose time has come,
 * and running ones whose lease ran out (their worker died). `FOR UPDATE SKIP LOCKED` lets many
 * workers claim side by side without waiting on, or double-claiming, each other's rows.
 */
export async function backgroundJobClaim(
  db: Executor,
  schema: string,
  args: { worker: string; types: string[]; now: Date; staleBefore: Date; limit: number },
): Promise<BackgroundJob[]> {
  const t = sql.table(`${schema}.background_jobs`);
  const result = await sql<Row>`
    with due as (
      select id from ${t}
      where type = any(${args.types}::text[])
        and ((status = 'pending' and run_at <= ${args.now}) or (status = 'running' and locked_at < ${args.staleBefore}))
      order by priority desc, run_at, id
      limit ${args.limit}
      for update skip locked
    )
    update ${t} as b
       set status = 'running', locked_by = ${args.worker}, locked_at = ${args.now},
           attempts = b.attempts + 1, started_at = coalesce(b.started_at, ${args.now})
      from due
     where b.id = due.id
    returning b.*`.execute(db);
  return result.rows.map(backgroundJobFromRow).sort((a, b) => b.priority - a.priority || a.runAt.getTime() - b.runAt.getTime() || (a.id < b.id ? -1 : 1));
}

/** Marks a claimed job completed; a no-op if another worker re-claimed it meanwhile. */
export async function backgroundJobComplete(db: Executor, id: string, worker: string, output: unknown, now: Date): Promise<boolean> {
  const res = await db
    .updateTable('background_jobs')
    .set({ status: 'completed', output: JSON.stringify(output ?? null), completed_at: now, locked_by: null, locked_at: null, last_error: null })
    .where('id', '=', id)
    .where('locked_by', '=', worker)
    .where('status', '=', 'running')
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

/** Records a failed attempt: back to pending at `retryAt`, or failed for good when `retryAt` is null. */
export async function backgroundJobFail(
  db: Executor,
  id: string,
  worker: string,
  error: string,
  retryAt: Date | null,
  now: Date,
): Promise<boolean> {
  const res = await db
    .updateTable('background_jobs')
    .set(
      retryAt
        ? { status: 'pending', run_at: retryAt, last_error: error, locked_by: null, locked_at: null }
        : { status: 'failed', completed_at: now, last_error: error, locked_by: null, locked_at: null },
    )
    .where('id', '=', id)
    .where('locked_by', '=', worker)
    .where('status', '=', 'running')
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

/** Cancels pending work by its dedupe key (a job that settled no longer needs its timeout). */
export async function backgroundJobCancelByDedupeKey(db: Executor, key: string): Promise<boolean> {
  const res = await db
    .updateTable('background_jobs')
    .set({ status: 'canceled', completed_at: sql<Date>`now()` })
    .where('dedupe_key', '=', key)
    .where('status', '=', 'pending')
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

/** Due pending jobs and the age of the oldest (GET /metrics: queue depth and lag). */
export async function backgroundJobBacklog(db: Executor, now: Date): Promise<{ depth: number; lagSeconds: number }> {
  const row = await db
    .selectFrom('background_jobs')
    .select((eb) => [eb.fn.countAll<number>().as('depth'), eb.fn.min('run_at').as('oldest')])
    .where('status', '=', 'pending')
    .where('run_at', '<=', now)
    .executeTakeFirst();
  const oldest = row?.oldest ? new Date(row.oldest as Date | string).getTime() : null;
  return { depth: Number(row?.depth ?? 0), lagSeconds: oldest === null ? 0 : Math.max(0, (now.getTime() - oldest) / 1000) };
}
