import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { sql } from 'kysely';
import type { Database, Executor } from '../../db/database.js';
import { migrationsOf, quoteIdent, type TableInfo, tablesOf } from './export.catalog.js';

/**
 * `tally export` (docs/export.md): Tally's data as JSON lines, one file per table, and a manifest
 * that names the format, its version, the migrations the data was written under and each table's
 * rows. PostgreSQL writes each row (`row_to_json`) and reads it back (`json_populate_recordset`), so
 * times keep their microseconds and numbers their digits: a restore is exact.
 */
export const EXPORT_FORMAT = 'tally-export';
export const EXPORT_VERSION = 1;
const PAGE = 1000;

export interface ExportManifest {
  format: typeof EXPORT_FORMAT;
  version: number;
  tally_version: string;
  /** The migrations applied to the exported database, in order. */
  migrations: string[];
  exported_at: string;
  tables: { name: string; file: string; rows: number; columns: string[] }[];
}

export function isExportDir(path: string): boolean {
  return existsSync(join(path, 'manifest.json'));
}

/** Writes every table, page by page (memory bounded by the page), inside one repeatable-read snapshot. */
export async function exportDatabase(database: Database, dir: string, tallyVersion: string, now: Date): Promise<ExportManifest> {
  mkdirSync(dir, { recursive: true });
  return database.db.transaction().setIsolationLevel('repeatable read').execute(async (trx) => {
    const tables = await tablesOf(database, trx);
    const manifest: ExportManifest = { format: EXPORT_FORMAT, version: EXPORT_VERSION, tally_version: tallyVersion, migrations: await migrationsOf(database, trx), exported_at: now.toISOString(), tables: [] };
    for (const table of tables) {
      const file = `${table.name}.jsonl`;
      const out = createWriteStream(join(dir, file));
      let rows = 0;
      for (let offset = 0; ; offset += PAGE) {
        const page = await pageOf(database, trx, table, offset);
        for (const line of page) if (!out.write(`${line}\n`)) await once(out, 'drain');
        rows += page.length;
        if (page.length < PAGE) break;
      }
      out.end();
      await once(out, 'finish');
      manifest.tables.push({ name: table.name, file, rows, columns: table.columns });
    }
    writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    return manifest;
  });
}

async function pageOf(database: Database, trx: Executor, table: TableInfo, offset: number): Promise<string[]> {
  const t = `${quoteIdent(database.schema)}.${quoteIdent(table.name)}`;
  // Ordered by the primary key (the whole row where there is none), so two exports of the same data are the same bytes.
  const order = table.key.length > 0 ? table.key.map((k) => `t.${quoteIdent(k)}`).join(', ') : 't::text';
  const r = await sql<{ j: string }>`select row_to_json(t)::text as j from ${sql.raw(t)} t order by ${sql.raw(order)} limit ${PAGE} offset ${offset}`.execute(trx);
  return r.rows.map((x) => x.j);
}

export type RestoreOutcome =
  | { ok: true; tables: { name: string; rows: number }[] }
  | { ok: false; error: 'not_an_export' | 'version' | 'migrations' | 'not_empty' | 'integrity'; message: string };

/** Tables whose rows make a database "not empty": restoring over them would mix two systems' data. */
const OWNING_TABLES = ['users', 'workspaces', 'credit_ledger', 'api_keys'];

/**
 * Restores an export into an empty database of the same migrations, exactly, in one transaction.
 * Triggers and foreign-key checks are off while rows go in (`session_replication_role = replica`:
 * the rows were consistent when exported, and triggers would restamp them); every foreign key is then
 * checked once over the whole data, and sequences move past the highest restored value.
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
    const [r] = (await sql<{ n: string }>`select count(*)::text as n from ${sql.raw(`${quoteIdent(database.schema)}.${quoteIdent(name)}`)}`.execute(database.db)).rows;
    if (Number(r?.n) > 0) return { ok: false, error: 'not_empty', message: `this database is not empty (${name} has rows): an export restores into an empty one only` };
  }
  const tables = manifest.tables ?? [];
  return database.db.transaction().execute(async (trx) => {
    await sql`set local session_replication_role = replica`.execute(trx);
    const known = new Map((await tablesOf(database, trx)).map((t) => [t.name, t]));
    const restored: { name: string; rows: number }[] = [];
    // What the migrations wrote (catalogue rows) is replaced by what the export holds.
    for (const t of tables) await sql`delete from ${sql.raw(`${quoteIdent(database.schema)}.${quoteIdent(t.name)}`)}`.execute(trx);
    for (const t of tables) {
      const info = known.get(t.name);
      if (!info) throw new RestoreRefused(`the export has a table this database has not: ${t.name}`);
      restored.push({ name: t.name, rows: await restoreTable(database, trx, info, join(dir, t.file)) });
    }
    const broken = await foreignKeyViolations(database, trx);
    if (broken.length > 0) throw new RestoreRefused(`the export's rows break foreign keys: ${broken.slice(0, 5).join('; ')}`);
    await moveSequences(database, trx);
    return { ok: true as const, tables: restored };
  }).catch((err: unknown) => {
    if (err instanceof RestoreRefused) return { ok: false as const, error: 'integrity' as const, message: err.message };
    throw err;
  });
}

class RestoreRefused extends Error {}

async function restoreTable(database: Database, trx: Executor, info: TableInfo, file: string): Promise<number> {
  const t = `${quoteIdent(database.schema)}.${quoteIdent(info.name)}`;
  const cols = info.columns.map(quoteIdent).join(', ');
  let batch: string[] = [];
  let rows = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const json = `[${batch.join(',')}]`;
    await sql`insert into ${sql.raw(t)} (${sql.raw(cols)}) overriding system value select ${sql.raw(cols)} from json_populate_recordset(null::${sql.raw(t)}, ${json}::json)`.execute(trx);
    rows += batch.length;
    batch = [];
  };
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    batch.push(line);
    if (batch.length >= 500) await flush();
  }
  await flush();
  return rows;
}

/** Every foreign key of the schema, checked over the restored rows (the checks were off while they went in). */
async function foreignKeyViolations(database: Database, trx: Executor): Promise<string[]> {
  const fks = await sql<{ name: string; child: string; parent: string; parent_schema: string; child_cols: string[]; parent_cols: string[] }>`
    select con.conname as name, c.relname as child, p.relname as parent, pn.nspname as parent_schema,
      array(select a.attname::text from unnest(con.conkey) with ordinality k(n, i) join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n order by k.i) as child_cols,
      array(select a.attname::text from unnest(con.confkey) with ordinality k(n, i) join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.n order by k.i) as parent_cols
    from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_class p on p.oid = con.confrelid
      join pg_namespace n on n.oid = c.relnamespace join pg_namespace pn on pn.oid = p.relnamespace
    where con.contype = 'f' and n.nspname = ${database.schema} and not c.relispartition`.execute(trx);
  const out: string[] = [];
  for (const fk of fks.rows) {
    const s = quoteIdent(database.schema);
    const notNull = fk.child_cols.map((c) => `c.${quoteIdent(c)} is not null`).join(' and ');
    const match = fk.child_cols.map((c, i) => `p.${quoteIdent(fk.parent_cols[i] ?? c)} = c.${quoteIdent(c)}`).join(' and ');
    const parentTable = `${quoteIdent(fk.parent_schema)}.${quoteIdent(fk.parent)}`;
    const [r] = (await sql<{ n: string }>`select count(*)::text as n from ${sql.raw(`${s}.${quoteIdent(fk.child)}`)} c where ${sql.raw(notNull)} and not exists (select 1 from ${sql.raw(parentTable)} p where ${sql.raw(match)})`.execute(trx)).rows;
    if (Number(r?.n) > 0) out.push(`${fk.child}.${fk.child_cols.join(',')} → ${fk.parent}: ${r?.n} row(s) (${fk.name})`);
  }
  return out;
}

/** Sequences owned by a column move past the highest value restored into it. */
async function moveSequences(database: Database, trx: Executor): Promise<void> {
  const seqs = await sql<{ seq: string; tbl: string; col: string }>`
    select s.relname as seq, t.relname as tbl, a.attname as col
    from pg_class s join pg_depend d on d.objid = s.oid and d.deptype in ('a', 'i') join pg_class t on t.oid = d.refobjid
    join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid join pg_namespace n on n.oid = s.relnamespace
    where s.relkind = 'S' and n.nspname = ${database.schema}`.execute(trx);
  for (const q of seqs.rows) {
    const s = quoteIdent(database.schema);
    await sql`select setval(${`${s}.${quoteIdent(q.seq)}`}::regclass, coalesce((select max(${sql.raw(quoteIdent(q.col))}) from ${sql.raw(`${s}.${quoteIdent(q.tbl)}`)}), 0) + 1, false)`.execute(trx);
  }
}
