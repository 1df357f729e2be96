import { loadConfig } from '../config/load.js';
import { openDatabase } from '../db/database.js';
import { DataDirLocked } from '../db/data-dir-lock.js';
import type { Config } from '../config/config.js';
import { migrate } from '../db/migrate.js';
import { callServer, who } from './running-server.js';
import type { CliIo } from './io.js';

/**
 * `tally migrate`: apply pending migrations; exit non-zero if an applied one was edited. While a
 * server holds the embedded database it has migrated it at start: ask its /ready instead.
 */
export async function migrateCommand(io: CliIo): Promise<number> {
  const { config } = loadConfig(io.env);
  let database;
  try {
    database = await openDatabase(config.database);
  } catch (err) {
    if (err instanceof DataDirLocked) return viaServer(io, err, config);
    throw err;
  }
  try {
    const outcome = await migrate(database);
    if (!outcome.ok) {
      io.err(`migrate: ${outcome.message}\n`);
      return 1;
    }
    io.out(
      outcome.applied.length
        ? `applied ${outcome.applied.join(', ')} (${outcome.alreadyApplied} already applied)\n`
        : `up to date (${outcome.alreadyApplied} applied)\n`,
    );
    return 0;
  } finally {
    await database.close();
  }
}

async function viaServer(io: CliIo, locked: DataDirLocked, config: Config): Promise<number> {
  const answer = await callServer(io, 'migrate', locked, config, 'GET', '/ready');
  if (typeof answer === 'number') return answer;
  // 200, or 503 with the same report in error.details (another check, e.g. the worker, may fail).
  const b = answer.body as { database?: { pending_migrations?: string[] | null }; error?: { details?: { database?: { pending_migrations?: string[] | null } } } };
  const pending = (answer.status === 200 ? b.database : b.error?.details?.database)?.pending_migrations;
  if (Array.isArray(pending) && pending.length === 0) {
    io.out(`up to date (${who(locked.holder)} applied every migration when it started)\n`);
    return 0;
  }
  io.err(
    Array.isArray(pending)
      ? `migrate: ${who(locked.holder)} reports pending migrations ${pending.join(', ')}; restart it to apply them (it migrates at start)\n`
      : `migrate: ${who(locked.holder)} could not report its migrations (${answer.status}); stop it and run \`tally migrate\`\n`,
  );
  return 1;
}
