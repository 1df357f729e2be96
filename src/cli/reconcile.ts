import { loadConfig } from '../config/load.js';
import { openMigrated } from './open.js';
import { reconcile } from '../modules/credits/credits.reconcile.js';

/** `tally reconcile`: check every balance against its ledger; exit 1 on any drift. */
export async function reconcileCommand(opts: { json?: boolean }): Promise<number> {
  const { config } = loadConfig();
  const database = await openMigrated('reconcile', config);
  if (!database) return 1;
  try {
    const report = await reconcile(database);
    if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else {
      process.stdout.write(
        `checked ${report.accounts} accounts, ${report.entries} ledger entries, ${report.open_holds} open holds\n`,
      );
      for (const d of report.drift) {
        process.stdout.write(`DRIFT ${d.account_id}: ${d.check} (expected ${d.expected}, found ${d.actual})\n`);
      }
      process.stdout.write(report.ok ? 'ok: every balance equals its ledger\n' : `FAILED: ${report.drift.length} problem(s)\n`);
    }
    return report.ok ? 0 : 1;
  } finally {
    await database.close();
  }
}
