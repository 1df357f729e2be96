import { loadConfig } from '../config/load.js';
import { openMigrated } from './open.js';
import { DEFAULT_BILLING } from '../config/config.js';
import { CatalogService } from '../modules/billing/billing.catalog.service.js';
import { SubscriptionsService } from '../modules/billing/billing.subscriptions.service.js';
import { CreditsService } from '../modules/credits/credits.service.js';

/**
 * `tally billing run [--at TIME]`: everything billing has due at TIME (default now) — trials,
 * renewals, period closes, allowance windows — the same work the server's scheduler does.
 * Idempotent: running it twice for the same time changes nothing the second time.
 */
export async function billingRunCommand(opts: { at?: string; json?: boolean }): Promise<number> {
  const at = opts.at ? new Date(opts.at) : new Date();
  if (Number.isNaN(at.getTime())) {
    process.stderr.write(`billing run: --at must be an ISO 8601 time, got "${opts.at}"\n`);
    return 2;
  }
  const { config } = loadConfig();
  const database = await openMigrated('billing run', config);
  if (!database) return 1;
  try {
    const clock = () => at;
    const credits = new CreditsService(database, { ...config.credits, maxParallel: 1 }, clock);
    const subscriptions = new SubscriptionsService(database, new CatalogService(config.billing ?? DEFAULT_BILLING), credits, clock);
    let processed = 0;
    const failed: { subscription_id: string; error: string }[] = [];
    for (;;) {
      const r = await subscriptions.runDue(at);
      processed += r.processed;
      failed.push(...r.errors);
      if (r.processed === 0 || r.errors.length > 0) break;
    }
    if (opts.json) process.stdout.write(JSON.stringify({ at: at.toISOString(), processed, errors: failed }) + '\n');
    else {
      process.stdout.write(`billing run at ${at.toISOString()}: ${processed} subscription(s) advanced\n`);
      for (const f of failed) process.stdout.write(`FAILED ${f.subscription_id}: ${f.error}\n`);
    }
    return failed.length === 0 ? 0 : 1;
  } finally {
    await database.close();
  }
}
