import { loadConfig } from '../config/load.js';
import { LinkSigner } from '../modules/storage/storage.links.js';
import { createDriver } from '../modules/storage/storage.drivers.js';
import { type StorageCheckReport, StorageService } from '../modules/storage/storage.service.js';
import { openMigrated } from './open.js';
import { callServer, directOrElse, errorMessage } from './running-server.js';
import type { CliIo } from './io.js';

/**
 * `tally storage check`: compare the object rows with what the configured driver holds — bytes a
 * row points at that are gone, and bytes no row points at that the outbox will not delete; exit 1
 * on either. While a server holds the embedded database, the same check runs in it
 * (POST /v1/storage/check).
 */
export async function storageCheckCommand(opts: { json?: boolean }, io: CliIo): Promise<number> {
  const { config } = loadConfig(io.env);
  return directOrElse(
    async () => {
      const database = await openMigrated(io, 'storage check', config);
      if (!database) return 1;
      try {
        const storage = new StorageService(database.db, createDriver(config.storage, config.dataDir), new LinkSigner(config.encryptionKey), () => new Date(), undefined, {
          schema: database.schema,
        });
        return print(io, await storage.check(database.db), opts.json ?? false);
      } finally {
        await database.close();
      }
    },
    async (locked) => {
      const answer = await callServer(io, 'storage check', locked, config, 'POST', '/v1/storage/check');
      if (typeof answer === 'number') return answer;
      if (answer.status !== 200) {
        io.err(`storage check: ${errorMessage(answer)}\n`);
        return 1;
      }
      return print(io, answer.body as StorageCheckReport, opts.json ?? false);
    },
  );
}

function print(io: CliIo, report: StorageCheckReport, json: boolean): number {
  if (json) io.out(`${JSON.stringify(report, null, 2)}\n`);
  else {
    io.out(`rows point at ${report.referenced} keys; the driver holds ${report.held}; ${report.pending} queued for deletion\n`);
    for (const k of report.missing) io.out(`MISSING ${k}: a row points at it, the driver does not have it\n`);
    for (const k of report.orphans) io.out(`ORPHAN ${k}: no row points at it\n`);
    io.out(report.ok ? 'ok: every row has its bytes and every stored key has its row\n' : `FAILED: ${report.missing_count} missing, ${report.orphan_count} orphaned\n`);
  }
  return report.ok ? 0 : 1;
}
