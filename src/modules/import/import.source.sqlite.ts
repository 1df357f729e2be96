import { resolve } from 'node:path';
import type { SourceDb } from './import.source.js';

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * A SQLite source (seed 000's `cc.db`, written by SQLAlchemy), read-only. `better-sqlite3` is loaded
 * here, on first use, so a start that imports nothing never loads the native module.
 *
 * Shapes write one SQL for both sources: `$n` placeholders are rewritten to SQLite's `?` (in the
 * order they occur, so `$1` may appear twice), and `src.after(column, $n)` compares times in each
 * dialect (SQLite keeps them as text: `julianday` reads both SQLAlchemy's and ISO forms).
 */
export async function openSqliteSource(file: string): Promise<SourceDb> {
  const { default: Sqlite } = await import('better-sqlite3');
  const db = new Sqlite(file, { readonly: true, fileMustExist: true });
  const rows = async <T>(text: string, params: unknown[] = []): Promise<T[]> => {
    const order: number[] = [];
    const sql = text.replace(/\$(\d+)(::[a-z]+)?/g, (_m, n: string) => {
      order.push(Number(n) - 1);
      return '?';
    });
    const values = order.map((i) => {
      const v = params[i];
      return v instanceof Date ? v.toISOString() : typeof v === 'boolean' ? Number(v) : v;
    });
    return db.prepare(sql).all(...values) as T[];
  };
  const t = (table: string) => quote(table);
  return {
    fingerprint: `sqlite://${resolve(file)}`,
    dialect: 'sqlite',
    async tables() {
      const r = await rows<{ name: string }>(`select name from sqlite_master where type in ('table', 'view')`);
      return new Set(r.map((x) => x.name));
    },
    t,
    rows,
    after: (column, param) => `julianday(${column}) > julianday(${param})`,
    batch(table, key, columns, after, size) {
      const k = `${t(table)}.${quote(key)}`;
      return after === null
        ? rows(`select ${columns} from ${t(table)} order by ${k} limit $1`, [size])
        : rows(`select ${columns} from ${t(table)} where ${k} > $1 order by ${k} limit $2`, [after, size]);
    },
    close: async () => {
      db.close();
    },
  };
}
