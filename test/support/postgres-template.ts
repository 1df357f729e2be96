import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/database.js';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../../src/db/migrate.js';

/**
 * Vitest global set-up for the PostgreSQL projects (postgres, pgbouncer): one migrated template
 * database, and per test database a `CREATE DATABASE … TEMPLATE` copy of it (test/support/harness.ts)
 * instead of a new schema migrated from scratch (a copy takes ~0.2 s; migrating took ~3 s, and
 * parallel files queued on migrate's database-wide lock).
 *
 * - The template is named by the migrations' checksums (`tally_tpl_<hash>`), made once per
 *   server and reused by later runs and by other checkouts with the same migrations. It is built
 *   under a temporary name and renamed, so a run never copies half a template, and it refuses
 *   connections (a connected template cannot be copied).
 * - A test file's copies are `tally_t_<run>_<random>`. Dropping a database forces a checkpoint
 *   (seconds on a busy server), so a closing file only renames its copy to `tally_done_<run>_…`,
 *   and this process drops those in the background, and the rest at the end of the run. Copies
 *   left by runs whose process is gone are dropped at the next start.
 * - Roles are the server's (made by the first migration), and the `auth` schema is in the template.
 *   test/migrate.test.ts still migrates a fresh schema (createTestDb({ fresh: true })).
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const url = adminUrl();
  if (!url) return undefined;
  const files = readMigrations(MIGRATIONS_DIR);
  const key = createHash('sha256')
    .update(files.map((f) => `${f.name}:${f.checksum}`).join('\n'))
    .digest('hex')
    .slice(0, 16);
  const template = `tally_tpl_${key}`;
  const run = `${process.pid}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await dropAll(url, await leftovers(admin));
  if (!(await exists(admin, template))) await buildTemplate(admin, url, template);
  project.provide('postgresTemplate', { template, run });

  // The background reaper: one drop at a time, so it never competes with the tests for long.
  let stopped = false;
  const reaper = (async () => {
    while (!stopped) {
      let done: string[] = [];
      try {
        done = await names(admin, `${DONE_PREFIX}${run}\\_%`);
        for (const name of done) if (!stopped) await admin.query(`drop database if exists ${ident(name)} with (force)`);
      } catch {
        done = []; // tried again below, and at the end of the run
      }
      if (done.length === 0) await new Promise((resolve) => setTimeout(resolve, 500));
    }
  })();
  return async () => {
    stopped = true;
    await reaper;
    await dropAll(url, [...(await names(admin, `${CLONE_PREFIX}${run}\\_%`)), ...(await names(admin, `${DONE_PREFIX}${run}\\_%`))]);
    await admin.end();
  };
}

export const CLONE_PREFIX = 'tally_t_';
export const DONE_PREFIX = 'tally_done_';

/** Where databases are created and dropped: the server itself, never a transaction-mode pooler. */
export function adminUrl(): string | undefined {
  return process.env['TALLY_TEST_ADMIN_URL'] || process.env['TEST_DATABASE_URL'] || process.env['DATABASE_URL'] || undefined;
}

/** `base` pointing at database `name` (same server, user and options; also through the pooler). */
export function databaseUrl(base: string, name: string): string {
  const u = new URL(base);
  u.pathname = `/${name}`;
  return u.toString();
}

export const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

async function names(admin: pg.Client, like: string): Promise<string[]> {
  const res = await admin.query<{ datname: string }>('select datname from pg_database where datname like $1 order by datname', [like]);
  return res.rows.map((r) => r.datname);
}

async function exists(admin: pg.Client, name: string): Promise<boolean> {
  return (await admin.query('select 1 from pg_database where datname = $1', [name])).rowCount === 1;
}

/** Copies (and half-built templates) whose run's process is gone: a crashed or killed run's. */
async function leftovers(admin: pg.Client): Promise<string[]> {
  const all = await names(admin, 'tally\\_%');
  return all.filter((name) => {
    const m = /^tally_(?:t|done|tplbuild)_(\d+)_/.exec(name);
    return m !== null && !alive(Number(m[1]));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function buildTemplate(admin: pg.Client, url: string, template: string): Promise<void> {
  const building = `tally_tplbuild_${process.pid}_${randomBytes(3).toString('hex')}`;
  await admin.query(`create database ${ident(building)}`);
  try {
    const database = await openDatabase({ kind: 'postgres', url: databaseUrl(url, building), poolMax: 2, schema: 'tally', pooler: 'none' });
    try {
      const outcome = await migrate(database);
      if (!outcome.ok) throw new Error(outcome.message);
    } finally {
      await database.close();
    }
    await admin.query(`alter database ${ident(building)} with is_template true allow_connections false`);
    await admin.query(`alter database ${ident(building)} rename to ${ident(template)}`);
  } catch (err) {
    await admin.query(`drop database if exists ${ident(building)} with (force)`);
    // Another run built the same template meanwhile: use theirs.
    if ((err as { code?: string }).code === '42P04' && (await exists(admin, template))) return;
    throw err;
  }
}

/** Drops databases four at a time (each drop waits for a checkpoint; concurrent ones share it). */
async function dropAll(url: string, list: string[]): Promise<void> {
  const queue = [...list];
  await Promise.all(
    Array.from({ length: Math.min(4, queue.length) }, async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
          // A template being built is not a copy: it must be allowed to go before it can be dropped.
          if (name.startsWith('tally_tplbuild_')) await c.query(`alter database ${ident(name)} with is_template false`).catch(() => undefined);
          await c.query(`drop database if exists ${ident(name)} with (force)`);
        }
      } finally {
        await c.end();
      }
    }),
  );
}

declare module 'vitest' {
  export interface ProvidedContext {
    postgresTemplate: { template: string; run: string };
  }
}
