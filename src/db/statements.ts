import { hash } from 'node:crypto';
import { CompiledQuery, type QueryResult } from 'kysely';
import type pg from 'pg';
import type { Database } from './database.js';
import { isConnectionFault } from './faults.js';

/**
 * A hot-path statement: fixed text with $n parameters and a name. On
 * PostgreSQL it runs as a named prepared statement (parsed and planned once per connection,
 * not once per call); on PGlite, and inside a Kysely transaction, as a plain parameterized query.
 */
export interface Statement {
  name: string;
  text: string;
  values: unknown[];
}

export type RunStatement = <R = Record<string, unknown>>(stmt: Statement) => Promise<R[]>;

/**
 * `label` names what the statement does (`ledger_lock`), so it reads in pg_prepared_statements and
 * pg_stat_statements; a short hash of the text follows, because a prepared name must always mean the
 * same text on a connection (the schema, or a write's shape, changes the text).
 */
export function statement(label: string, text: string, values: unknown[]): Statement {
  // Keyed by the text itself: the callers keep their texts, and V8 caches a string's hash.
  let digest = digests.get(text);
  if (digest === undefined) {
    digest = hash('sha1', text, 'hex').slice(0, 12);
    // Texts are fixed per schema and write shape, so this stays small; the bound is for safety.
    if (digests.size >= 4096) digests.clear();
    digests.set(text, digest);
  }
  return { name: `tally_${label}_${digest}`, text, values };
}

/**
 * Text digests already worked out: hashing a write's text (a few kB) on every statement cost far
 * more than a map lookup (docs/ledger.md, "Speed").
 */
const digests = new Map<string, string>();

/**
 * The query to send for a statement on a pooled client: named (prepared once per connection)
 * directly, unnamed behind a transaction-mode pooler, where the next transaction may run on a
 * server connection that has never seen (or already has) the name.
 */
export function pooledQuery(database: Database, s: Statement): pg.QueryConfig {
  return database.pooled ? { text: s.text, values: s.values } : { name: s.name, text: s.text, values: s.values };
}

/** Runs statements on the pool outside a transaction (one round trip each), or through Kysely on PGlite. */
export function poolRunner(database: Database): RunStatement {
  const pool = database.pool;
  if (!pool) return kyselyRunner(database.db);
  return async <R>(s: Statement) => (await pool.query(pooledQuery(database, s))).rows as R[];
}

/** Runs statements inside an open Kysely transaction (or on the database). */
export function kyselyRunner(db: { executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>> }): RunStatement {
  return async <R>(s: Statement) => (await db.executeQuery<R>(CompiledQuery.raw(s.text, s.values) as CompiledQuery<R>)).rows;
}

/**
 * One transaction for a batch of hot-path statements. On PostgreSQL it takes a pooled client
 * directly so statements can be prepared by name; elsewhere it uses a Kysely transaction.
 */
export async function inStatementTransaction<T>(database: Database, fn: (run: RunStatement) => Promise<T>): Promise<T> {
  const pool = database.pool;
  if (!pool) return database.root.transaction().execute((trx) => fn(kyselyRunner(trx)));
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query(database.beginSql ?? 'begin');
    try {
      const result = await fn(async <R>(s: Statement) => (await client.query(pooledQuery(database, s))).rows as R[]);
      await client.query('commit');
      return result;
    } catch (err) {
      await client.query('rollback').catch((e: Error) => (broken = e));
      throw err;
    }
  } catch (err) {
    // A connection that failed at the protocol level, or that the server ended, is not handed to anyone else.
    if (!(err as { code?: string }).code || isConnectionFault(err)) broken ??= err as Error;
    throw err;
  } finally {
    client.release(broken);
  }
}

/** One part of a write made of data-modifying CTEs: its rows go as one JSON parameter. */
export interface WritePart {
  bit: number;
  rows: unknown[];
}

/**
 * A write's parameters, in part order: each part's rows as JSON and, for a part that updates
 * existing rows (`updates`), their ids as a `text[]` after them. PostgreSQL estimates any
 * `jsonb_to_recordset` at 100 rows, so `update … from jsonb_to_recordset(…) where t.id = x.id`
 * alone is planned as a scan of the whole table hashed against the rows (measured: every ledger
 * batch read all accounts and grants); `and t.id = any($ids)` makes it a primary-key lookup.
 */
export function writeValues(parts: WritePart[], updates: ReadonlySet<number>): unknown[] {
  return parts.flatMap((p) => (updates.has(p.bit) ? [JSON.stringify(p.rows), (p.rows as { id: string }[]).map((r) => r.id)] : [JSON.stringify(p.rows)]));
}

/** Each part's placeholders (`ids` is empty for an insert), numbered as `writeValues` orders them. */
export function writePlaceholders(bits: number[], updates: ReadonlySet<number>): { rows: string; ids: string }[] {
  let n = 0;
  return bits.map((bit) => ({ rows: `$${++n}`, ids: updates.has(bit) ? `$${++n}` : '' }));
}
