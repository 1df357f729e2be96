import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { type Database, openDatabase } from '../../src/db/database.js';
import { tallyCommand } from './cli.js';
import { POSTGRES_URL, TARGET, seededDataDir } from './harness.js';

/** A fresh Tally target of one import scenario: its own data directory and schema. */
export interface ImportTarget {
  dataDir: string;
  schema: string;
}

/**
 * What every `tally import` test sets up the same way: the compiled CLI, fresh targets on this
 * project's database (PGlite or PostgreSQL), running the CLI against one, querying one (`T.` in the
 * SQL names its schema), and dropping them all at the end. Call `start()` in `beforeAll` and
 * `stop()` in `afterAll`.
 */
export function importHarness(tag: string) {
  let cli: string[] = [];
  const tmp = mkdtempSync(join(tmpdir(), `tally-import-${tag}-`));
  const targets: ImportTarget[] = [];
  const env = (t: ImportTarget) => ({ ...process.env, TALLY_DATA_DIR: t.dataDir, TALLY_DB_SCHEMA: t.schema, LOG_LEVEL: 'silent', DATABASE_URL: TARGET === 'postgres' ? POSTGRES_URL : '', NODE_ENV: 'development' });
  const open = (t: ImportTarget): Promise<Database> =>
    TARGET === 'postgres'
      ? openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 2, schema: t.schema })
      : openDatabase({ kind: 'pglite', dataDir: join(t.dataDir, 'pgdata'), schema: t.schema });
  return {
    tmp,
    env,
    open,
    get cli(): string[] {
      return cli;
    },
    async start(): Promise<void> {
      cli = await tallyCommand();
    },
    newTarget(): ImportTarget {
      const t = { dataDir: seededDataDir(tmp, 't-'), schema: `t_imp${tag}_${randomBytes(4).toString('hex')}` };
      targets.push(t);
      return t;
    },
    run(t: ImportTarget, ...args: string[]): { code: number | null; out: string; err: string } {
      const res = spawnSync(process.execPath, [...cli, ...args], { env: env(t), encoding: 'utf8', cwd: join(import.meta.dirname, '..', '..'), timeout: 120_000 });
      return { code: res.status, out: res.stdout, err: res.stderr };
    },
    async q<R>(t: ImportTarget, text: string): Promise<R[]> {
      const db = await open(t);
      try {
        return (await sql.raw<R>(text.replaceAll('T.', `${t.schema}.`)).execute(db.root)).rows;
      } finally {
        await db.close();
      }
    },
    async stop(): Promise<void> {
      if (TARGET === 'postgres') {
        for (const t of targets) {
          const db = await open(t);
          await db.root.schema.dropSchema(t.schema).ifExists().cascade().execute();
          await db.close();
        }
      }
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}
