import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';
import { sql } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import { type App, createApp } from '../../src/app.js';
import type { Config } from '../../src/config/config.js';
import { type Database, openDatabase } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import type { TallySecrets } from './children.js';
import type { BenchOptions } from './options.js';
import { must } from '../../src/lib/must.js';

/** The accounts every scenario uses; the same ids exist on both sides. */
export interface BenchAccounts {
  hotHttp: string;
  hotSdk: string;
  hotHolds: string;
  spread: string[];
}

/** Credits every account starts with: far more than any run debits (Tally runs with no cap). */
export const FUNDING = 1_000_000_000;

export interface TallySide {
  schema: string;
  database: Database;
  /** The in-process Tally the SDK scenarios call (same schema as the HTTP child). */
  app: App;
  secrets: TallySecrets;
}

/**
 * A fresh schema `bench_<random>`, migrated, with an in-process app on it (balance cap off, no
 * sign-up bonus) for set-up, the SDK scenarios and the checks.
 */
export async function openTally(opts: BenchOptions): Promise<TallySide> {
  const schema = `bench_${randomBytes(5).toString('hex')}`;
  const database = await openDatabase({ kind: 'postgres', url: opts.url, poolMax: opts.serverPoolMax, schema });
  try {
    const outcome = await migrate(database);
    if (!outcome.ok) throw new Error(`migrate: ${outcome.message}`);
    const secrets: TallySecrets = {
      serviceKey: `tsk_${randomBytes(24).toString('hex')}`,
      jwtSecret: randomBytes(32).toString('hex'),
      encryptionKey: randomBytes(32).toString('hex'),
      jobsCallbackSecret: randomBytes(32).toString('hex'),
    };
    const config: Config = {
      env: 'production',
      http: { port: 0, host: '127.0.0.1', bodyLimit: 1_048_576 },
      database: { kind: 'postgres', url: opts.url, poolMax: opts.serverPoolMax, schema },
      dataDir: '/nonexistent',
      auth: { serviceKey: secrets.serviceKey, jwtSecret: secrets.jwtSecret, jwtTtlSeconds: 3600, refreshTtlSeconds: 86_400 },
      encryptionKey: Buffer.from(secrets.encryptionKey, 'hex'),
      jobs: { callbackSecret: secrets.jobsCallbackSecret, callbackToleranceSeconds: 300 },
      credits: { balanceCap: null, signupBonus: 0 },
      logLevel: 'silent',
    };
    const logger = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;
    const app = await createApp({ config, database, logger });
    return { schema, database, app, secrets };
  } catch (err) {
    await dropTally(database, schema).catch(() => undefined);
    throw err;
  }
}

export async function dropTally(database: Database, schema: string): Promise<void> {
  await database.root.schema.dropSchema(schema).ifExists().cascade().execute();
}

export function benchAccounts(count: number): BenchAccounts {
  const width = String(count).length;
  return {
    hotHttp: 'bench_hot_http',
    hotSdk: 'bench_hot_sdk',
    hotHolds: 'bench_hot_holds',
    spread: Array.from({ length: count }, (_, i) => `bench_u_${String(i).padStart(width, '0')}`),
  };
}

export const allIds = (a: BenchAccounts): string[] => [a.hotHttp, a.hotSdk, a.hotHolds, ...a.spread];

/** Runs `fn` over `items` with at most `limit` at once. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(must(items[next++], 'an item below the length'));
    }),
  );
}

/** Creates the users through Tally's own API (in process) and funds each with one grant. */
export async function seedTally(tally: TallySide, accounts: BenchAccounts): Promise<void> {
  const auth = { authorization: `Bearer ${tally.secrets.serviceKey}` };
  const post = async (url: string, payload: Record<string, unknown>, idempotencyKey: string) => {
    const res = await tally.app.server.inject({ method: 'POST', url, headers: { ...auth, 'idempotency-key': idempotencyKey }, payload });
    if (res.statusCode !== 201) throw new Error(`set-up ${url} → ${res.statusCode}: ${res.body}`);
  };
  // The metric the usage-event scenarios charge: one credit per unit, no free quota.
  await post('/v1/cost-models', { metric: 'bench_tokens', formula: 'quantity * base_rate', base_rate: '1', daily_free_quota: 0 }, 'bench-cost-model');
  await eachLimited(allIds(accounts), 16, async (id) => {
    await post('/v1/users', { id, email: `${id}@example.com` }, `bench-user-${id}`);
    await post('/v1/credits/grant', { user_id: id, amount: FUNDING, reason: 'bench funding' }, `bench-fund-${id}`);
  });
}

/** Loads baseline.sql into its own `baseline` schema (it drops and recreates its tables) and seeds it. */
export async function seedBaseline(opts: BenchOptions, accounts: BenchAccounts): Promise<void> {
  const script = readFileSync(opts.baselineSql, 'utf8');
  const client = new pg.Client({ connectionString: opts.url });
  await client.connect();
  try {
    await client.query(script);
    // The baseline's credit function caps balances at 50,000; set them directly instead.
    await client.query(
      `insert into baseline.users (id, credits_balance, credits_total)
       select id, $2::bigint, $2::bigint from unnest($1::text[]) as id`,
      [allIds(accounts), FUNDING],
    );
    await client.query('analyze baseline.users');
  } finally {
    await client.end();
  }
}

export async function dropBaseline(opts: BenchOptions): Promise<void> {
  const client = new pg.Client({ connectionString: opts.url });
  await client.connect();
  try {
    await client.query('drop schema if exists baseline cascade');
  } finally {
    await client.end();
  }
}

/** Machine and server facts printed with the results. */
export async function postgresInfo(database: Database): Promise<{ version: string; settings: Record<string, string> }> {
  const version = must((await sql<{ v: string }>`select version() as v`.execute(database.root)).rows[0], 'select version() returns one row').v;
  const rows = await sql<{ name: string; setting: string }>`select name, current_setting(name) as setting from pg_settings
    where name in ('max_connections', 'shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'server_version')`.execute(
    database.root,
  );
  return { version, settings: Object.fromEntries(rows.rows.map((r) => [r.name, r.setting])) };
}
