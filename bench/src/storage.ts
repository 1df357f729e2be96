import pg from 'pg';
import { must } from '../../src/lib/must.js';

/**
 * Bytes written per debit (issue 21): what one side's tables grew by (heap + indexes + TOAST of
 * every table in its schema: `pg_total_relation_size`) and the WAL the cluster wrote
 * (`pg_current_wal_lsn()` before and after), divided by the debits the run wrote.
 *
 * WAL: with `pg_walinspect` (contrib, PostgreSQL 15+; the bench creates the extension when it
 * may), only the records that touch the side's own relations (tables, indexes, TOAST) and the commit
 * records of their transactions are counted, so neighbours writing to the same cluster do not
 * count. Without it, the cluster's WAL position difference: an upper bound on a shared server.
 * Table sizes grow in 8 kB pages and reuse free space, so a short run rounds; over thousands of
 * debits that is noise.
 */
export interface StorageMark {
  lsn: string;
  tableBytes: number;
}

export interface StorageUse {
  debits: number;
  tableBytes: number;
  walBytes: number;
  /** Per debit (NaN when the run wrote none). */
  tablePerDebit: number;
  walPerDebit: number;
  /** `relations`: pg_walinspect, this side's records only; `cluster`: the whole cluster's WAL. */
  walScope: 'relations' | 'cluster';
}

export async function storageMark(pool: pg.Pool, schema: string): Promise<StorageMark> {
  const res = await pool.query<{ lsn: string; bytes: string }>(
    `select pg_current_wal_flush_lsn()::text as lsn,
            coalesce(sum(pg_total_relation_size(c.oid)), 0)::text as bytes
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1 and c.relkind in ('r', 'p', 'm')`,
    [schema],
  );
  const row = must(res.rows[0], 'an aggregate returns one row');
  return { lsn: row.lsn, tableBytes: Number(row.bytes) };
}

export async function storageUse(pool: pg.Pool, schema: string, before: StorageMark, debits: number): Promise<StorageUse> {
  const after = await storageMark(pool, schema);
  const own = await ownWal(pool, schema, before.lsn, after.lsn);
  const walBytes = own ?? Number(must((await pool.query<{ wal: string }>('select pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::text as wal', [after.lsn, before.lsn])).rows[0], 'one row').wal);
  const tableBytes = after.tableBytes - before.tableBytes;
  return {
    debits,
    tableBytes,
    walBytes,
    tablePerDebit: debits > 0 ? tableBytes / debits : Number.NaN,
    walPerDebit: debits > 0 ? walBytes / debits : Number.NaN,
    walScope: own === null ? 'cluster' : 'relations',
  };
}

/**
 * The WAL a schema's relations wrote between two positions (their records, plus the commit records
 * of the transactions that wrote them), or null when pg_walinspect is not available.
 */
async function ownWal(pool: pg.Pool, schema: string, from: string, to: string): Promise<number | null> {
  try {
    await pool.query('create extension if not exists pg_walinspect');
    const res = await pool.query<{ bytes: string }>(
      `with rels as (
         select c.oid, c.reltoastrelid from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1),
       nodes as (
         select pg_relation_filenode(oid) as node from rels
         union select pg_relation_filenode(reltoastrelid) from rels where reltoastrelid <> 0
         union select pg_relation_filenode(i.indexrelid) from pg_index i join rels r on i.indrelid = r.reltoastrelid),
       pattern as (select '/(' || string_agg(node::text, '|') || ')( |$)' as re from nodes where node is not null),
       w as (select * from pg_get_wal_records_info($2::pg_lsn, $3::pg_lsn)),
       mine as (select w.* from w, pattern where w.block_ref ~ pattern.re)
       select (coalesce((select sum(record_length) from mine), 0)
             + coalesce((select sum(record_length) from w where resource_manager = 'Transaction'
                           and xid in (select xid from mine where xid <> '0')), 0))::text as bytes`,
      [schema, from, to],
    );
    return Number(must(res.rows[0], 'an aggregate returns one row').bytes);
  } catch {
    return null;
  }
}
