import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { type Database, openDatabase } from '../../src/db/database.js';
import { tallyCommand, tallyInProcess } from './cli.js';
import { POSTGRES_URL, TARGET, seededDataDir } from './harness.js';

/** A fresh Tally target of one import scenario: its own data directory and schema. */
export interface ImportTarget {
  dataDir: string;
  schema: string;
}

/**
 * What every `tally import` test sets up the same way: fresh targets on this project's database
 * (PGlite or PostgreSQL), running `tally` commands against one, querying one (`T.` in the SQL names
 * its schema), and dropping them all at the end. Call `start()` in `beforeAll` and `stop()` in
 * `afterAll`.
 *
 * `run` runs the command line in this process (`run` of src/cli/main.ts, on the target's
 * environment, its output collected): the same code the binary runs, without a Node start and a
 * PGlite start (~1–1.5 s of CPU each) per command. A test whose subject is the process itself (a
 * SIGKILL mid-import) spawns the compiled binary, `cli`. One open connection per target serves its
 * queries and is closed before a command runs on it: a PGlite directory has one opener at a time.
 */
export function importHarness(tag: string) {
  let cli: string[] = [];
  const tmp = mkdtempSync(join(tmpdir(), `tally-import-${tag}-`));
  const targets: ImportTarget[] = [];
  const opened = new Map<ImportTarget, Database>();
  const release = async (t: ImportTarget): Promise<void> => {
    const db = opened.get(t);
    opened.delete(t);
    await db?.close();
  };
  const connection = async (t: ImportTarget): Promise<Database> => {
    let db = opened.get(t);
    if (!db) {
      db = await open(t);
      opened.set(t, db);
    }
    return db;
  };
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
      // PGlite: a directory of its own, holding the run's snapshot already migrated in schema `tally`
      // (a schema of another name would be migrated from scratch by the first command, ~2–3 s).
      // PostgreSQL: one server for every file, so a schema of its own.
      const schema = TARGET === 'pglite' ? 'tally' : `t_imp${tag}_${randomBytes(4).toString('hex')}`;
      const t = { dataDir: seededDataDir(tmp, 't-'), schema };
      targets.push(t);
      return t;
    },
    /** `tally <args>` on the target, in this process. */
    async run(t: ImportTarget, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
      await release(t);
      return tallyInProcess(env(t), ...args);
    },
    /** Closes the target's query connection: before a child process opens it. */
    release,
    /** The target's query connection (open until a command runs on the target). */
    db: connection,
    async q<R>(t: ImportTarget, text: string): Promise<R[]> {
      const db = await connection(t);
      return (await sql.raw<R>(text.replaceAll('T.', `${t.schema}.`)).execute(db.root)).rows;
    },
    async stop(): Promise<void> {
      for (const t of [...opened.keys()]) await release(t);
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
