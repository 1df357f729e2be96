import type { Db, Executor } from '../../db/database.js';

/**
 * The one background queue in Tally (`background_jobs`): generic typed work with attempts,
 * priority, a run-at time, exponential backoff and an optional dedupe key. See docs/queue.md.
 */
export const BACKGROUND_STATUSES = ['pending', 'running', 'completed', 'failed', 'canceled'] as const;
export type BackgroundStatus = (typeof BACKGROUND_STATUSES)[number];
export const isFinalBackground = (s: BackgroundStatus): boolean => s === 'completed' || s === 'failed' || s === 'canceled';

export interface BackgroundJob {
  id: string;
  type: string;
  name: string | null;
  status: BackgroundStatus;
  input: Record<string, unknown>;
  output: unknown;
  lastError: string | null;
  attempts: number;
  maxAttempts: number;
  priority: number;
  runAt: Date;
  dedupeKey: string | null;
  lockedBy: string | null;
  lockedAt: Date | null;
  startedAt: Date | null;
  completedAt: Date | null;
  createdAt: Date;
}

export interface EnqueueOptions {
  type: string;
  input?: Record<string, unknown>;
  name?: string;
  /** When the work becomes due (default: now). */
  runAt?: Date;
  /** Higher runs first among due work. */
  priority?: number;
  maxAttempts?: number;
  /**
   * At most one row per key, ever: enqueueing the same key again returns the existing row. Use it
   * for work that must be scheduled once (a job's timeout, a subscription period's renewal).
   */
  dedupeKey?: string;
}

/** What a handler gets besides the job: the database (handlers open their own transactions). */
export interface HandlerContext {
  db: Db;
  now: Date;
}

/**
 * A handler runs at least once per job (a crash after the work but before the row is marked
 * completed runs it again), so it must be idempotent; its return value is stored as `output`.
 */
export type Handler = (job: BackgroundJob, ctx: HandlerContext) => Promise<unknown>;

export interface RunReport {
  ran: number;
  completed: number;
  retried: number;
  failed: number;
}

/** Exponential backoff: 5 s, 10 s, 20 s … capped at one hour (attempt is 1-based). */
export function backoffMs(attempt: number): number {
  return Math.min(5_000 * 2 ** Math.max(0, attempt - 1), 3_600_000);
}

export type { Executor };
