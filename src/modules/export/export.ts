import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { sql } from 'kysely';
import type { Database, Executor } from '../../db/database.js';
import { migrationsOf, quoteIdent, type TableInfo, tablesOf } from './export.catalog.js';
import { EXPORT_FORMAT, EXPORT_VERSION, type ExportManifest } from './export.format.js';

export { EXPORT_FORMAT, EXPORT_VERSION, type ExportManifest, isExportDir } from './export.format.js';
export { type RestoreOutcome, restoreExport } from './export.restore.js';

/**
 * `tally export` (docs/export.md): Tally's data as JSON lines, one file per table, and a manifest
 * that names the format, its version, the migrations the data was written under and each table's
 * rows. PostgreSQL writes each row (`row_to_json`) and reads it back (`json_populate_recordset`), so
 * times keep their microseconds and numbers their digits: a restore is exact.
 */
const PAGE = 1000;

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
      for (let after: string[] | null = null; ; ) {
        const page = await pageOf(database, trx, table, after);
        for (const line of page.lines) if (!out.write(`${line}\n`)) await once(out, 'drain');
        rows += page.lines.length;
        if (page.lines.length < PAGE) break;
        after = page.last;
      }
      out.end();
      await once(out, 'finish');
      manifest.tables.push({ name: table.name, file, rows, columns: table.columns });
    }
    writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    return manifest;
  });
}

/**
 * The ordering a table is read in, as expressions: its primary key, so two exports of the same data
 * are the same bytes and a page starts where the last one ended (an index range, not an offset).
 * A table without one is ordered by its whole row, then where the row lies (identical rows are the
 * same bytes, whichever comes first): exact, but each page sorts the table (docs/export.md).
 */
const orderOf = (table: TableInfo): string[] => (table.key.length > 0 ? table.key.map((k) => `t.${quoteIdent(k)}`) : ['t::text', 't.tableoid', 't.ctid']);

async function pageOf(database: Database, trx: Executor, table: TableInfo, after: string[] | null): Promise<{ lines: string[]; last: string[] | null }> {
  const t = `${quoteIdent(database.schema)}.${quoteIdent(table.name)}`;
  const order = orderOf(table);
  const keys = sql.raw(`array[${order.map((e) => `(${e})::text`).join(', ')}]`);
  // The last row's key values go back as text; PostgreSQL reads them as the column's type (the comparison's other side).
  const from = after === null ? sql`` : sql`where (${sql.raw(order.join(', '))}) > (${sql.join(after.map((v) => sql`${v}`))})`;
  const r = await sql<{ j: string; k: string[] }>`select row_to_json(t)::text as j, ${keys} as k from ${sql.raw(t)} t ${from} order by ${sql.raw(order.join(', '))} limit ${PAGE}`.execute(trx);
  return { lines: r.rows.map((x) => x.j), last: r.rows.at(-1)?.k ?? null };
}
