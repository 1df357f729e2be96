import type { Static } from 'typebox';
import type { Db, Executor } from '../../db/database.js';
import { setAuditActor } from '../../db/request-role.js';
import { type EventSink, NO_EVENTS } from '../../core/events.js';
import { DomainError, errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import { operation, scopeOf, unwrap } from '../idempotency/idempotency.js';
import type { Ledger, LedgerOp, Owner } from '../credits/credits.port.js';
import { memberRole } from '../workspaces/workspaces.repository.js';
import type { BackgroundJob } from '../queue/queue.js';
import type { QueueService } from '../queue/queue.service.js';
import { userFindById } from '../users/users.repository.js';
import {
  type CompleteJobBody,
  type CreateJobBody,
  EVENT_TARGET,
  isFinalJob,
  type JobEvent,
  jobToApi,
  type JobRow,
  type JobStatus,
  transition,
} from './jobs.js';
import { jobFind, jobInsert, jobListByUser, jobList, jobLock, jobUpdate } from './jobs.repository.js';

export const JOB_TIMEOUT_TYPE = 'jobs.timeout';
const DEFAULT_TIMEOUT_SECONDS = 3600;
/** The hold outlives the job's timeout by this much, so the timeout (not the hold's own expiry) releases it. */
const HOLD_GRACE_SECONDS = 3600;
/** A job's own ledger operations, keyed per job (the paths: what their keys were recorded under before 0017). */
const JOB_HOLD = operation('jobs.hold', '/v1/jobs/:id');
const JOB_SETTLE = operation('jobs.settle', '/v1/jobs/:id/settle');

/** What a transition carries besides its event. */
export interface TransitionInput {
  externalId?: string;
  output?: unknown;
  resultUrl?: string;
  cost?: number;
  tokensUsed?: number;
  error?: string;
}

export type TransitionOutcome = { applied: true; job: JobRow } | { applied: false; job: JobRow; reason: string };

/**
 * AI jobs whose cost is held at creation and settled exactly once. Every transition — HTTP call,
 * provider callback or timeout — goes through `apply`: lock the job row, run the one transition
 * function, settle the hold in the same transaction (with an idempotency key derived from the job,
 * so a second settlement can never move money), write the new status. See docs/jobs.md.
 */
export class JobsService {
  constructor(
    private readonly credits: Ledger,
    private readonly queue: QueueService,
    private readonly now: () => Date,
    private readonly events: EventSink = NO_EVENTS,
  ) {
    queue.register(JOB_TIMEOUT_TYPE, (job, ctx) => this.onTimeout(job, ctx.db));
  }

  /** Holds the cost, then records the job and schedules its timeout — all in the caller's transaction. */
  async create(trx: Executor, input: Static<typeof CreateJobBody>, requestId: string): Promise<JobRow> {
    if (!(await userFindById(trx, input.user_id))) throw errors.notFound('User', input.user_id);
    let workspaceId = input.workspace_id ?? null;
    if (input.project_id !== undefined) {
      const project = await trx.selectFrom('projects').select(['id', 'user_id', 'workspace_id']).where('id', '=', input.project_id).executeTakeFirst();
      // A user's own project takes only that user's jobs: another user's project answers as missing.
      if (!project || (project.workspace_id === null && project.user_id !== input.user_id)) throw errors.notFound('Project', input.project_id);
      // A workspace's project is paid by that workspace's pool (docs/jobs.md); never by another one.
      if (project.workspace_id !== null) {
        if (workspaceId !== null && workspaceId !== project.workspace_id) {
          throw errors.invalidRequest("workspace_id must be the project's workspace", { field: 'workspace_id', project_workspace_id: project.workspace_id });
        }
        workspaceId = project.workspace_id;
      }
    }
    // A pool's spender: checked here, and again (with the spend cap) by the ledger under the pool's lock.
    if (workspaceId !== null) await assertMaySpendPool(trx, workspaceId, input.user_id);
    const payer: Owner = workspaceId === null ? { userId: input.user_id } : { workspaceId };
    const id = newId('job');
    const now = this.now();
    const timeoutSeconds = input.timeout_seconds ?? DEFAULT_TIMEOUT_SECONDS;
    let holdId: string | null = null;
    if (input.cost > 0) {
      const body = { amount: input.cost, job_id: id };
      const result = await this.settleIn(trx, payer, {
        kind: 'hold',
        memberId: workspaceId === null ? null : input.user_id,
        requestId,
        idem: scopeOf(JOB_HOLD, { principal: jobPrincipal(id) }, 'hold', { params: { id }, body }),
        amount: input.cost,
        expiresInSeconds: timeoutSeconds + HOLD_GRACE_SECONDS,
        metadata: { job_id: id, kind: input.kind },
      });
      holdId = (result as { id: string }).id;
    }
    const timeoutAt = new Date(now.getTime() + timeoutSeconds * 1000);
    const job = await jobInsert(trx, {
      id,
      user_id: input.user_id,
      workspace_id: workspaceId,
      project_id: input.project_id ?? null,
      kind: input.kind,
      model: input.model ?? null,
      provider: input.provider ?? 'default',
      external_id: input.external_id ?? null,
      input: input.input,
      prompt: input.prompt ?? null,
      image_url: input.image_url ?? null,
      cost: input.cost,
      hold_id: holdId,
      metadata: input.metadata ?? {},
      timeout_at: timeoutAt,
    });
    await this.queue.enqueue(trx, {
      type: JOB_TIMEOUT_TYPE,
      input: { job_id: id },
      runAt: timeoutAt,
      dedupeKey: timeoutKey(id),
      name: `timeout of ${id}`,
    });
    return job;
  }

  /**
   * One transition, in the caller's transaction. Throws 404 for an unknown job and 409
   * `invalid_state` when the job's state does not allow the event (nothing moves).
   */
  async apply(trx: Executor, jobId: string, event: JobEvent, input: TransitionInput, requestId: string): Promise<JobRow> {
    const outcome = await this.tryApply(trx, jobId, event, input, requestId);
    if (!outcome.applied) throw errors.invalidState(outcome.reason, { job_id: jobId, status: outcome.job.status });
    return outcome.job;
  }

  /** Like `apply`, but a refused transition is a value (callbacks and timeouts use it). */
  async tryApply(trx: Executor, jobId: string, event: JobEvent, input: TransitionInput, requestId: string): Promise<TransitionOutcome> {
    const job = await jobLock(trx, jobId);
    if (!job) throw errors.notFound('Job', jobId);
    const status = job.status as JobStatus;
    const next = transition(status, event);
    if (!next.ok) return { applied: false, job, reason: next.reason };

    const now = this.now();
    let captured: number | null = null;
    if (next.settle === 'capture') {
      const amount = input.cost ?? job.cost;
      if (amount > job.cost) {
        throw errors.invalidRequest(`cost ${amount} exceeds the ${job.cost} credits held for this job`, { field: 'body.cost', held: job.cost });
      }
      captured = amount;
    }
    if (next.settle !== 'none' && job.hold_id) await this.settle(trx, job, next.settle, captured ?? 0, event, requestId);

    const final = isFinalJob(next.to);
    const updated = await jobUpdate(trx, jobId, {
      status: next.to,
      ...(input.externalId !== undefined ? { external_id: input.externalId } : {}),
      ...(input.output !== undefined ? { output: input.output } : {}),
      ...(input.resultUrl !== undefined ? { result_url: input.resultUrl } : {}),
      ...(input.tokensUsed !== undefined ? { tokens_used: input.tokensUsed } : {}),
      ...(input.error !== undefined ? { error: input.error } : event === 'timeout' ? { error: 'timed out' } : {}),
      ...(next.settle === 'capture' ? { captured } : {}),
      ...(event === 'start' ? { started_at: now } : {}),
      ...(final
        ? { completed_at: now, duration_ms: Math.max(0, now.getTime() - new Date(job.started_at ?? job.created_at).getTime()) }
        : {}),
    });
    // A settled job needs no timeout any more (the timeout would find it final anyway).
    if (final) await this.queue.cancel(trx, timeoutKey(jobId));
    // Told to the app in this same transaction (docs/webhooks-out.md): completed, or failed (a timeout too).
    const told = next.to === 'completed' ? 'job.completed' : next.to === 'failed' || next.to === 'timed_out' ? 'job.failed' : null;
    // A job a workspace pool pays for is also the workspace's event (its endpoints receive it).
    if (told) await this.events.emit(trx, { type: told, data: jobToApi(updated), userId: updated.user_id, workspaceId: updated.workspace_id ?? null });
    return { applied: true, job: updated };
  }

  /**
   * Captures or releases the job's hold inside the transition's transaction. The idempotency key
   * is the same for both ("settle"): whichever settlement commits first owns it, and any other —
   * a retry, a race that slipped past the row lock, a bug — replays it or is refused as reused.
   */
  private async settle(trx: Executor, job: JobRow, kind: 'capture' | 'release', amount: number, event: JobEvent, requestId: string): Promise<void> {
    const holdId = job.hold_id as string;
    const body = kind === 'capture' ? { kind, hold_id: holdId, amount } : { kind, hold_id: holdId };
    const idem = scopeOf(JOB_SETTLE, { principal: jobPrincipal(job.id) }, 'settle', { params: { id: job.id }, body });
    const op =
      kind === 'capture'
        ? { kind: 'capture' as const, requestId, idem, holdId, amount, metadata: { job_id: job.id } }
        : { kind: 'release' as const, requestId, idem, holdId };
    try {
      await this.settleIn(trx, job.workspace_id === null ? { userId: job.user_id } : { workspaceId: job.workspace_id }, op);
    } catch (err) {
      // The hold's own expiry already gave the credits back: a release has nothing left to do.
      if (kind === 'release' && err instanceof DomainError && err.code === 'invalid_state' && (await this.holdStatus(trx, holdId)) === 'expired') return;
      if (err instanceof DomainError && (err.code === 'invalid_state' || err.code === 'idempotency_key_reused')) {
        throw errors.invalidState(`The job's hold cannot be ${kind === 'capture' ? 'captured' : 'released'} (${err.message})`, {
          job_id: job.id,
          hold_id: holdId,
          event,
        });
      }
      throw err;
    }
  }

  /** One ledger operation in the job's transaction; a refusal is raised (the job's change rolls back). */
  private async settleIn(trx: Executor, owner: Owner, op: LedgerOp): Promise<unknown> {
    const [result] = await this.credits.executeIn(trx, owner, [op]);
    if (!result) throw errors.internal();
    return unwrap(result);
  }

  private async holdStatus(trx: Executor, holdId: string): Promise<string | null> {
    const row = await trx.selectFrom('credit_holds').select('status').where('id', '=', holdId).executeTakeFirst();
    return row?.status ?? null;
  }

  /** The queue's handler: time the job out if it is still open (a settled job is left alone). */
  private async onTimeout(bg: BackgroundJob, db: Db): Promise<unknown> {
    const jobId = String(bg.input['job_id'] ?? '');
    return db.transaction().execute(async (trx) => {
      const job = await jobFind(trx, jobId);
      if (!job) return { job_id: jobId, skipped: 'not found' };
      if (new Date(job.timeout_at).getTime() > this.now().getTime()) {
        throw new Error(`job ${jobId} is not due to time out until ${new Date(job.timeout_at).toISOString()}`);
      }
      // The audit row of the job's end (docs/audit.md) names the worker and its queue job.
      await setAuditActor(trx, { kind: 'system', id: 'jobs.timeout' }, `timeout:${bg.id}`);
      const outcome = await this.tryApply(trx, jobId, 'timeout', {}, `timeout:${bg.id}`);
      return outcome.applied ? { job_id: jobId, status: outcome.job.status } : { job_id: jobId, skipped: outcome.reason };
    });
  }

  /** What a callback's signature is checked against: the job's id and provider (null: no such job). */
  async callbackTarget(db: Executor, id: string): Promise<{ id: string; provider: string } | null> {
    const job = await db.selectFrom('jobs').select(['id', 'provider']).where('id', '=', id).executeTakeFirst();
    return job ?? null;
  }

  /**
   * A provider callback (already verified for this job): a repeat of what already happened is
   * acknowledged, not refused. A job that has its provider's id accepts only callbacks naming it —
   * the body is signed, so a signed callback can never re-point the job at another provider job.
   */
  async callback(db: Db, jobId: string, event: JobEvent, input: TransitionInput, requestId: string): Promise<{ job: JobRow; applied: boolean }> {
    return db.transaction().execute(async (trx) => {
      const job = await jobLock(trx, jobId);
      if (!job) throw errors.notFound('Job', jobId);
      // No principal signs a callback: the audit row of the job's end names its provider and the request.
      await setAuditActor(trx, { kind: 'provider', id: job.provider }, requestId);
      if (job.external_id !== null && input.externalId !== job.external_id) {
        throw errors.conflict(`This job's provider id is ${job.external_id}; the callback names ${input.externalId ?? 'none'}`, {
          job_id: jobId,
          external_id: job.external_id,
        });
      }
      const outcome = await this.tryApply(trx, jobId, event, input, requestId);
      if (outcome.applied) return { job: outcome.job, applied: true };
      if (outcome.job.status === EVENT_TARGET[event]) return { job: outcome.job, applied: false };
      throw errors.invalidState(outcome.reason, { job_id: jobId, status: outcome.job.status });
    });
  }

  async get(db: Executor, principal: Principal, id: string): Promise<JobRow> {
    const job = await jobFind(db, id);
    // Another user's job does not exist as far as they can tell (RLS hides it too).
    if (!job || (principal.kind === 'user' && job.user_id !== principal.userId)) throw errors.notFound('Job', id);
    return job;
  }

  async listForUser(db: Executor, principal: Principal, userId: string, page: PageRequest, status?: string) {
    if (principal.kind === 'user' && principal.userId !== userId) throw errors.forbidden('You can only list your own jobs');
    if (principal.kind === 'service' && !(await userFindById(db, userId))) throw errors.notFound('User', userId);
    return jobListByUser(db, userId, page, status);
  }

  /** Every user's jobs (the service only: the route refuses users before this runs). */
  async listAll(db: Executor, page: PageRequest, filter: { status?: string; userId?: string }) {
    return jobList(db, page, filter);
  }

  /** Maps the body of a complete call to a transition input. */
  static completeInput(body: Static<typeof CompleteJobBody>): TransitionInput {
    return {
      ...(body.output !== undefined ? { output: body.output } : {}),
      ...(body.result_url !== undefined ? { resultUrl: body.result_url } : {}),
      ...(body.cost !== undefined ? { cost: body.cost } : {}),
      ...(body.tokens_used !== undefined ? { tokensUsed: body.tokens_used } : {}),
    };
  }
}

/**
 * Who may spend a workspace's pool: owners, admins and members. A non-member gets the answer a
 * workspace that does not exist gets (404), so workspace ids do not leak; a viewer gets 403.
 */
async function assertMaySpendPool(trx: Executor, workspaceId: string, userId: string): Promise<void> {
  const role = await memberRole(trx, workspaceId, userId);
  if (role === null) throw errors.notFound('Workspace', workspaceId);
  if (role === 'viewer') throw errors.forbidden('A viewer cannot spend from the workspace pool');
  // A free job never reaches the ledger, which checks this again under the pool's lock.
  const ws = await trx.selectFrom('workspaces').select('is_active').where('id', '=', workspaceId).executeTakeFirst();
  if (!ws?.is_active) throw errors.conflict('This workspace is deactivated: its pool cannot be spent', { workspace_id: workspaceId });
}

const jobPrincipal = (jobId: string) => `job:${jobId}`;
export const timeoutKey = (jobId: string) => `${JOB_TIMEOUT_TYPE}:${jobId}`;

