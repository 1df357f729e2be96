import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, sql, type Transaction } from 'kysely';
import type pg from 'pg';
import type { Config } from '../config/config.js';
import type { DB } from './database.types.js';
import { acquireDataDirLock, type DataDirLock } from './data-dir-lock.js';
import { PGliteDialect, SCRIPT_MARKER } from './pglite-dialect.js';
import { openPostgres, type PostgresLog, TallyPostgresDialect } from './postgres.js';

export type DatabaseKind = 'pglite' | 'postgres';
export type Db = Kysely<DB>;
export type Trx = Transaction<DB>;
/** Anything a repository can run a query on: the database or an open transaction. */
export type Executor = Kysely<DB>;

/**
 * One open database: Kysely bound to Tally's schema (every table reference is qualified by the
 * WithSchema plugin, so no connection-level search_path is needed — which keeps transaction-mode
 * poolers such as Supavisor/pgbouncer working).
 */
export interface Database {
  readonly kind: DatabaseKind;
  readonly schema: string;
  readonly db: Db;
  /** The same connection(s) without the schema plugin, for catalog and cross-schema queries. */
  readonly root: Kysely<unknown>;
  /** The PostgreSQL pool, for hot paths that prepare statements by name (src/db/statements.ts). */
  readonly pool?: pg.Pool;
  /**
   * PostgreSQL only: true behind a transaction-mode pooler (no named prepared statements, no
   * session state); `beginSql` opens a transaction with the wait bounds; `listen` is where a
   * LISTEN connection can go (null: nowhere, caches then always read the database).
   */
  readonly pooled?: boolean;
  readonly beginSql?: string;
  readonly listen?: pg.ClientConfig | null;
  /**
   * PGlite on a directory: this process's lock on it (src/db/data-dir-lock.ts); `tally start`
   * announces its URL there so the CLI can route through it. Released by close() and on exit.
   */
  readonly dataDirLock?: DataDirLock;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** An already created PGlite instance (tests share one per file). */
  pglite?: PGlite;
  /** Where a PostgreSQL pool reports connections lost while idle. */
  log?: PostgresLog;
}

export async function openDatabase(config: Config['database'], options: OpenOptions = {}): Promise<Database> {
  if (config.kind === 'postgres') {
    const { pool, pooled, beginSql, listen } = await openPostgres(config.url, config.poolMax, config, options.log);
    const root = new Kysely<unknown>({ dialect: new TallyPostgresDialect(pool, beginSql) });
    return {
      kind: 'postgres',
      schema: config.schema,
      root,
      pool,
      pooled,
      beginSql,
      listen,
      db: (root as unknown as Kysely<DB>).withSchema(config.schema),
      close: () => root.destroy(),
    };
  }
  if (!options.pglite && config.dataDir) {
    // With every secret in the environment nothing else creates the data folder (secrets.json is
    // not written): make it here, private, or PGlite stops with ENOENT.
    mkdirSync(dirname(config.dataDir), { recursive: true, mode: 0o700 });
  }
  // One process per PGlite directory: a second opener gets DataDirLocked here, before PGlite starts.
  const lock = !options.pglite && config.dataDir ? acquireDataDirLock(config.dataDir) : undefined;
  let pglite: PGlite;
  try {
    pglite = options.pglite ?? (await PGlite.create(config.dataDir ?? undefined));
  } catch (err) {
    lock?.release();
    throw err;
  }
  const root = new Kysely<unknown>({ dialect: new PGliteDialect(pglite) });
  return {
    kind: 'pglite',
    schema: config.schema,
    root,
    db: (root as unknown as Kysely<DB>).withSchema(config.schema),
    ...(lock ? { dataDirLock: lock } : {}),
    close: async () => {
      try {
        await root.destroy();
        if (!options.pglite) await pglite.close();
      } finally {
        lock?.release();
      }
    },
  };
}

/** Runs a multi-statement SQL script on an executor (inside its transaction, if any). */
export async function runScript(executor: Kysely<unknown>, script: string): Promise<void> {
  await sql.raw(SCRIPT_MARKER + '\n' + script).execute(executor);
}
