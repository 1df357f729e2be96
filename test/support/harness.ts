import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pino from 'pino';
import { inject } from 'vitest';
import type { FastifyBaseLogger } from 'fastify';
import { type App, createApp } from '../../src/app.js';
import type { Config } from '../../src/config/config.js';
import { type Database, openDatabase } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';

/** Which database this test run targets: set per Vitest project (see vitest.config.ts). */
export const TARGET: 'pglite' | 'postgres' = process.env['TALLY_TEST_DB'] === 'postgres' ? 'postgres' : 'pglite';
export const POSTGRES_URL = process.env['TEST_DATABASE_URL'] ?? process.env['DATABASE_URL'] ?? '';

export interface TestDb {
  database: Database;
  /** Drops the test's schema (PostgreSQL) or closes the in-memory database (PGlite). */
  close(): Promise<void>;
}

/**
 * A fresh, migrated database for one test file: an in-memory PGlite, or a new schema on the
 * PostgreSQL server that is dropped afterwards. Tests never see each other's rows.
 */
export async function createTestDb(): Promise<TestDb> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const pglite = TARGET === 'pglite' ? await pgliteFromSnapshot() : undefined;
  const database =
    TARGET === 'postgres'
      ? await openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 20, schema })
      : await openDatabase({ kind: 'pglite', dataDir: null, schema: 'tally' }, pglite ? { pglite } : {});
  // On a snapshot this only checks the checksums: every migration is applied already.
  const outcome = await migrate(database);
  if (!outcome.ok) throw new Error(outcome.message);
  return {
    database,
    close: async () => {
      if (TARGET === 'postgres') await database.root.schema.dropSchema(schema).ifExists().cascade().execute();
      await database.close();
      await pglite?.close();
    },
  };
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
  return snapshot ? PGlite.create({ loadDataDir: snapshot }) : undefined;
}

/** The cheapest argon2id cost the library accepts in spirit (one pass over 512 KiB): milliseconds per hash. */
export const TEST_PASSWORD_HASHING = { memoryKib: 512, timeCost: 1, parallelism: 1 } as const;

export function testConfig(database: Database, overrides: Partial<Config> = {}): Config {
  return {
    env: 'test',
    http: { port: 0, host: '127.0.0.1', bodyLimit: 65_536 },
    database:
      database.kind === 'postgres'
        ? { kind: 'postgres', url: POSTGRES_URL, poolMax: 20, schema: database.schema }
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
