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
    // Every PGlite test database starts from one migrated dump (test/support/pglite-snapshot.ts).
    ...(name === 'pglite' ? { globalSetup: ['test/support/pglite-snapshot.ts'] } : {}),
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
    env: { TALLY_TEST_DB: 'postgres', TEST_DATABASE_URL: url, TALLY_TEST_POOLER: 'transaction' },
  },
});

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [project('pglite'), ...(postgresUrl ? [project('postgres')] : []), ...(postgresUrl && pgbouncerUrl ? [pooled(pgbouncerUrl)] : [])],
  },
});
