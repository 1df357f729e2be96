import { defineConfig } from 'vitest/config';

/**
 * The suite runs once per database: always on PGlite, and on PostgreSQL whenever
 * TEST_DATABASE_URL or DATABASE_URL is set (CI sets it and requires the server).
 */
const postgresUrl = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;

const project = (name: 'pglite' | 'postgres') => ({
  extends: true as const,
  test: { name, env: { TALLY_TEST_DB: name } },
});

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: postgresUrl ? [project('pglite'), project('postgres')] : [project('pglite')],
  },
});
