import { sql } from 'kysely';
import pg from 'pg';
import type { Database } from '../../src/db/database.js';
import { reconcile } from '../../src/modules/credits/credits.reconcile.js';
import { sleep } from './stats.js';
import { must } from '../../src/lib/must.js';

/** One verdict printed under the table and kept in the JSON; a failed fatal check fails the run. */
export interface Check {
  side: 'tally' | 'baseline';
  name: string;
  ok: boolean;
  detail: string;
  /** Tally's checks fail the bench; the baseline's are reported only. */
  fatal: boolean;
}

export const check = (side: Check['side'], name: string, ok: boolean, detail: string, fatal = side === 'tally'): Check => ({
  side,
  name,
  ok,
  detail,
  fatal,
});

/** Ledger entries of one type in Tally's schema. */
export async function tallyEntries(database: Database, type: string): Promise<number> {
  const t = sql.table(`${database.schema}.credit_ledger`);
  return must((await sql<{ n: number }>`select count(*)::int as n from ${t} where type = ${type}`.execute(database.root)).rows[0], 'a count returns one row').n;
}

/** Holds in Tally's schema (in total, and still open). */
export async function tallyHolds(database: Database): Promise<{ total: number; open: number }> {
  const t = sql.table(`${database.schema}.credit_holds`);
  const row = must((
    await sql<{ total: number; open: number }>`select count(*)::int as total, (count(*) filter (where status = 'held'))::int as open
      from ${t}`.execute(database.root)
  ).rows[0], 'a count returns one row');
  return row;
}

/** How many of these ledger ids exist (committed), in chunks. */
export async function tallyExisting(database: Database, ids: string[]): Promise<number> {
  const t = sql.table(`${database.schema}.credit_ledger`);
  let found = 0;
  for (let i = 0; i < ids.length; i += 20_000) {
    const chunk = ids.slice(i, i + 20_000);
    found += must((await sql<{ n: number }>`select count(*)::int as n from ${t} where id = any(${chunk}::text[])`.execute(database.root))
      .rows[0], 'a count returns one row').n;
  }
  return found;
}

/** Debit rows the baseline function wrote. */
export async function baselineDebits(pool: pg.Pool): Promise<number> {
  const res = await pool.query<{ n: number }>(
    `select count(*)::int as n from baseline.credit_transactions where transaction_type = 'debit'`,
  );
  return must(res.rows[0], 'a count returns one row').n;
}

/**
 * Waits until a count stops moving: requests the load generator abandoned when its clock ran out
 * may still be committing on the server. Stable for 1.2 s (eight reads 150 ms apart; a slow batch
 * waiting for another's locks can take far longer than 300 ms between commits), at most 20 s.
 */
export async function settled(count: () => Promise<number>): Promise<number> {
  let last = await count();
  let stable = 0;
  const deadline = Date.now() + 20_000;
  while (stable < 8 && Date.now() < deadline) {
    await sleep(150);
    const now = await count();
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
  return last;
}

/** Tally's reconcile over the whole bench schema, as checks. */
export async function reconcileCheck(database: Database): Promise<Check> {
  const report = await reconcile(database);
  const shown = report.drift.slice(0, 5).map((d) => `${d.account_id}: ${d.check} (expected ${d.expected}, found ${d.actual})`);
  return check(
    'tally',
    'reconcile',
    report.ok,
    report.ok
      ? `${report.accounts} accounts, ${report.entries} entries, ${report.open_holds} open holds: no drift`
      : `${report.drift.length} drift(s): ${shown.join('; ')}`,
  );
}

/** Asks PostgreSQL to flush dirty pages so each measured run starts from a similar state. */
export async function checkpoint(database: Database): Promise<void> {
  try {
    await sql`checkpoint`.execute(database.root);
  } catch {
    // not a superuser: fine, just less even
  }
}
