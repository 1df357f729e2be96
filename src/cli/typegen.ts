import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import { openDatabase } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { generateTypes } from '../db/typegen.js';
import { DataDirLocked } from '../db/data-dir-lock.js';
import { refuse, stopItTo } from './running-server.js';
import type { CliIo } from './io.js';

/**
 * `tally typegen`: migrate, then write the Kysely `DB` types from the live schema to `out`.
 * With `check`, write nothing and exit 1 if `out` is missing or differs (for CI).
 */
export async function typegenCommand(opts: { out: string; check?: boolean }, io: CliIo): Promise<number> {
  const { config } = loadConfig(io.env);
  const file = resolve(opts.out);
  let database;
  try {
    database = await openDatabase(config.database);
  } catch (err) {
    if (err instanceof DataDirLocked) return refuse(io, err, stopItTo('typegen'));
    throw err;
  }
  try {
    const outcome = await migrate(database);
    if (!outcome.ok) {
      io.err(`typegen: ${outcome.message}\n`);
      return 1;
    }
    const text = await generateTypes(database);
    if (opts.check) {
      if (!existsSync(file)) {
        io.err(`typegen: ${opts.out} does not exist; run \`tally typegen\` to create it\n`);
        return 1;
      }
      const current = readFileSync(file, 'utf8');
      if (current !== text) {
        io.err(
          `typegen: ${opts.out} is out of date with the live schema (first difference at line ${firstDifferentLine(current, text)}); run \`tally typegen\` and commit the result\n`,
        );
        return 1;
      }
      io.out(`${opts.out} is up to date\n`);
      return 0;
    }
    writeFileSync(file, text);
    io.out(`wrote ${opts.out}\n`);
    return 0;
  } finally {
    await database.close();
  }
}

function firstDifferentLine(a: string, b: string): number {
  const left = a.split('\n');
  const right = b.split('\n');
  let i = 0;
  while (i < left.length && i < right.length && left[i] === right[i]) i++;
  return i + 1;
}
