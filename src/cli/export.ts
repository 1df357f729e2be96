import { loadConfig } from '../config/load.js';
import { exportDatabase } from '../modules/export/export.js';
import { VERSION } from '../version.js';
import { openMigrated } from './open.js';
import { directOrElse, refuse, stopItTo } from './running-server.js';
import type { CliIo } from './io.js';

/**
 * `tally export --to <dir>` (docs/export.md): every table as JSON lines plus a manifest, read in one
 * snapshot. Exit 0 when written. The embedded database has one process at a time: stop the server first.
 */
export async function exportCommand(opts: { to: string; json?: boolean }, io: CliIo): Promise<number> {
  const { config } = loadConfig(io.env);
  return directOrElse(
    async () => {
      const database = await openMigrated(io, 'export', config);
      if (!database) return 1;
      try {
        const manifest = await exportDatabase(database, opts.to, VERSION, new Date());
        const rows = manifest.tables.reduce((a, t) => a + t.rows, 0);
        io.out(
          opts.json
            ? `${JSON.stringify(manifest, null, 2)}\n`
            : `exported ${rows} rows of ${manifest.tables.length} tables to ${opts.to} (format ${manifest.format} v${manifest.version}, migrations up to ${manifest.migrations.at(-1) ?? 'none'})\n`,
        );
        return 0;
      } finally {
        await database.close();
      }
    },
    (locked) => refuse(io, locked, stopItTo('tally export')),
  );
}
