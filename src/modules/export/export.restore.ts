import { createReadStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { sql } from 'kysely';
import type { Database, Executor } from '../../db/database.js';
import { type ForeignKey, foreignKeysOf, migrationsOf, quoteIdent, relationsOf, type TableInfo, tablesOf } from './export.catalog.js';
import { EXPORT_FORMAT, EXPORT_VERSION, type ExportManifest } from './export.js';
import { restorePlan } from './export.order.js';

export type RestoreOutcome =
  | { ok: true; tables: { name: string; rows: number }[] }
  | { ok: false; error: 'not_an_export' | 'version' | 'migrations' | 'not_empty' | 'integrity' | 'privileges'; message: string };

/** Tables whose rows make a database "not empty": restoring over them would mix two systems' data. */
const OWNING_TABLES = ['users', 'workspaces', 'credit_ledger', 'api_keys'];
const BATCH = 500;

/**
 * Restores an export into an empty database of the same migrations, exactly, in one transaction, as
 * the owner of Tally's tables (no superuser: docs/export.md). Foreign keys stay on: tables go in
 * parents first, and a key on a cycle (a row pointing at another of its table) is set in a second
 * pass. Tally's own triggers are off while rows go in (`disable trigger user`, the owner's right:
 * `updated_at` and audit triggers would restamp the rows, counters would count them twice) and on
 * again before the commit, so no other session ever sees them off, and a failed restore leaves them
 * as they were. Sequences then move past the highest restored value.
 */
export async function restoreExport(database: Database, dir: string): Promise<RestoreOutcome> {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Partial<ExportManifest>;
  if (manifest.format !== EXPORT_FORMAT) return { ok: false, error: 'not_an_export', message: `${dir} is not a Tally export (format ${String(manifest.format)})` };
  if (manifest.version !== EXPORT_VERSION) return { ok: false, error: 'version', message: `export format version ${String(manifest.version)}; this Tally reads version ${EXPORT_VERSION}` };
  const mine = await migrationsOf(database);
  if (JSON.stringify(mine) !== JSON.stringify(manifest.migrations)) {
    return { ok: false, error: 'migrations', message: `the export was written under other migrations (${manifest.migrations?.at(-1) ?? 'none'}; this database: ${mine.at(-1) ?? 'none'}): restore it with the Tally version that wrote it` };
  }
  for (const name of OWNING_TABLES) {
    const [r] = (await sql<{ n: string }>`select count(*)::text as n from ${sql.raw(qualified(database, name))}`.execute(database.db)).rows;
    if (Number(r?.n) > 0) return { ok: false, error: 'not_empty', message: `this database is not empty (${name} has rows): an export restores into an empty one only` };
  }
  const files = new Map((manifest.tables ?? []).map((t) => [t.name, t.file]));
  return database.db
    .transaction()
    .execute(async (trx) => {
      const known = new Map((await tablesOf(database, trx)).map((t) => [t.name, t]));
      for (const name of files.keys()) if (!known.has(name)) throw new RestoreRefused('integrity', `the export has a table this database has not: ${name}`);
      const plan = restorePlan([...files.keys()], await foreignKeysOf(database, trx));
      if (plan.blocked.length > 0) throw new RestoreRefused('integrity', `foreign keys in a cycle through non-null columns: ${plan.blocked.map((fk) => fk.name).join(', ')}`);
      const relations = await relationsOf(database, trx);
      for (const r of relations) await sql`alter table ${sql.raw(qualified(database, r))} disable trigger user`.execute(trx);
      // What the migrations wrote (catalogue rows) is replaced by what the export holds: children first.
      for (const name of [...plan.order].reverse()) await sql`delete from ${sql.raw(qualified(database, name))}`.execute(trx);
      const restored = new Map<string, number>();
      for (const name of plan.order) {
        const info = known.get(name) as TableInfo;
        const later = new Set(plan.later.filter((fk) => fk.child === name).flatMap((fk) => fk.childColumns));
        restored.set(name, await insertTable(database, trx, info, join(dir, files.get(name) as string), later));
      }
      for (const name of new Set(plan.later.map((fk) => fk.child))) {
        await setLater(database, trx, known.get(name) as TableInfo, join(dir, files.get(name) as string), plan.later.filter((fk) => fk.child === name));
      }
      for (const r of relations) await sql`alter table ${sql.raw(qualified(database, r))} enable trigger user`.execute(trx);
      await moveSequences(database, trx);
      return { ok: true as const, tables: [...files.keys()].map((name) => ({ name, rows: restored.get(name) ?? 0 })) };
    })
    .catch((err: unknown) => {
      if (err instanceof RestoreRefused) return { ok: false as const, error: err.kind, message: err.message };
      const e = err as { code?: string; constraint?: string; detail?: string; table?: string; message?: string };
      if (e.code === '23503') return { ok: false as const, error: 'integrity' as const, message: `the export's rows break a foreign key (${e.constraint ?? '?'} on ${e.table ?? '?'}): ${e.detail ?? e.message ?? ''}` };
      if (e.code === '42501') return { ok: false as const, error: 'privileges' as const, message: `restore as the owner of Tally's tables (${e.message ?? 'permission denied'})` };
      throw err;
    });
}

class RestoreRefused extends Error {
  constructor(
    readonly kind: 'integrity',
    message: string,
  ) {
    super(message);
  }
}

const qualified = (database: Database, table: string) => `${quoteIdent(database.schema)}.${quoteIdent(table)}`;

/** The file's lines in batches (memory bounded by the batch). */
async function* batchesOf(file: string): AsyncGenerator<string> {
  let batch: string[] = [];
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    batch.push(line);
    if (batch.length >= BATCH) {
      yield `[${batch.join(',')}]`;
      batch = [];
    }
  }
  if (batch.length > 0) yield `[${batch.join(',')}]`;
}

/** PostgreSQL parses each value as it wrote it (`json_populate_recordset`); `later` columns go in as null. */
async function insertTable(database: Database, trx: Executor, info: TableInfo, file: string, later: Set<string>): Promise<number> {
  const t = qualified(database, info.name);
  const cols = info.columns.map(quoteIdent).join(', ');
  const values = info.columns.map((c) => (later.has(c) ? 'null' : quoteIdent(c))).join(', ');
  let rows = 0;
  for await (const json of batchesOf(file)) {
    const r = await sql`insert into ${sql.raw(t)} (${sql.raw(cols)}) overriding system value select ${sql.raw(values)} from json_populate_recordset(null::${sql.raw(t)}, ${json}::json)`.execute(trx);
    rows += Number(r.numAffectedRows ?? 0);
  }
  return rows;
}

/** The second pass: keys on a cycle, set by primary key once every row they may point at is in. */
async function setLater(database: Database, trx: Executor, info: TableInfo, file: string, fks: ForeignKey[]): Promise<void> {
  if (info.key.length === 0) throw new RestoreRefused('integrity', `${info.name} points at itself but has no primary key to set it by`);
  const t = qualified(database, info.name);
  const cols = [...new Set(fks.flatMap((fk) => fk.childColumns))].map(quoteIdent);
  const set = cols.map((c) => `${c} = j.${c}`).join(', ');
  const match = info.key.map((k) => `t.${quoteIdent(k)} = j.${quoteIdent(k)}`).join(' and ');
  const any = cols.map((c) => `j.${c} is not null`).join(' or ');
  for await (const json of batchesOf(file)) {
    await sql`update ${sql.raw(t)} t set ${sql.raw(set)} from json_populate_recordset(null::${sql.raw(t)}, ${json}::json) j where ${sql.raw(match)} and (${sql.raw(any)})`.execute(trx);
  }
}

/** Sequences owned by a column move past the highest value restored into it. */
async function moveSequences(database: Database, trx: Executor): Promise<void> {
  const seqs = await sql<{ seq: string; tbl: string; col: string }>`
    select s.relname as seq, t.relname as tbl, a.attname as col
    from pg_class s join pg_depend d on d.objid = s.oid and d.deptype in ('a', 'i') join pg_class t on t.oid = d.refobjid
    join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid join pg_namespace n on n.oid = s.relnamespace
    where s.relkind = 'S' and n.nspname = ${database.schema}`.execute(trx);
  for (const q of seqs.rows) {
    await sql`select setval(${qualified(database, q.seq)}::regclass, coalesce((select max(${sql.raw(quoteIdent(q.col))}) from ${sql.raw(qualified(database, q.tbl))}), 0) + 1, false)`.execute(trx);
  }
}
