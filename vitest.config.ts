import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * The suite runs once per database: always on PGlite, and on PostgreSQL whenever
 * TEST_DATABASE_URL or DATABASE_URL is set (CI sets it and requires the server).
 */
const postgresUrl = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
/** A transaction-mode PgBouncer in front of the same server (.ci/pgbouncer.sh starts one). */
const pgbouncerUrl = process.env.TEST_PGBOUNCER_URL;

const ALL = ['test/**/*.test.ts', 'src/**/*.test.ts'];

const project = (name: 'pglite' | 'postgres') => ({
  extends: true as const,
  test: {
    name,
    include: ALL,
    env: { TALLY_TEST_DB: name },
    // Every test database starts from one migrated dump (PGlite; a worker reuses the ones its files
    // closed, reset: test/support/pglite-pool.ts) or template database (PostgreSQL),
    // made once per run: test/support/pglite-snapshot.ts, test/support/postgres-template.ts.
    globalSetup: [name === 'pglite' ? 'test/support/pglite-snapshot.ts' : 'test/support/postgres-template.ts'],
  },
});

/**
 * The money tests again, through the pooler: every ledger, idempotency, job and usage path must
 * work where consecutive transactions land on different server connections (docs/operations.md).
 */
const pooled = (url: string) => ({
  extends: true as const,
  test: {
    name: 'pgbouncer',
    include: ['test/{credits,idempotency,jobs,billing,payments,pooler,ledger-plans,sdk}.test.ts'],
    // Test databases are copied and dropped on the server itself (TALLY_TEST_ADMIN_URL), used through the pooler.
    globalSetup: ['test/support/postgres-template.ts'],
    env: { TALLY_TEST_DB: 'postgres', TEST_DATABASE_URL: url, TALLY_TEST_POOLER: 'transaction', TALLY_TEST_ADMIN_URL: postgresUrl ?? '' },
  },
});

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // A worker runs its files one after another in one process, importing the app and its
    // dependencies once instead of once per file (that import was a third of a file's time on two
    // busy cores). Every file builds its own apps and databases and closes them; module-level
    // state in test/support is reset per file where it exists. TALLY_TEST_ISOLATE=1: a process per file.
    isolate: process.env['TALLY_TEST_ISOLATE'] === '1',
    // One test file per core (Vitest's default leaves one core idle: a single worker on two cores).
    // Most files wait on PostgreSQL, sockets or child processes as much as they compute.
    // TALLY_TEST_WORKERS overrides it.
    maxWorkers: Number(process.env['TALLY_TEST_WORKERS'] ?? availableParallelism()),
    projects: [project('pglite'), ...(postgresUrl ? [project('postgres')] : []), ...(postgresUrl && pgbouncerUrl ? [pooled(pgbouncerUrl)] : [])],
  },
});
