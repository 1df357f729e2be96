import { loadConfig } from '../config/load.js';
import { httpAnswers } from '../http/answers.js';
import { openMigrated } from './open.js';
import { DataDirLocked } from '../db/data-dir-lock.js';
import { refuse, stopItTo } from './running-server.js';
import { DEFAULT_BILLING } from '../config/config.js';
import { CatalogService } from '../modules/billing/billing.catalog.service.js';
import { SubscriptionsService } from '../modules/billing/billing.subscriptions.service.js';
import { CreditsService } from '../modules/credits/credits.service.js';
import { InvalidationBus } from '../db/invalidation-bus.js';
import { Invalidations } from '../lib/invalidations.js';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import type { CliIo } from './io.js';

const silentLogger = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

/**
 * `tally billing run [--at TIME]`: everything billing has due at TIME (default now) — trials,
 * renewals, period closes, allowance windows — the same work the server's scheduler does.
 * Idempotent: running it twice for the same time changes nothing the second time. It writes real
 * entries stamped at TIME; `--dry-run` shows what it would do and keeps nothing.
 */
export async function billingRunCommand(opts: { at?: string; json?: boolean; dryRun?: boolean }, io: CliIo): Promise<number> {
  const at = opts.at ? new Date(opts.at) : new Date();
  if (Number.isNaN(at.getTime())) {
    io.err(`billing run: --at must be an ISO 8601 time, got "${opts.at}"\n`);
    return 2;
  }
  const { config } = loadConfig(io.env);
  let database;
  try {
    database = await openMigrated(io, 'billing run', config);
  } catch (err) {
    // No HTTP route runs billing at a chosen time: the server's scheduler runs what is due now by itself.
    if (err instanceof DataDirLocked) {
      return refuse(io, err, `it runs what billing has due by itself (every 30 s); ${stopItTo('billing run')}${opts.at || opts.dryRun ? ` with ${opts.at ? '--at' : '--dry-run'}` : ''}`);
    }
    throw err;
  }
  if (!database) return 1;
  try {
    const clock = () => at;
    // Running servers drop what they cached of the subscriptions this advances (docs/billing.md).
    const invalidations = new Invalidations();
    const bus = database.pool ? new InvalidationBus(database.pool, database.schema, invalidations, silentLogger, { listen: false }) : null;
    const credits = new CreditsService(database, { ...config.credits, maxParallel: 1 }, clock, httpAnswers, invalidations);
    const subscriptions = new SubscriptionsService(database, new CatalogService(config.billing ?? DEFAULT_BILLING), credits, clock, invalidations);
    try {
      return opts.dryRun ? await preview(io, subscriptions, at, opts.json ?? false) : await advanceAll(io, subscriptions, at, opts.json ?? false);
    } finally {
      await bus?.close();
    }
  } finally {
    await database.close();
  }
}

async function advanceAll(io: CliIo, subscriptions: SubscriptionsService, at: Date, json: boolean): Promise<number> {
  // A pass brings each due subscription all the way up to `at`; another pass is only for those a
  // full page left behind. One that stays due after its pass (a provider's subscription inside its
  // grace, waiting for the provider) comes back every pass: stop once a pass advances nobody new.
  const advanced = new Set<string>();
  const failed: { subscription_id: string; error: string }[] = [];
  for (;;) {
    const r = await subscriptions.runDue(at);
    const fresh = r.ids.filter((id) => !advanced.has(id));
    for (const id of fresh) advanced.add(id);
    failed.push(...r.errors);
    if (fresh.length === 0 || r.errors.length > 0) break;
  }
  const processed = advanced.size;
  if (json) io.out(JSON.stringify({ at: at.toISOString(), processed, errors: failed }) + '\n');
  else {
    io.out(`billing run at ${at.toISOString()}: ${processed} subscription(s) advanced\n`);
    for (const f of failed) io.out(`FAILED ${f.subscription_id}: ${f.error}\n`);
  }
  return failed.length === 0 ? 0 : 1;
}

/** `--dry-run`: each due subscription advanced and rolled back, and what it would have done. */
async function preview(io: CliIo, subscriptions: SubscriptionsService, at: Date, json: boolean): Promise<number> {
  const due = await subscriptions.previewDue(at);
  if (json) {
    io.out(JSON.stringify({ at: at.toISOString(), dry_run: true, due }) + '\n');
  } else {
    io.out(`billing run at ${at.toISOString()} (dry run: nothing written): ${due.length} subscription(s) due\n`);
    for (const d of due) {
      if ('error' in d) {
        io.out(`  ${d.subscription_id}: would fail: ${d.error}\n`);
        continue;
      }
      io.out(`  ${d.subscription_id} (user ${d.user_id}): ${d.status.from} → ${d.status.to}, period end ${d.period_end.from} → ${d.period_end.to}\n`);
      for (const e of d.ledger) io.out(`      ${e.type} ${e.amount > 0 ? '+' : ''}${e.amount}${e.reason ? `  ${e.reason}` : ''}\n`);
    }
  }
  return due.some((d) => 'error' in d) ? 1 : 0;
}
