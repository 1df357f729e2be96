import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';

/**
 * The import's own bookkeeping (migration 0029): runs, keyset cursors per source table, and the map
 * from source rows to the Tally rows they became. The caller owns the transaction: a batch's rows,
 * their mappings and its cursor move commit together, so a killed import resumes exactly.
 */

export interface CursorRow {
  source_table: string;
  last_key: string | null;
  rows_read: number;
  rows_imported: number;
  rows_skipped: number;
  done: boolean;
}

export async function importRunInsert(db: Executor, r: { id: string; source: string; shape: string; dryRun: boolean; strict: boolean; resumed: boolean }): Promise<void> {
  await db.insertInto('import_runs').values({ id: r.id, source: r.source, shape: r.shape, dry_run: r.dryRun, strict: r.strict, resumed: r.resumed }).execute();
}

export async function importRunFinish(db: Executor, id: string, status: 'completed' | 'failed' | 'refused', report: unknown, error: string | null): Promise<void> {
  await db
    .updateTable('import_runs')
    .set({ status, report: JSON.stringify(report), error: error?.slice(0, 4000) ?? null, finished_at: sql<Date>`now()` })
    .where('id', '=', id)
    .execute();
}

export async function importCursorsFind(db: Executor, source: string): Promise<Map<string, CursorRow>> {
  const rows = await db
    .selectFrom('import_cursors')
    .select(['source_table', 'last_key', 'rows_read', 'rows_imported', 'rows_skipped', 'done'])
    .where('source', '=', source)
    .execute();
  return new Map(rows.map((r) => [r.source_table, { ...r, rows_read: Number(r.rows_read), rows_imported: Number(r.rows_imported), rows_skipped: Number(r.rows_skipped) }]));
}

/** A fresh (not resumed) run starts every table from its beginning; mappings still skip what was imported. */
export async function importCursorsReset(db: Executor, source: string): Promise<void> {
  await db.deleteFrom('import_cursors').where('source', '=', source).execute();
}

export async function importCursorSave(
  db: Executor,
  c: { source: string; shape: string; runId: string; table: string; lastKey: string | null; read: number; imported: number; skipped: number; done: boolean },
): Promise<void> {
  await db
    .insertInto('import_cursors')
    .values({
      source: c.source,
      source_table: c.table,
      shape: c.shape,
      run_id: c.runId,
      last_key: c.lastKey,
      rows_read: c.read,
      rows_imported: c.imported,
      rows_skipped: c.skipped,
      done: c.done,
    })
    .onConflict((oc) =>
      oc.columns(['source', 'source_table']).doUpdateSet({
        run_id: c.runId,
        last_key: c.lastKey,
        rows_read: c.read,
        rows_imported: c.imported,
        rows_skipped: c.skipped,
        done: c.done,
      }),
    )
    .execute();
}

/** Tally users an `--owner` value names: by id, or by e-mail (case-insensitive). */
export async function importOwnerFind(db: Executor, given: string): Promise<string[]> {
  const rows = await db
    .selectFrom('users')
    .select('id')
    .where((eb) => eb.or([eb('id', '=', given), eb(sql`lower(email)`, '=', given.toLowerCase())]))
    .limit(3)
    .execute();
  return rows.map((r) => r.id);
}

export interface MapRow {
  source_id: string;
  target_id: string;
  facts: Record<string, unknown>;
}

/**
 * The mappings of some source rows of one table (source id → row). The ids travel as one array
 * parameter (`= any($n)`), not as an `in (…)` list of a batch's worth of parameters: one statement
 * text whatever the batch size, nothing for the query builder to compile per id.
 */
export async function importMapFind(db: Executor, source: string, table: string, sourceIds: readonly string[]): Promise<Map<string, MapRow>> {
  if (sourceIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('import_map')
    .select(['source_id', 'target_id', 'facts'])
    .where('source', '=', source)
    .where('source_table', '=', table)
    .where('source_id', '=', sql<string>`any(${[...new Set(sourceIds)]}::text[])`)
    .execute();
  return new Map(rows.map((r) => [r.source_id, { source_id: r.source_id, target_id: r.target_id, facts: (r.facts ?? {}) as Record<string, unknown> }]));
}

/**
 * Records mappings, all of a batch in one statement (the rows travel as one JSON parameter). The
 * primary key (source, table, source id) is the guarantee that a row is imported once: a second
 * writer of the same row fails here and its whole batch rolls back.
 */
export async function importMapInsert(
  db: Executor,
  source: string,
  runId: string,
  rows: { table: string; sourceId: string; targetTable: string; targetId: string; facts?: Record<string, unknown> }[],
): Promise<void> {
  if (rows.length === 0) return;
  const json = JSON.stringify(rows.map((r) => ({ t: r.table, s: r.sourceId, tt: r.targetTable, ti: r.targetId, f: r.facts ?? {} })));
  await db
    .insertInto('import_map')
    .columns(['source', 'run_id', 'source_table', 'source_id', 'target_table', 'target_id', 'facts'])
    .expression(sql`select ${source}::text, ${runId}::text, r.t, r.s, r.tt, r.ti, r.f from jsonb_to_recordset(${json}::jsonb) as r(t text, s text, tt text, ti text, f jsonb)`)
    .execute();
}

export interface AccountComparison {
  source_id: string;
  user_id: string;
  source: number;
  opening: number;
  balance: number | null;
}

/**
 * Credits per imported account: the source balance recorded at import, the opening entry's amount,
 * and the account's balance now. Only the accounts where they disagree (and the totals) are returned
 * whole — a million accounts that match need no listing.
 */
export async function importAccountsCompare(db: Executor, source: string): Promise<{ accounts: number; sourceTotal: number; openingTotal: number; mismatches: AccountComparison[] }> {
  const base = db
    .selectFrom('import_map as m')
    .leftJoin('credit_ledger as l', (j) => j.onRef('l.id', '=', sql<string>`m.facts->>'opening_entry'`))
    .leftJoin('credit_accounts as a', (j) => j.onRef('a.id', '=', sql<string>`'acc_u_' || m.target_id`))
    .where('m.source', '=', source)
    .where(sql<boolean>`m.facts ? 'balance'`);
  const totals = await base
    .select([
      sql<string>`count(*)`.as('accounts'),
      sql<string>`coalesce(sum((m.facts->>'balance')::bigint), 0)`.as('source_total'),
      sql<string>`coalesce(sum(coalesce(l.amount, 0)), 0)`.as('opening_total'),
    ])
    .executeTakeFirstOrThrow();
  const mismatches = await base
    .select(['m.source_id', 'm.target_id as user_id', sql<string>`(m.facts->>'balance')::bigint`.as('source'), sql<string>`coalesce(l.amount, 0)`.as('opening'), 'a.balance'])
    .where(sql<boolean>`(m.facts->>'balance')::bigint <> coalesce(l.amount, 0)`)
    .orderBy('m.source_id')
    .limit(1000)
    .execute();
  return {
    accounts: Number(totals.accounts),
    sourceTotal: Number(totals.source_total),
    openingTotal: Number(totals.opening_total),
    mismatches: mismatches.map((r) => ({ source_id: r.source_id, user_id: r.user_id, source: Number(r.source), opening: Number(r.opening), balance: r.balance === null ? null : Number(r.balance) })),
  };
}

/** The gateway upstreams a source brought in that are still inactive (what an operator must review). */
export async function importedUpstreamsInactive(db: Executor, source: string) {
  return db
    .selectFrom('import_map as m')
    .innerJoin('gateway_upstreams as u', 'u.id', 'm.target_id')
    .select(['m.source_id', 'u.id', 'u.type', 'u.name', 'u.base_url', 'u.models', 'u.priority', 'u.weight'])
    .where('m.source', '=', source)
    .where('m.target_table', '=', 'gateway_upstreams')
    .where('u.is_active', '=', false)
    .orderBy('m.source_id')
    .execute();
}
