import { loadConfig } from '../config/load.js';
import { openMigrated } from './open.js';
import { reconcile, type ReconcileReport } from '../modules/credits/credits.reconcile.js';
import { gatewayDrift } from '../modules/gateway/gateway.reconcile.js';
import { callServer, directOrElse, errorMessage } from './running-server.js';

/**
 * `tally reconcile`: check every balance against its ledger; exit 1 on any drift. While a server
 * holds the embedded database, the same checks run in it (POST /v1/admin/reconcile).
 */
export async function reconcileCommand(opts: { json?: boolean }): Promise<number> {
  const { config } = loadConfig();
  return directOrElse(
    async () => {
      const database = await openMigrated('reconcile', config);
      if (!database) return 1;
      try {
        const report = await reconcile(database);
        // The gateway's carry and capture invariants join the ledger's (docs/gateway.md).
        const drift = [...report.drift, ...(await gatewayDrift(database))];
        return print({ ...report, ok: drift.length === 0, drift }, opts.json ?? false);
      } finally {
        await database.close();
      }
    },
    async (locked) => {
      const answer = await callServer('reconcile', locked, config, 'POST', '/v1/admin/reconcile');
      if (typeof answer === 'number') return answer;
      if (answer.status !== 200) {
        process.stderr.write(`reconcile: ${errorMessage(answer)}\n`);
        return 1;
      }
      // The route adds when it checked; the command's report is the same without it.
      const { checked_at: _, ...report } = answer.body as ReconcileReport & { checked_at?: string };
      return print(report, opts.json ?? false);
    },
  );
}

function print(report: ReconcileReport, json: boolean): number {
  if (json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else {
    process.stdout.write(`checked ${report.accounts} accounts, ${report.entries} ledger entries, ${report.open_holds} open holds\n`);
    for (const d of report.drift) {
      process.stdout.write(`DRIFT ${d.account_id}: ${d.check} (expected ${d.expected}, found ${d.actual})\n`);
    }
    process.stdout.write(report.ok ? 'ok: every balance equals its ledger\n' : `FAILED: ${report.drift.length} problem(s)\n`);
  }
  return report.ok ? 0 : 1;
}
