import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { PROJECT_ROOT } from '../version.js';
import { type Database, runScript } from './database.js';

/** The .sql files are read from the source tree, whether running from src/ or from dist/. */
export const MIGRATIONS_DIR = join(PROJECT_ROOT, 'src', 'db', 'migrations');

export interface MigrationFile {
  version: number;
  name: string;
  checksum: string;
  sql: string;
}

export type MigrationOutcome =
  | { ok: true; applied: string[]; alreadyApplied: number }
  | { ok: false; error: 'checksum_mismatch' | 'unknown_applied'; message: string };

/** Reads `NNNN_name.sql` files in order; the checksum is over the exact bytes. */
export function readMigrations(dir = MIGRATIONS_DIR): MigrationFile[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const text = readFileSync(join(dir, file), 'utf8');
      return {
        version: Number(file.slice(0, 4)),
        name: file.replace(/\.sql$/, ''),
        checksum: createHash('sha256').update(text).digest('hex'),
        sql: text,
      };
    });
}

/**
 * Applies pending migrations in one transaction (all or none), under an advisory lock so two
 * processes (or parallel test files) never migrate at once. An applied migration whose file
 * changed is refused: migrations are immutable once released. Never throws for those outcomes.
 */
export async function migrate(database: Database, files = readMigrations()): Promise<MigrationOutcome> {
  const schema = database.schema;
  const ident = sql.id(schema);
  return database.root.transaction().execute(async (trx) => {
    // One lock for the whole database: roles and the auth schema are shared across schemas.
    // A migration may build an index over a large table, and waits for another process's
    // migration: the request paths' statement and lock bounds do not apply here.
    await sql`select set_config('statement_timeout', '0', true), set_config('lock_timeout', '0', true)`.execute(trx);
    await sql`select pg_advisory_xact_lock(7265734)`.execute(trx);
    await sql`create schema if not exists ${ident}`.execute(trx);
    await sql`create table if not exists ${ident}.tally_migrations (
      version integer primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`.execute(trx);
    const applied = await sql<{ version: number; name: string; checksum: string }>`
      select version, name, checksum from ${ident}.tally_migrations order by version`.execute(trx);
    const byVersion = new Map(files.map((f) => [f.version, f]));
    for (const row of applied.rows) {
      const file = byVersion.get(row.version);
      if (!file) {
        return { ok: false, error: 'unknown_applied', message: `applied migration ${row.name} has no file` } as const;
      }
      if (file.checksum !== row.checksum) {
        return {
          ok: false,
          error: 'checksum_mismatch',
          message: `migration ${row.name} was edited after it was applied (checksum ${row.checksum.slice(0, 12)} ≠ ${file.checksum.slice(0, 12)}); add a new migration instead`,
        } as const;
      }
    }
    const done = new Set(applied.rows.map((r) => r.version));
    const names: string[] = [];
    for (const file of files) {
      if (done.has(file.version)) continue;
      await sql`select set_config('search_path', ${`${schema}, public`}, true)`.execute(trx);
      await runScript(trx, file.sql);
      await sql`insert into ${ident}.tally_migrations (version, name, checksum)
        values (${file.version}, ${file.name}, ${file.checksum})`.execute(trx);
      names.push(file.name);
    }
    return { ok: true, applied: names, alreadyApplied: done.size } as const;
  });
}
