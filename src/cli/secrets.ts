import { loadConfig } from '../config/load.js';
import { openMigrated } from './open.js';
import { SecretBox } from '../lib/secret-box.js';
import { rotateSecrets } from '../modules/secrets/secrets.rotate.js';
import { DataDirLocked } from '../db/data-dir-lock.js';
import { refuse, stopItTo } from './running-server.js';
import type { CliIo } from './io.js';

/**
 * `tally secrets rotate`: with the new key in TALLY_ENCRYPTION_KEY and the previous ones in
 * TALLY_ENCRYPTION_KEYS_OLD, re-seal everything under the new key; then the old keys can go.
 */
export async function secretsRotateCommand(opts: { json?: boolean }, io: CliIo): Promise<number> {
  const { config } = loadConfig(io.env);
  let database;
  try {
    database = await openMigrated(io, 'secrets rotate', config);
  } catch (err) {
    // Rotating under a running server would leave it holding values sealed under keys it may not have.
    if (err instanceof DataDirLocked) return refuse(io, err, stopItTo('secrets rotate') + ', then start it with the new key');
    throw err;
  }
  if (!database) return 1;
  try {
    const box = new SecretBox(config.encryptionKey, config.encryptionKeysOld ?? []);
    const report = await rotateSecrets(database.db, box);
    io.out(opts.json ? `${JSON.stringify({ key_id: box.keyId, ...report })}\n` : `re-sealed under key ${box.keyId}: ${Object.entries(report).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
    return 0;
  } catch (err) {
    io.err(`secrets rotate: ${err instanceof Error ? err.message : String(err)} (nothing was changed)\n`);
    return 1;
  } finally {
    await database.close();
  }
}
