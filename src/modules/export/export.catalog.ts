import { sql } from 'kysely';
import type { Database, Executor } from '../../db/database.js';

/**
 * What `tally export` reads and `tally import --from <export>` writes: every table of Tally's schema
 * (partitioned tables once, through their parent), but the migration ledger, which the target has
 * of its own. Read from the catalog, so a table added by a later migration is exported with no change
 * here (docs/export.md).
 */
export interface TableInfo {
  name: string;
  /** Columns a row is restored through: all but generated ones, in table order. */
  columns: string[];
  /** The primary key's columns (the export's order); empty: the table has none (ordered by the whole row). */
  key: string[];
}

export const MIGRATIONS_TABLE = 'tally_migrations';

export async function tablesOf(database: Database, executor: Executor = database.db): Promise<TableInfo[]> {
  const rows = await sql<{ name: string; columns: string[]; key: string[] | null }>`
    select c.relname as name,
      array(select a.attname::text from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = '' order by a.attnum) as columns,
      (select array(select a.attname::text from unnest(i.indkey) with ordinality k(attnum, n) join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum order by k.n)
         from pg_index i where i.indrelid = c.oid and i.indisprimary) as key
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${database.schema} and c.relkind in ('r', 'p') and not c.relispartition and c.relname <> ${MIGRATIONS_TABLE}
    order by c.relname`.execute(executor);
  return rows.rows.map((r) => ({ name: r.name, columns: r.columns, key: r.key ?? [] }));
}

/** The migrations applied to this database, by name, in order: an export restores only onto the same list. */
export async function migrationsOf(database: Database, executor: Executor = database.db): Promise<string[]> {
  const rows = await sql<{ name: string }>`select name from ${sql.table(`${database.schema}.${MIGRATIONS_TABLE}`)} order by version`.execute(executor);
  return rows.rows.map((r) => r.name);
}

export const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** A foreign key between two of Tally's tables: what a restore orders its tables by. */
export interface ForeignKey {
  name: string;
  child: string;
  parent: string;
  childColumns: string[];
  /** Every child column may be null: the key can be filled in a second pass (a cycle). */
  nullable: boolean;
}

/** Foreign keys within Tally's schema (partitions' copies left out: their parent's stands for them). */
export async function foreignKeysOf(database: Database, executor: Executor = database.db): Promise<ForeignKey[]> {
  const rows = await sql<{ name: string; child: string; parent: string; child_columns: string[]; nullable: boolean }>`
    select con.conname as name, c.relname as child, p.relname as parent,
      array(select a.attname::text from unnest(con.conkey) with ordinality k(n, i) join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n order by k.i) as child_columns,
      not exists (select 1 from pg_attribute a where a.attrelid = con.conrelid and a.attnum = any(con.conkey) and a.attnotnull) as nullable
    from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_class p on p.oid = con.confrelid
      join pg_namespace n on n.oid = c.relnamespace
    where con.contype = 'f' and n.nspname = ${database.schema} and p.relnamespace = n.oid and not c.relispartition and con.conparentid = 0
    order by c.relname, con.conname`.execute(executor);
  return rows.rows.map((r) => ({ name: r.name, child: r.child, parent: r.parent, childColumns: r.child_columns, nullable: r.nullable }));
}

/** Every table and partition of Tally's schema: the relations whose user triggers a restore turns off. */
export async function relationsOf(database: Database, executor: Executor = database.db): Promise<string[]> {
  const rows = await sql<{ name: string }>`
    select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${database.schema} and c.relkind in ('r', 'p') and c.relname <> ${MIGRATIONS_TABLE}
    order by c.relname`.execute(executor);
  return rows.rows.map((r) => r.name);
}
