import { CompiledQuery, type DatabaseConnection, PostgresDialect, PostgresDriver, type TransactionSettings } from 'kysely';
import pg from 'pg';
import type { PostgresOptions } from '../config/config.js';

const INT8_OID = 20;

/** What `openPostgres` settled on; the Database carries it so hot paths and the LISTEN bus can ask. */
export interface PostgresSession {
  pool: pg.Pool;
  /** True behind a transaction-mode pooler: no named prepared statements, no session state, no LISTEN. */
  pooled: boolean;
  /** The BEGIN to send: plain `begin`, or (pooled) `begin` with the bounds set for the transaction. */
  beginSql: string;
  /** Where LISTEN can connect (a session connection), or null when none is known. */
  listen: pg.ClientConfig | null;
}

export interface PostgresLog {
  warn(obj: object, msg: string): void;
}

// Credits fit comfortably in 2^53; bigint columns come back as numbers on both databases.
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * Opens the pool. Every wait is bounded: `acquireTimeoutMs` for a connection (pg-pool's
 * connectionTimeoutMillis covers both dialling and queueing for a busy pool), and on the server
 * `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout`. A direct
 * connection gets those as startup options (one setting covers every query); a transaction-mode
 * pooler refuses startup options (PgBouncer: "unsupported startup parameter") and would leak
 * session settings between clients, so there each transaction sets them locally in its BEGIN.
 *
 * An idle pooled connection that the server ends (a restart, a failover, pg_terminate_backend)
 * emits 'error' on the pool; without a listener node would exit. It is logged and dropped, and
 * the next query dials afresh.
 */
export async function openPostgres(url: string, poolMax: number, opts: PostgresOptions, log?: PostgresLog): Promise<PostgresSession> {
  const pooled = opts.pooler === 'transaction' || (opts.pooler !== 'none' && (await isTransactionPooler(url)));
  const statementMs = opts.statementTimeoutMs ?? 10_000;
  const lockMs = opts.lockTimeoutMs ?? 5_000;
  const bounds = [`statement_timeout=${statementMs}`, `lock_timeout=${lockMs}`];
  const pool = new pg.Pool({
    connectionString: url,
    max: poolMax,
    connectionTimeoutMillis: opts.acquireTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'tally',
    types,
    ...(pooled ? {} : { options: [...bounds, `idle_in_transaction_session_timeout=${Math.max(statementMs, lockMs) * 2 || 60_000}`].map((b) => `-c ${b}`).join(' ') }),
  });
  pool.on('error', (err) => log?.warn({ err: err.message }, 'database connection lost while idle; it will be replaced'));
  // A checked-out connection has no listener of pg-pool's own: ended by the server between two
  // queries of a transaction, it would emit 'error' unheard and node would exit. Heard here, the
  // connection is marked unqueryable; its next query fails (503) and pg-pool drops it on release.
  pool.on('connect', (client) => client.on('error', (err) => log?.warn({ err: err.message }, 'database connection lost while in use')));
  const listen: pg.ClientConfig | null = pooled
    ? opts.directUrl
      ? { connectionString: opts.directUrl, types, application_name: opts.applicationName ?? 'tally' }
      : null
    : { connectionString: url, types, application_name: opts.applicationName ?? 'tally' };
  return {
    pool,
    pooled,
    beginSql: pooled ? `begin; ${bounds.map((b) => `set local ${b.replace('=', ' = ')}`).join('; ')}` : 'begin',
    listen,
  };
}

/**
 * A transaction-mode pooler hands one server connection to many clients, one transaction at a
 * time: two client connections, used one after the other, then land on the same server backend.
 * Directly, or through a session-mode pooler, two open connections never share a backend.
 */
export async function isTransactionPooler(url: string): Promise<boolean> {
  const a = new pg.Client({ connectionString: url });
  const b = new pg.Client({ connectionString: url });
  try {
    await a.connect();
    await b.connect();
    const pid = async (c: pg.Client) => (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
    for (let round = 0; round < 3; round++) {
      const first = await pid(a);
      const second = await pid(b);
      if (first === second) return true;
      if ((await pid(a)) !== first) return true;
    }
    return false;
  } finally {
    await Promise.allSettled([a.end(), b.end()]);
  }
}

/** Kysely's dialect with Tally's BEGIN (the bounds, behind a transaction-mode pooler). */
export class TallyPostgresDialect extends PostgresDialect {
  constructor(
    private readonly pool: pg.Pool,
    private readonly beginSql: string,
  ) {
    super({ pool });
  }
  override createDriver(): PostgresDriver {
    const beginSql = this.beginSql;
    return new (class extends PostgresDriver {
      override async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
        if (settings.isolationLevel || settings.accessMode || beginSql === 'begin') return super.beginTransaction(connection, settings);
        await connection.executeQuery(CompiledQuery.raw(beginSql));
      }
    })({ pool: this.pool });
  }
}
