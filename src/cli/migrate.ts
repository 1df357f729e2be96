import { loadConfig } from '../config/load.js';
import { openDatabase } from '../db/database.js';
import { DataDirLocked } from '../db/data-dir-lock.js';
import type { Config } from '../config/config.js';
import { migrate } from '../db/migrate.js';
import { callServer, who } from './running-server.js';

/**
 * `tally migrate`: apply pending migrations; exit non-zero if an applied one was edited. While a
 * server holds the embedded database it has migrated it at start: ask its /ready instead.
 */
export async function migrateCommand(): Promise<number> {
  const { config } = loadConfig();
  let database;
  try {
    database = await openDatabase(config.database);
  } catch (err) {
    if (err instanceof DataDirLocked) return viaServer(err, config);
    throw err;
  }
  try {
    const outcome = await migrate(database);
    if (!outcome.ok) {
      process.stderr.write(`migrate: ${outcome.message}\n`);
      return 1;
    }
    process.stdout.write(
      outcome.applied.length
        ? `applied ${outcome.applied.join(', ')} (${outcome.alreadyApplied} already applied)\n`
        : `up to date (${outcome.alreadyApplied} applied)\n`,
    );
    return 0;
  } finally {
    await database.close();
  }
}

async function viaServer(locked: DataDirLocked, config: Config): Promise<number> {
  const answer = await callServer('migrate', locked, config, 'GET', '/ready');
  if (typeof answer === 'number') return answer;
  // 200, or 503 with the same report in error.details (another check, e.g. the worker, may fail).
  const b = answer.body as { database?: { pending_migrations?: string[] | null }; error?: { details?: { database?: { pending_migrations?: string[] | null } } } };
  const pending = (answer.status === 200 ? b.database : b.error?.details?.database)?.pending_migrations;
  if (Array.isArray(pending) && pending.length === 0) {
    process.stdout.write(`up to date (${who(locked.holder)} applied every migration when it started)\n`);
    return 0;
  }
  process.stderr.write(
    Array.isArray(pending)
      ? `migrate: ${who(locked.holder)} reports pending migrations ${pending.join(', ')}; restart it to apply them (it migrates at start)\n`
      : `migrate: ${who(locked.holder)} could not report its migrations (${answer.status}); stop it and run \`tally migrate\`\n`,
  );
  return 1;
}
