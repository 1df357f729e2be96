import { loadConfig } from '../config/load.js';
import { openMigrated } from './open.js';
import { reconcile, type ReconcileReport } from '../modules/credits/credits.reconcile.js';
import { gatewayDrift } from '../modules/gateway/gateway.reconcile.js';
import { callServer, directOrElse, errorMessage } from './running-server.js';
import type { CliIo } from './io.js';

/**
 * `tally reconcile`: check every balance against its ledger; exit 1 on any drift. While a server
 * holds the embedded database, the same checks run in it (POST /v1/admin/reconcile).
 */
export async function reconcileCommand(opts: { json?: boolean }, io: CliIo): Promise<number> {
  const { config } = loadConfig(io.env);
  return directOrElse(
    async () => {
      const database = await openMigrated(io, 'reconcile', config);
      if (!database) return 1;
      try {
        const report = await reconcile(database);
        // The gateway's carry and capture invariants join the ledger's (docs/gateway.md).
        const drift = [...report.drift, ...(await gatewayDrift(database))];
        return print(io, { ...report, ok: drift.length === 0, drift }, opts.json ?? false);
      } finally {
        await database.close();
      }
    },
    async (locked) => {
      const answer = await callServer(io, 'reconcile', locked, config, 'POST', '/v1/admin/reconcile');
      if (typeof answer === 'number') return answer;
      if (answer.status !== 200) {
        io.err(`reconcile: ${errorMessage(answer)}\n`);
        return 1;
      }
      // The route adds when it checked; the command's report is the same without it.
      const { checked_at: _, ...report } = answer.body as ReconcileReport & { checked_at?: string };
      return print(io, report, opts.json ?? false);
    },
  );
}

function print(io: CliIo, report: ReconcileReport, json: boolean): number {
  if (json) io.out(JSON.stringify(report, null, 2) + '\n');
  else {
    io.out(`checked ${report.accounts} accounts, ${report.entries} ledger entries, ${report.open_holds} open holds\n`);
    for (const d of report.drift) {
      io.out(`DRIFT ${d.account_id}: ${d.check} (expected ${d.expected}, found ${d.actual})\n`);
    }
    io.out(report.ok ? 'ok: every balance equals its ledger\n' : `FAILED: ${report.drift.length} problem(s)\n`);
  }
  return report.ok ? 0 : 1;
}
