import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import type { RowPatch } from '../../db/rows.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import { elevate } from '../../db/request-role.js';
import { projectFind } from '../projects/projects.repository.js';
import type { ExecutionCharger, ExecutionPayer } from './ide.charger.js';
import { type CreateCodeExecutionBody, codeExecutionToApi, type UpdateCodeExecutionBody } from './ide.code-executions.js';
import { type IdeEvents, withoutText } from './ide.events.js';
import { canMove, executionLifecycle, isFinal, statusOf } from './ide.lifecycles.js';
import { type IdeAccess, standing } from './ide.js';
import { fileVersionInProject, ideDelete, ideFind, ideHasStatus, ideInsert, ideList, type IdeListFilter, ideUpdate, type IdeRow } from './ide.repository.js';

const T = 'code_executions';

/** What a runner reports that ends a run it ran, and so sets its price when runs are billed. */
const RAN_TO_THE_END = new Set(['completed', 'failed', 'timed_out']);

/**
 * Code executions: a run is queued by a writer of the project, moved by its runner through
 * queued → running → completed | failed | timed_out | canceled, and final after that. When the
 * deployment bills runs (a charger is wired; docs/ide.md, "Billing runs"), a run is prepaid: its
 * move to running holds the price of the longest billed run on the project's owner (refused before
 * any compute when the payer may not pay), and its final move captures what it cost from that
 * hold in the same transaction, once per run, re-checking nothing the payer could have changed.
 */
export class CodeExecutionsService {
  constructor(
    private readonly access: IdeAccess,
    private readonly now: () => Date,
    private readonly events: IdeEvents,
    private readonly charger: ExecutionCharger | null = null,
  ) {}

  async create(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateCodeExecutionBody>): Promise<IdeRow<'code_executions'>> {
    await this.access.write(db, principal, projectId);
    const userId = await this.access.actor(db, principal, projectId, body.user_id);
    if ((body.source_code === undefined) === (body.file_version_id === undefined)) {
      throw errors.invalidRequest('Send exactly one of source_code or file_version_id', { field: 'body.source_code' });
    }
    if (body.file_version_id !== undefined && !(await fileVersionInProject(db, projectId, body.file_version_id))) {
      throw errors.invalidRequest('file_version_id must be a file version of this project', { field: 'body.file_version_id' });
    }
    const { user_id: _named, ...fields } = body;
    return ideInsert(db, T, { id: newId('codeExecution'), project_id: projectId, user_id: userId, status: executionLifecycle.initial, ...fields });
  }

  async get(db: Executor, principal: Principal, projectId: string, id: string): Promise<IdeRow<'code_executions'>> {
    await this.access.read(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Code execution', id);
    return row;
  }

  async list(db: Executor, principal: Principal, projectId: string, page: PageRequest, filter: IdeListFilter) {
    await this.access.read(db, principal, projectId);
    return ideList(db, T, projectId, page, filter);
  }

  async update(db: Executor, principal: Principal, projectId: string, id: string, body: Static<typeof UpdateCodeExecutionBody>): Promise<IdeRow<'code_executions'>> {
    const role = await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Code execution', id);
    // The runner's results are written by the run's author or the service; an owner or admin may only cancel another's run.
    if (standing(principal, role, row.user_id, 'code execution') === 'moderator' && (body.status !== 'canceled' || Object.keys(body).length !== 1)) {
      throw errors.forbidden("Another member's code execution can only be canceled; its results are reported by its author or the service");
    }
    // A billed run's price is what its runner reports: only the service may report it, so no one prices their own run.
    if (this.charger && principal.kind !== 'service' && ((body.status !== undefined && RAN_TO_THE_END.has(body.status)) || body.execution_time_ms !== undefined)) {
      throw errors.forbidden("Runs are billed: a run's end and its time are reported by the runner (the service); you may cancel it");
    }
    const from = statusOf(executionLifecycle, row.status);
    if (isFinal(executionLifecycle, from)) throw errors.invalidState(`The execution is already ${from}`, { id, status: from });
    const to = body.status ?? from;
    if (to !== from && !canMove(executionLifecycle, from, to)) throw errors.invalidState(`An execution cannot move from ${from} to ${to}`, { id, status: from });
    const now = this.now();
    const { execution_time_ms, ...fields } = body;
    // numeric is written as its decimal text (what the driver sends for a number anyway)
    const patch: RowPatch<'code_executions'> = { ...fields, ...(execution_time_ms !== undefined ? { execution_time_ms: String(execution_time_ms) } : {}) };
    if (to === 'running' && from !== 'running') patch.started_at = now;
    if (isFinal(executionLifecycle, to)) patch.finished_at = now;
    let updated = await ideUpdate(db, T, projectId, id, patch, from);
    if (!updated) throw errors.invalidState('The execution changed meanwhile; read it again', { id });
    if (this.charger && to === 'running' && from !== 'running') updated = await this.prepay(db, projectId, updated, this.charger);
    if (this.charger && to !== from && isFinal(executionLifecycle, to)) await this.bill(db, projectId, updated, this.charger);
    if (to !== from && (to === 'completed' || to === 'failed' || to === 'timed_out')) {
      const data = withoutText(codeExecutionToApi(updated), ['source_code', 'stdin', 'stdout', 'stderr', 'compile_output']);
      await this.events.tell(db, projectId, to === 'completed' ? 'code_execution.completed' : 'code_execution.failed', data);
    }
    return updated;
  }

  /**
   * The run's hold, in the transaction of its move to running and after every check of the move
   * (it runs as the owner: end users hold no grant on money). The payer's role, spend cap and
   * credits are checked now: a refusal (402, 403, 404, an unpriced metric) refuses the start, so
   * nothing runs that cannot be paid. The run keeps the hold's id for its final move.
   */
  private async prepay(db: Executor, projectId: string, run: IdeRow<'code_executions'>, charger: ExecutionCharger): Promise<IdeRow<'code_executions'>> {
    const owner = await this.payerOf(db, projectId, run);
    await elevate(db);
    const { holdId } = await charger.hold(db, { owner, runId: run.id, metadata: { project_id: projectId, language: run.language } });
    if (holdId === null) return run;
    const kept = await ideUpdate(db, T, projectId, run.id, { hold_id: holdId }, 'running');
    if (!kept) throw new Error(`code execution ${run.id} left running inside its own transaction`);
    return kept;
  }

  /**
   * The run's usage event, after every check of the move (as the owner). A run canceled before it
   * started costs nothing. Prepaid (its hold), the event captures its price from the hold — at
   * most the hold — and nothing the payer did since the start (a demotion, a cap, spent credits)
   * can refuse it. Without an open hold (a run started before holds; a hold that expired, the run
   * outliving it by an hour), the event is paid as any other, and a refusal (no cost model,
   * credits short, the member's spend cap) refuses the move itself: nothing commits.
   */
  private async bill(db: Executor, projectId: string, run: IdeRow<'code_executions'>, charger: ExecutionCharger): Promise<void> {
    const started = run.started_at;
    if (!started) return;
    const finished = run.finished_at ?? this.now();
    const reported = run.execution_time_ms === null ? null : Number(run.execution_time_ms);
    const quantity = Math.max(1, Math.ceil(reported ?? finished.getTime() - new Date(started).getTime()));
    const owner = await this.payerOf(db, projectId, run);
    await elevate(db);
    await charger.charge(db, {
      owner,
      quantity,
      actionHash: run.id,
      metadata: { code_execution_id: run.id, project_id: projectId, language: run.language, status: run.status },
      holdId: run.hold_id,
    });
  }

  /** Who pays for a run: the project's user, or its workspace's pool for the member who ran it (else the project's creator). */
  private async payerOf(db: Executor, projectId: string, run: IdeRow<'code_executions'>): Promise<ExecutionPayer> {
    const project = await projectFind(db, projectId);
    if (!project) throw errors.notFound('Project', projectId);
    if (project.workspace_id !== null) {
      const memberId = run.user_id ?? project.created_by;
      if (memberId === null) throw errors.invalidRequest('A billed run of a workspace project needs the member who ran it (user_id)', { field: 'body.user_id' });
      return { workspaceId: project.workspace_id, memberId };
    }
    if (project.user_id !== null) return { userId: project.user_id };
    throw new Error(`project ${projectId} has no owner`);
  }

  async remove(db: Executor, principal: Principal, projectId: string, id: string): Promise<void> {
    const role = await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Code execution', id);
    standing(principal, role, row.user_id, 'code execution');
    // A billed run is paid by its final move: deleted while running, it would never be (review attack 4).
    // The delete itself re-checks the status, so a run the runner starts meanwhile is kept too.
    const unless = this.charger ? 'running' : undefined;
    if (this.charger && row.status === 'running') throw inFlight(id);
    if (!(await ideDelete(db, T, projectId, id, unless))) {
      if (this.charger && (await ideFind(db, T, projectId, id))?.status === 'running') throw inFlight(id);
      throw errors.notFound('Code execution', id);
    }
  }

  /**
   * Refuses to delete a project while one of its billed runs is running (the project's delete
   * would take the run with it, and the run's charge with the run). Wired as a project delete
   * guard only when runs are billed.
   */
  async assertNoBilledRunInFlight(db: Executor, projectId: string): Promise<void> {
    if (this.charger && (await ideHasStatus(db, T, projectId, 'running'))) {
      throw errors.invalidState('The project has a billed code execution running: end it first (a canceled run is billed for the time it ran)', {
        project_id: projectId,
      });
    }
  }
}

function inFlight(id: string) {
  return errors.invalidState('A billed code execution cannot be deleted while it runs: end it first (a canceled run is billed for the time it ran)', {
    id,
    status: 'running',
  });
}
