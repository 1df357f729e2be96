import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import { type CreateCodeExecutionBody, codeExecutionToApi, type UpdateCodeExecutionBody } from './ide.code-executions.js';
import { type IdeEvents, withoutText } from './ide.events.js';
import { canMove, executionLifecycle, isFinal, statusOf } from './ide.lifecycles.js';
import { type IdeAccess, standing } from './ide.js';
import { fileVersionInProject, ideDelete, ideFind, ideInsert, ideList, type IdeListFilter, ideUpdate, type Row } from './ide.repository.js';

const T = 'code_executions';

/**
 * Code executions: a run is queued by a writer of the project, moved by its runner through
 * queued → running → completed | failed | timed_out | canceled, and final after that. Runs are not
 * billed here (docs/ide.md): an app that charges for them records a usage event for the run's id.
 */
export class CodeExecutionsService {
  constructor(
    private readonly access: IdeAccess,
    private readonly now: () => Date,
    private readonly events: IdeEvents,
  ) {}

  async create(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateCodeExecutionBody>): Promise<Row> {
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

  async get(db: Executor, principal: Principal, projectId: string, id: string): Promise<Row> {
    await this.access.read(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Code execution', id);
    return row;
  }

  async list(db: Executor, principal: Principal, projectId: string, page: PageRequest, filter: IdeListFilter) {
    await this.access.read(db, principal, projectId);
    return ideList(db, T, projectId, page, filter);
  }

  async update(db: Executor, principal: Principal, projectId: string, id: string, body: Static<typeof UpdateCodeExecutionBody>): Promise<Row> {
    const role = await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Code execution', id);
    // The runner's results are written by the run's author or the service; an owner or admin may only cancel another's run.
    if (standing(principal, role, row['user_id'] as string | null, 'code execution') === 'moderator' && (body.status !== 'canceled' || Object.keys(body).length !== 1)) {
      throw errors.forbidden("Another member's code execution can only be canceled; its results are reported by its author or the service");
    }
    const from = statusOf(executionLifecycle, row['status'] as string);
    if (isFinal(executionLifecycle, from)) throw errors.invalidState(`The execution is already ${from}`, { id, status: from });
    const to = body.status ?? from;
    if (to !== from && !canMove(executionLifecycle, from, to)) throw errors.invalidState(`An execution cannot move from ${from} to ${to}`, { id, status: from });
    const now = this.now();
    const patch: Row = { ...body };
    if (to === 'running' && from !== 'running') patch['started_at'] = now;
    if (isFinal(executionLifecycle, to)) patch['finished_at'] = now;
    const updated = await ideUpdate(db, T, projectId, id, patch, from);
    if (!updated) throw errors.invalidState('The execution changed meanwhile; read it again', { id });
    if (to !== from && (to === 'completed' || to === 'failed' || to === 'timed_out')) {
      const data = withoutText(codeExecutionToApi(updated), ['source_code', 'stdin', 'stdout', 'stderr', 'compile_output']);
      await this.events.tell(db, projectId, to === 'completed' ? 'code_execution.completed' : 'code_execution.failed', data);
    }
    return updated;
  }

  async remove(db: Executor, principal: Principal, projectId: string, id: string): Promise<void> {
    const role = await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Code execution', id);
    standing(principal, role, row['user_id'] as string | null, 'code execution');
    if (!(await ideDelete(db, T, projectId, id))) throw errors.notFound('Code execution', id);
  }
}
