import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import pino from 'pino';
import { inject } from 'vitest';
import type { FastifyBaseLogger } from 'fastify';
import { type App, createApp } from '../../src/app.js';
import type { Config } from '../../src/config/config.js';
import { type Database, openDatabase } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { giveBackPglite, takePglite } from './pglite-pool.js';
import { adminUrl, CLONE_PREFIX, DONE_PREFIX, databaseUrl, ident } from './postgres-template.js';

/** Which database this test run targets: set per Vitest project (see vitest.config.ts). */
export const TARGET: 'pglite' | 'postgres' = process.env['TALLY_TEST_DB'] === 'postgres' ? 'postgres' : 'pglite';
export const POSTGRES_URL = process.env['TEST_DATABASE_URL'] ?? process.env['DATABASE_URL'] ?? '';

export interface TestDb {
  database: Database;
  /** Drops the test's schema (PostgreSQL) or closes the in-memory database (PGlite). */
  close(): Promise<void>;
}

/** The PostgreSQL URL each test database is reached by (its own database, or a schema on POSTGRES_URL). */
const urls = new WeakMap<Database, string>();

/**
 * A fresh, migrated database for one test file: an in-memory PGlite loaded from the run's migrated
 * snapshot, or on PostgreSQL a copy of the run's migrated template database (both made once per
 * run: test/support/pglite-snapshot.ts, test/support/postgres-template.ts). Tests never see each
 * other's rows. `fresh`: an empty database that every migration runs on (test/migrate.test.ts).
 */
export async function createTestDb(options: { fresh?: boolean } = {}): Promise<TestDb> {
  if (TARGET === 'postgres') {
    const template = options.fresh ? undefined : postgresTemplate();
    return template ? postgresCopy(template) : postgresSchema();
  }
  const pglite = options.fresh ? undefined : await pgliteFromSnapshot();
  const database = await openDatabase({ kind: 'pglite', dataDir: null, schema: 'tally' }, pglite ? { pglite } : {});
  // On a snapshot this only checks the checksums: every migration is applied already.
  const outcome = await migrate(database);
  if (!outcome.ok) throw new Error(outcome.message);
  let closed = false;
  return {
    database,
    close: async () => {
      if (closed) return;
      closed = true;
      await database.close();
      // Reset and kept for the worker's next file when it provably can be (test/support/pglite-pool.ts).
      if (pglite) await giveBackPglite(pglite);
    },
  };
}

/** A new schema on POSTGRES_URL, every migration run on it, dropped afterwards. */
async function postgresSchema(): Promise<TestDb> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const database = await openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 20, schema });
  urls.set(database, POSTGRES_URL);
  const outcome = await migrate(database);
  if (!outcome.ok) throw new Error(outcome.message);
  return {
    database,
    close: async () => {
      await database.root.schema.dropSchema(schema).ifExists().cascade().execute();
      await database.close();
    },
  };
}

/**
 * A database of its own, copied from the migrated template; reached through POSTGRES_URL's server
 * (or pooler). On close it is renamed for the run's set-up to drop in the background.
 */
async function postgresCopy(source: { template: string; run: string }): Promise<TestDb> {
  const name = `${CLONE_PREFIX}${source.run}_${randomBytes(5).toString('hex')}`;
  await asAdmin((c) => c.query(`create database ${ident(name)} template ${ident(source.template)}`));
  const url = databaseUrl(POSTGRES_URL, name);
  const database = await openDatabase({ kind: 'postgres', url, poolMax: 20, schema: 'tally' });
  urls.set(database, url);
  // Checks the checksums only: the template has every migration applied.
  const outcome = await migrate(database);
  if (!outcome.ok) throw new Error(outcome.message);
  return {
    database,
    close: async () => {
      await database.close();
      await asAdmin(async (c) => {
        // A pooler may still hold server connections to it; nothing else does once the pool is closed.
        await c.query('select pg_terminate_backend(pid, 5000) from pg_stat_activity where datname = $1', [name]);
        try {
          await c.query(`alter database ${ident(name)} rename to ${ident(`${DONE_PREFIX}${name.slice(CLONE_PREFIX.length)}`)}`);
        } catch {
          await c.query(`drop database if exists ${ident(name)} with (force)`);
        }
      });
    },
  };
}

/** Runs `work` on a connection to the server itself (never the pooler): creating and renaming databases. */
async function asAdmin<T>(work: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: adminUrl() ?? POSTGRES_URL });
  await c.connect();
  try {
    return await work(c);
  } finally {
    await c.end();
  }
}

/** The run's template (test/support/postgres-template.ts), or undefined outside Vitest or without it. */
function postgresTemplate(): { template: string; run: string } | undefined {
  try {
    return inject('postgresTemplate');
  } catch {
    return undefined;
  }
}

let snapshot: Blob | null | undefined;

/**
 * An in-memory PGlite that starts from the migrated dump test/support/pglite-snapshot.ts made
 * once for the run (loading it is several times cheaper than booting and migrating); undefined
 * where no snapshot was provided (outside the PGlite project, or outside Vitest).
 */
async function pgliteFromSnapshot(): Promise<PGlite | undefined> {
  if (snapshot === undefined) {
    // Outside Vitest (scripts/api-types.ts builds an app with this harness) there is no snapshot.
    let file: string | undefined;
    try {
      file = inject('pgliteSnapshot');
    } catch {
      file = undefined;
    }
    snapshot = file ? new Blob([readFileSync(file)]) : null;
  }
  const from = snapshot;
  return from ? takePglite(() => PGlite.create({ loadDataDir: from })) : undefined;
}

/**
 * A new data directory for a Tally CLI process (TALLY_DATA_DIR) under `parent`. On the PGlite
 * project its `pgdata` is the run's migrated snapshot unpacked (the system `tar`, ~0.1 s), so the
 * CLI opens an existing database instead of booting an empty one (PGlite's initdb is ~2 s a
 * directory); a process using its own schema (`TALLY_DB_SCHEMA`) still migrates that schema.
 * Elsewhere, an empty directory. Not for tests of a first start (cli.test.ts keeps its own).
 */
export function seededDataDir(parent: string = tmpdir(), prefix = 'tally-'): string {
  const dir = mkdtempSync(join(parent, prefix));
  let file: string | undefined;
  try {
    file = inject('pgliteSnapshot');
  } catch {
    file = undefined;
  }
  if (TARGET === 'pglite' && file) {
    mkdirSync(join(dir, 'pgdata'));
    execFileSync('tar', ['-xf', file, '-C', join(dir, 'pgdata')], { stdio: 'ignore' });
  }
  return dir;
}

/** The cheapest argon2id cost the library accepts in spirit (one pass over 512 KiB): milliseconds per hash. */
export const TEST_PASSWORD_HASHING = { memoryKib: 512, timeCost: 1, parallelism: 1 } as const;

export function testConfig(database: Database, overrides: Partial<Config> = {}): Config {
  return {
    env: 'test',
    http: { port: 0, host: '127.0.0.1', bodyLimit: 65_536 },
    database:
      database.kind === 'postgres'
        ? { kind: 'postgres', url: urls.get(database) ?? POSTGRES_URL, poolMax: 20, schema: database.schema }
        : { kind: 'pglite', dataDir: null, schema: database.schema },
    dataDir: '/nonexistent',
    auth: {
      serviceKey: `tsk_${randomBytes(24).toString('hex')}`,
      jwtSecret: randomBytes(32).toString('hex'),
      jwtTtlSeconds: 3600,
      refreshTtlSeconds: 30 * 86_400,
      // Production's argon2id cost (64 MiB, 3 passes) takes ~0.5 s per sign-up or login on a busy
      // core; the suite signs in hundreds of times. test/auth.test.ts proves the production default.
      passwordHashing: TEST_PASSWORD_HASHING,
    },
    encryptionKey: randomBytes(32),
    jobs: { callbackSecret: randomBytes(32).toString('hex'), callbackToleranceSeconds: 300 },
    credits: { balanceCap: 50_000, signupBonus: 3 },
    logLevel: 'silent',
    // Each app gets its own storage root, so tests never see each other's bytes.
    storage: { driver: 'local', root: mkdtempSync(join(tmpdir(), 'tally-storage-')) },
    ...overrides,
  };
}

/**
 * Two apps on one fresh database, each with its own services, queues and caches: two Tally
 * processes, as far as anything but the database can tell.
 */
export async function createTwoApps(overrides: Partial<Config>, clock: () => Date): Promise<{ db: TestDb; apps: [App, App]; close(): Promise<void> }> {
  const db = await createTestDb();
  const config = testConfig(db.database, overrides);
  const logger = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;
  const apps: [App, App] = [
    await createApp({ config, database: db.database, logger, clock }),
    await createApp({ config, database: db.database, logger, clock }),
  ];
  return {
    db,
    apps,
    close: async () => {
      for (const app of apps) {
        await app.server.close();
        await app.services.queue.stop();
      }
      await db.close();
    },
  };
}

export interface TestApp extends App {
  serviceKey: string;
  close(): Promise<void>;
}

export async function createTestApp(
  overrides: Partial<Config> = {},
  options: { clock?: () => Date; logger?: FastifyBaseLogger } = {},
): Promise<TestApp> {
  const testDb = await createTestDb();
  const config = testConfig(testDb.database, overrides);
  const logger = options.logger ?? (pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' }) as unknown as FastifyBaseLogger);
  const app = await createApp({ config, database: testDb.database, logger, ...(options.clock ? { clock: options.clock } : {}) });
  return {
    ...app,
    serviceKey: config.auth.serviceKey,
    close: async () => {
      await app.server.close();
      await app.services.queue.stop();
      await testDb.close();
      if (config.storage?.driver === 'local') rmSync(config.storage.root, { recursive: true, force: true });
    },
  };
}
