import { loadConfig } from '../config/load.js';
import { openDatabase } from '../db/database.js';
import { migrate } from '../db/migrate.js';

/** `tally migrate`: apply pending migrations; exit non-zero if an applied one was edited. */
export async function migrateCommand(): Promise<number> {
  const { config } = loadConfig();
  const database = await openDatabase(config.database);
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
