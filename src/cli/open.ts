import type { Config } from '../config/config.js';
import { type Database, openDatabase } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import type { CliIo } from './io.js';

/**
 * The database a command works on, brought up to date first (as `tally start` does), so a command
 * run before the first start, or after an upgrade, meets the schema it expects instead of failing
 * on a missing table. Prints why and returns null when a migration is refused.
 */
export async function openMigrated(io: CliIo, command: string, config: Config): Promise<Database | null> {
  const database = await openDatabase(config.database);
  try {
    const outcome = await migrate(database);
    if (outcome.ok) return database;
    io.err(`${command}: ${outcome.message}\n`);
  } catch (err) {
    await database.close();
    throw err;
  }
  await database.close();
  return null;
}
