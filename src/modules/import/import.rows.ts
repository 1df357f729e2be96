import { sql } from 'kysely';
import type { BatchContext, BatchOutcome, SkipReason } from './import.js';
import { importMapFind, type MapRow } from './import.repository.js';

/** Small helpers every shape's steps share: reading source values, and the bookkeeping of a batch. */

export const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
/**
 * A time from the source. PostgreSQL's driver answers Dates; SQLite keeps text, and SQLAlchemy
 * writes it without a zone (`2026-01-01 10:00:00.123456`): read as UTC, never as this machine's zone.
 */
export function date(v: unknown): Date | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v;
  const s = String(v).trim().replace(' ', 'T');
  const d = new Date(/(Z|[+-]\d\d:?\d\d)$/.test(s) ? s : `${s}Z`);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A boolean from the source (SQLite keeps 0/1). */
export const bool = (v: unknown): boolean => v === true || v === 1 || v === '1' || v === 't' || v === 'true';

/** A JSON value from the source (PostgreSQL parses jsonb; SQLite keeps text). Unreadable text is kept as a string. */
export function json(v: unknown): unknown {
  if (typeof v !== 'string') return v ?? null;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

/** `$from, $from+1, …` for an `in (…)` list of `n` values (portable: SQLite rewrites `$n`). */
export const placeholders = (n: number, from = 1): string => Array.from({ length: n }, (_, i) => `$${i + from}`).join(', ');

/** An integer credit amount from the source, exactly (int8 arrives as a string); null if it is not one. */
export function int(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  const s = String(v).trim();
  if (!/^-?\d+(\.0+)?$/.test(s)) return null;
  const n = Number(s.split('.')[0]);
  return Number.isSafeInteger(n) ? n : null;
}

/** A decimal money amount (`12.34`) as minor units (`1234`), exactly: no floating point on the way. */
export function minorUnits(v: unknown, digits = 2): number | null {
  if (v === null || v === undefined) return null;
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(v).trim());
  if (!m) return null;
  const frac = (m[3] ?? '').padEnd(digits, '0');
  if (frac.slice(digits).replace(/0/g, '') !== '') return null; // finer than a minor unit: not exact
  const n = Number(`${m[1]}${m[2]}${frac.slice(0, digits)}`);
  return Number.isSafeInteger(n) ? n : null;
}

/** A batch's tally: imported rows and skipped rows by reason. */
export class Tally {
  imported = 0;
  readonly skipped: Partial<Record<SkipReason, number>> = {};
  skip(reason: SkipReason, n = 1): void {
    if (n > 0) this.skipped[reason] = (this.skipped[reason] ?? 0) + n;
  }
  get outcome(): BatchOutcome {
    return { imported: this.imported, skipped: this.skipped };
  }
}

/** Splits a batch into rows not imported yet and counts the others (a re-run, or a resumed batch). */
export async function freshRows(ctx: BatchContext, table: string, rows: Record<string, unknown>[], key: string, tally: Tally): Promise<Record<string, unknown>[]> {
  const done = await importMapFind(ctx.trx, ctx.source, table, rows.map((r) => String(r[key])));
  tally.skip('already_imported', done.size);
  return rows.filter((r) => !done.has(String(r[key])));
}

/** The owners of a batch's rows, as imported: source user id → its mapping (absent: not imported). */
export function ownersOf(ctx: BatchContext, table: string, rows: Record<string, unknown>[], column: string): Promise<Map<string, MapRow>> {
  return importMapFind(ctx.trx, ctx.source, table, rows.flatMap((r) => (r[column] === null || r[column] === undefined ? [] : [String(r[column])])));
}

/** A row's imported owner, or null once the skip is counted: its owner was not imported, or never existed (orphan). */
export function ownerOf(owners: Map<string, MapRow>, r: Record<string, unknown>, column: string, tally: Tally): MapRow | null {
  const owner = owners.get(String(r[column]));
  if (owner) return owner;
  // `owner_exists` is selected beside each child row from the source (the step's select list).
  tally.skip(r.owner_exists ? 'owner_not_imported' : 'orphan');
  return null;
}

/** One kept history row (`imported_credit_history`). */
export interface HistoryRow {
  id: string;
  source: string;
  source_table: string;
  source_id: string;
  account_id: string;
  user_id: string | null;
  opening_entry_id: string | null;
  type: string;
  amount: number;
  reason: string | null;
  /** The JSON value itself (an object or array), never its text. */
  metadata: object;
  occurred_at: Date | null;
}

/**
 * Keeps history rows: a batch in one statement, its rows as one JSON parameter expanded by
 * `jsonb_to_recordset` (not 12 bound values a row for the query builder to compile). A history
 * row's unique (source, table, source id) is its mapping: rows an earlier run kept conflict here
 * and count as already imported.
 */
export async function keepHistory(ctx: BatchContext, values: readonly HistoryRow[], tally: Tally): Promise<void> {
  if (values.length === 0) return;
  const json = JSON.stringify(values);
  const kept = await ctx.trx
    .insertInto('imported_credit_history')
    .columns(['id', 'source', 'source_table', 'source_id', 'account_id', 'user_id', 'opening_entry_id', 'type', 'amount', 'reason', 'metadata', 'occurred_at'])
    .expression(
      sql`select id, source, source_table, source_id, account_id, user_id, opening_entry_id, type, amount, reason, metadata, occurred_at
        from jsonb_to_recordset(${json}::jsonb) as r(id text, source text, source_table text, source_id text, account_id text, user_id text,
          opening_entry_id text, type text, amount int8, reason text, metadata jsonb, occurred_at timestamptz)`,
    )
    .onConflict((oc) => oc.columns(['source', 'source_table', 'source_id']).doNothing())
    .returning(sql<number>`1`.as('kept'))
    .execute();
  tally.imported += kept.length;
  tally.skip('already_imported', values.length - kept.length);
}
