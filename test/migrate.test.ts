import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../src/db/migrate.js';
import { createTestDb, TARGET, type TestDb } from './support/harness.js';
import { must } from '../src/lib/must.js';

describe(`migrations (${TARGET})`, () => {
  let testDb: TestDb;
  beforeAll(async () => {
    testDb = await createTestDb({ fresh: true });
  });
  const dirs: string[] = [];
  const copyMigrations = () => {
    const dir = mkdtempSync(join(tmpdir(), 'tally-mig-'));
    dirs.push(dir);
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    return dir;
  };
  afterAll(async () => {
    await testDb.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('records every applied migration with its checksum', async () => {
    const rows = await testDb.database.db.selectFrom('tally_migrations').selectAll().orderBy('version').execute();
    const files = readMigrations();
    expect(rows.map((r) => [r.name, r.checksum])).toEqual(files.map((f) => [f.name, f.checksum]));
  });

  it('re-running is a no-op', async () => {
    const outcome = await migrate(testDb.database);
    expect(outcome).toEqual({ ok: true, applied: [], alreadyApplied: readMigrations().length });
  });

  it('an applied migration that was edited is refused, and nothing is applied', async () => {
    const dir = copyMigrations();
    const first = must(readMigrations(dir)[0], 'readMigrations(dir)[0]');
    const path = join(dir, `${first.name}.sql`);
    writeFileSync(path, readFileSync(path, 'utf8') + '\n-- edited\n');
    writeFileSync(join(dir, '9999_later.sql'), 'create table later_thing (id int);');
    const outcome = await migrate(testDb.database, readMigrations(dir));
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) {
      expect(outcome.error).toBe('checksum_mismatch');
      expect(outcome.message).toContain(first.name);
    }
    const later = await sql<{ n: number }>`select count(*)::int as n from information_schema.tables
      where table_schema = ${testDb.database.schema} and table_name = 'later_thing'`.execute(testDb.database.root);
    expect(must(later.rows[0], 'later.rows[0]').n).toBe(0);
  });

  it('a new migration is applied on top, once', async () => {
    const dir = copyMigrations();
    writeFileSync(join(dir, '9998_extra.sql'), 'create table extra_thing (id int primary key);');
    const outcome = await migrate(testDb.database, readMigrations(dir));
    expect(outcome).toMatchObject({ ok: true, applied: ['9998_extra'] });
    expect(await migrate(testDb.database, readMigrations(dir))).toMatchObject({ ok: true, applied: [] });
    // Without the file, the database now holds a migration the code does not know: refused.
    const missing = await migrate(testDb.database);
    expect(missing).toMatchObject({ ok: false, error: 'unknown_applied' });
  });

  it('every table has row-level security; every mutable one has updated_at kept by a trigger', async () => {
    // Insert-only tables: history is never rewritten, so they have no updated_at. Partitioned tables
    // (relkind 'p') count as tables, and so does each partition: RLS is per table.
    // audit_log is append-only too (its own immutable triggers, docs/audit.md).
    const insertOnly = new Set(['credit_ledger', 'credit_allocations', 'usage_events', 'usage_summaries', 'audit_log']);
    const schema = testDb.database.schema;
    const tables = await sql<{ relname: string; relrowsecurity: boolean }>`
      select c.relname, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ${schema} and c.relkind in ('r', 'p') and c.relname not in ('tally_migrations', 'extra_thing')`.execute(
      testDb.database.root,
    );
    expect(tables.rows.length).toBeGreaterThanOrEqual(7);
    for (const t of tables.rows) expect(t.relrowsecurity, t.relname).toBe(true);
    const triggers = await sql<{ tbl: string }>`
      select c.relname as tbl from pg_trigger g join pg_class c on c.oid = g.tgrelid
      join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ${schema} and g.tgname like '%updated_at'`.execute(testDb.database.root);
    expect(new Set(triggers.rows.map((r) => r.tbl))).toEqual(
      new Set(tables.rows.map((t) => t.relname).filter((n) => !insertOnly.has(n))),
    );
    const appendOnly = await sql<{ tbl: string }>`
      select c.relname as tbl from pg_trigger g join pg_class c on c.oid = g.tgrelid
      join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ${schema} and g.tgname like '%append_only'`.execute(testDb.database.root);
    // The ledger and the secrets' reveal audit: history no one may rewrite.
    expect(appendOnly.rows.map((r) => r.tbl).sort()).toEqual(['credit_ledger', 'secret_reveals']);
  });
});
