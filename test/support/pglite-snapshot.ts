import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/database.js';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../../src/db/migrate.js';
import { PROJECT_ROOT } from '../../src/version.js';

/**
 * Vitest global set-up for the PGlite project: one migrated database, dumped once, that every
 * test file's database starts from (test/support/harness.ts) instead of booting an empty PGlite
 * and running every migration again. The dump is kept under node_modules/.cache, named by the
 * migrations' checksums and PGlite's version, so a later run with the same migrations reuses it.
 * A test that needs an unmigrated database (migrate.test.ts) still creates its own.
 */
export default async function setup(project: TestProject): Promise<void> {
  const files = readMigrations(MIGRATIONS_DIR);
  const pgliteVersion = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'node_modules/@electric-sql/pglite/package.json'), 'utf8')) as { version: string }).version;
  const key = createHash('sha256')
    .update(pgliteVersion)
    .update(files.map((f) => `${f.name}:${f.checksum}`).join('\n'))
    .digest('hex')
    .slice(0, 16);
  const dir = join(PROJECT_ROOT, 'node_modules', '.cache', 'tally-test');
  const file = join(dir, `pglite-${key}.tar`);
  if (!existsSync(file)) {
    const pglite = await PGlite.create();
    const database = await openDatabase({ kind: 'pglite', dataDir: null, schema: 'tally' }, { pglite });
    const outcome = await migrate(database, files);
    if (!outcome.ok) throw new Error(outcome.message);
    const dump = await pglite.dumpDataDir('none');
    await database.close();
    await pglite.close();
    mkdirSync(dir, { recursive: true });
    // Written aside and renamed: a parallel run never reads half a file.
    const partial = `${file}.${process.pid}`;
    writeFileSync(partial, Buffer.from(await dump.arrayBuffer()));
    renameSync(partial, file);
  }
  project.provide('pgliteSnapshot', file);
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteSnapshot: string;
  }
}
