import { hostname } from 'node:os';
import type { Invalidations } from '../../lib/invalidations.js';
import type { Logger } from '../../core/logger.js';
import type { Database, Executor } from '../../db/database.js';
import { newId } from '../../lib/ids.js';
import { randomToken } from '../../lib/random.js';
import { backoffMs, type BackgroundJob, type EnqueueOptions, type Handler, type RunReport } from './queue.js';
import {
  backgroundJobBacklog,
  backgroundJobCancelByDedupeKey,
  backgroundJobClaim,
  backgroundJobComplete,
  backgroundJobFail,
  backgroundJobFindByDedupeKey,
  backgroundJobInsert,
} from './queue.repository.js';

export interface QueueOptions {
  /** A claimed job whose worker has not finished it within this lease is claimed again. */
  leaseMs?: number;
  /** Jobs claimed per round. */
  batchSize?: number;
}

/**
 * The background queue on PostgreSQL. Other modules `enqueue` inside their own transactions (the
 * work exists exactly when their change commits) and `register` a handler per type; workers claim
 * due rows with FOR UPDATE SKIP LOCKED. `runDue(now)` drives it one step at a time (tests, CLI);
 * `start()` runs the loop in the server process.
 */
export class QueueService {
  private readonly handlers = new Map<string, Handler>();
  readonly workerId = `${hostname()}:${process.pid}:${randomToken(6)}`;
  private readonly leaseMs: number;
  private readonly batchSize: number;
  private timer: NodeJS.Timeout | null = null;
  private current: Promise<RunReport> | null = null;
  private stopped = true;
  private lastPoll: { at: Date; ok: boolean } | null = null;
  private halting = false;

  constructor(
    private readonly database: Database,
    private readonly now: () => Date,
    private readonly logger: Logger,
    options: QueueOptions = {},
    /** Told after each job: handlers write anything (subscriptions, allowances, payments …). */
    private readonly invalidations?: Invalidations,
  ) {
    this.leaseMs = options.leaseMs ?? 5 * 60_000;
    this.batchSize = options.batchSize ?? 10;
  }

  /** One handler per type; registering a type twice is a programming error. */
  register(type: string, handler: Handler): void {
    if (this.handlers.has(type)) throw new Error(`queue: a handler for "${type}" is already registered`);
    this.handlers.set(type, handler);
  }

  /**
   * Adds work in the caller's transaction. With a dedupe key that was used before, nothing is
   * added and the existing row is returned.
   */
  async enqueue(trx: Executor, opts: EnqueueOptions): Promise<BackgroundJob> {
    const inserted = await backgroundJobInsert(trx, {
      id: newId('backgroundJob'),
      type: opts.type,
      name: opts.name ?? null,
      input: opts.input ?? {},
      run_at: opts.runAt ?? this.now(),
      priority: opts.priority ?? 0,
      max_attempts: opts.maxAttempts ?? 5,
      dedupe_key: opts.dedupeKey ?? null,
    });
    if (inserted) return inserted;
    const existing = opts.dedupeKey ? await backgroundJobFindByDedupeKey(trx, opts.dedupeKey) : undefined;
    if (!existing) throw new Error('queue: enqueue inserted nothing and found no row with its dedupe key');
    return existing;
  }

  /** Cancels pending work by dedupe key, in the caller's transaction. */
  cancel(trx: Executor, dedupeKey: string): Promise<boolean> {
    return backgroundJobCancelByDedupeKey(trx, dedupeKey);
  }

  /**
   * Runs everything due at `now` (claiming in rounds until nothing is due), one job at a time.
   * Concurrent calls share the run in progress.
   */
  runDue(now: Date = this.now()): Promise<RunReport> {
    if (this.current) return this.current;
    this.current = this.drain(now).finally(() => (this.current = null));
    return this.current;
  }

  private async drain(now: Date): Promise<RunReport> {
    const report: RunReport = { ran: 0, completed: 0, retried: 0, failed: 0 };
    const types = [...this.handlers.keys()];
    if (types.length === 0) return report;
    const seen = new Set<string>();
    for (;;) {
      const claimed = await backgroundJobClaim(this.database.db, this.database.schema, {
        worker: this.workerId,
        types,
        now,
        staleBefore: new Date(now.getTime() - this.leaseMs),
        limit: this.batchSize,
      });
      // A job retried with no backoff left (run_at still ≤ now) is not run twice in one drain.
      const fresh = claimed.filter((j) => !seen.has(j.id));
      if (fresh.length === 0) {
        // Give back what was claimed only because it came due again in this same drain.
        for (const j of claimed) await backgroundJobFail(this.database.db, j.id, this.workerId, j.lastError ?? 'requeued', j.runAt, now);
        break;
      }
      for (const job of fresh) {
        seen.add(job.id);
        report.ran++;
        await this.runOne(job, now, report);
      }
      if (this.halting) break; // stop(): finish the round in hand, claim no more
    }
    return report;
  }

  private async runOne(job: BackgroundJob, now: Date, report: RunReport): Promise<void> {
    try {
      await this.runHandler(job, now, report);
    } finally {
      this.invalidations?.anythingChanged();
    }
  }

  private async runHandler(job: BackgroundJob, now: Date, report: RunReport): Promise<void> {
    const handler = this.handlers.get(job.type);
    try {
      if (!handler) throw new Error(`no handler registered for "${job.type}"`);
      const output = await handler(job, { db: this.database.db, now });
      await backgroundJobComplete(this.database.db, job.id, this.workerId, output, this.now());
      report.completed++;
    } catch (err) {
      const message = (err instanceof Error ? err.message : String(err)).slice(0, 4000);
      const retry = job.attempts < job.maxAttempts;
      const retryAt = retry ? new Date(now.getTime() + backoffMs(job.attempts)) : null;
      await backgroundJobFail(this.database.db, job.id, this.workerId, message, retryAt, this.now());
      if (retry) report.retried++;
      else report.failed++;
      this.logger.warn({ job: job.id, type: job.type, attempt: job.attempts, err: message, retry }, 'background job failed');
    }
  }

  /** Starts polling every `pollMs` (the server process). */
  start(pollMs: number): void {
    if (this.timer || pollMs <= 0) return;
    this.stopped = false;
    this.halting = false;
    const tick = () => {
      this.timer = null;
      if (this.stopped) return;
      this.runDue()
        .then((r) => {
          this.lastPoll = { at: this.now(), ok: true };
          if (r.ran > 0) this.logger.debug({ ...r }, 'background jobs ran');
        })
        .catch((err: unknown) => {
          this.lastPoll = { at: this.now(), ok: false };
          this.logger.error({ err }, 'background queue poll failed');
        })
        .finally(() => {
          if (!this.stopped) {
            this.timer = setTimeout(tick, pollMs);
            this.timer.unref();
          }
        });
    };
    this.timer = setTimeout(tick, 0);
    this.timer.unref();
  }

  /** Due jobs waiting for a worker, and how long the oldest has waited (GET /metrics). */
  backlog(): Promise<{ depth: number; lagSeconds: number }> {
    return backgroundJobBacklog(this.database.db, this.now());
  }

  /** Whether the worker loop runs in this process and how its last poll went (GET /ready). */
  status(): { running: boolean; lastPoll: { at: Date; ok: boolean } | null } {
    return { running: !this.stopped, lastPoll: this.lastPoll };
  }

  /** Stops polling and waits for the job in progress to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.halting = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.current) await this.current.catch(() => undefined);
  }
}
