import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import type { Config } from '../config/config.js';
import type { DB } from './database.types.js';
import { PGliteDialect, SCRIPT_MARKER } from './pglite-dialect.js';

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
  close(): Promise<void>;
}

const INT8_OID = 20;

export interface OpenOptions {
  /** An already created PGlite instance (tests share one per file). */
  pglite?: PGlite;
}

export async function openDatabase(config: Config['database'], options: OpenOptions = {}): Promise<Database> {
  if (config.kind === 'postgres') {
    const pool = new pg.Pool({
      connectionString: config.url,
      max: config.poolMax,
      // Credits fit comfortably in 2^53; bigint columns come back as numbers on both databases.
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
      },
    });
    const root = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    return {
      kind: 'postgres',
      schema: config.schema,
      root,
      pool,
      db: (root as unknown as Kysely<DB>).withSchema(config.schema),
      close: () => root.destroy(),
    };
  }
  const pglite = options.pglite ?? (await PGlite.create(config.dataDir ?? undefined));
  const root = new Kysely<unknown>({ dialect: new PGliteDialect(pglite) });
  return {
    kind: 'pglite',
    schema: config.schema,
    root,
    db: (root as unknown as Kysely<DB>).withSchema(config.schema),
    close: async () => {
      await root.destroy();
      if (!options.pglite) await pglite.close();
    },
  };
}

/** Runs a multi-statement SQL script on an executor (inside its transaction, if any). */
export async function runScript(executor: Kysely<unknown>, script: string): Promise<void> {
  await sql.raw(SCRIPT_MARKER + '\n' + script).execute(executor);
}
