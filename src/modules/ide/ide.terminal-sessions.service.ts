import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import type { RowPatch } from '../../db/rows.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import { canMove, isFinal, statusOf, terminalLifecycle } from './ide.lifecycles.js';
import { type IdeAccess, standing } from './ide.js';
import { ideDelete, ideFind, ideInsert, ideList, type IdeListFilter, ideUpdate, type IdeRow } from './ide.repository.js';
import type { CreateTerminalSessionBody, UpdateTerminalSessionBody } from './ide.terminal-sessions.js';

const T = 'terminal_sessions';

/** Terminal sessions: a shell in a project, its command and output, ended once with an exit code. */
export class TerminalSessionsService {
  constructor(
    private readonly access: IdeAccess,
    private readonly now: () => Date,
  ) {}

  async create(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateTerminalSessionBody>): Promise<IdeRow<'terminal_sessions'>> {
    await this.access.write(db, principal, projectId);
    const userId = await this.access.actor(db, principal, projectId, body.user_id);
    if (userId === null) throw errors.invalidRequest('user_id is required when the service starts a terminal session', { field: 'body.user_id' });
    const { user_id: _named, ...fields } = body;
    return ideInsert(db, T, { id: newId('terminalSession'), project_id: projectId, user_id: userId, status: terminalLifecycle.initial, started_at: this.now(), ...fields });
  }

  async get(db: Executor, principal: Principal, projectId: string, id: string): Promise<IdeRow<'terminal_sessions'>> {
    await this.access.read(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Terminal session', id);
    return row;
  }

  async list(db: Executor, principal: Principal, projectId: string, page: PageRequest, filter: IdeListFilter) {
    await this.access.read(db, principal, projectId);
    return ideList(db, T, projectId, page, filter);
  }

  async update(db: Executor, principal: Principal, projectId: string, id: string, body: Static<typeof UpdateTerminalSessionBody>): Promise<IdeRow<'terminal_sessions'>> {
    const role = await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Terminal session', id);
    // Another member's session: an owner or admin may end it (killed), never write its command or output.
    if (standing(principal, role, row.user_id, 'terminal session') === 'moderator' && (body.status !== 'killed' || Object.keys(body).length !== 1)) {
      throw errors.forbidden("Another member's terminal session can only be ended (status killed); its command and output are its user's");
    }
    const from = statusOf(terminalLifecycle, row.status);
    if (isFinal(terminalLifecycle, from)) throw errors.invalidState(`The terminal session has already ${from === 'exited' ? 'exited' : `ended (${from})`}`, { id, status: from });
    const to = body.status ?? from;
    if (to !== from && !canMove(terminalLifecycle, from, to)) throw errors.invalidState(`A terminal session cannot move from ${from} to ${to}`, { id, status: from });
    if (body.exit_code !== undefined && to === 'running') throw errors.invalidRequest('exit_code is set when the session ends', { field: 'body.exit_code' });
    const now = this.now();
    const ending = to !== from;
    const patch: RowPatch<'terminal_sessions'> = { ...body };
    if (ending) {
      patch.ended_at = now;
      patch.duration_ms = Math.min(2_147_483_647, Math.max(0, now.getTime() - new Date(row.started_at).getTime()));
    }
    const updated = await ideUpdate(db, T, projectId, id, patch, from);
    if (!updated) throw errors.invalidState('The terminal session changed meanwhile; read it again', { id });
    return updated;
  }

  async remove(db: Executor, principal: Principal, projectId: string, id: string): Promise<void> {
    const role = await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Terminal session', id);
    standing(principal, role, row.user_id, 'terminal session');
    if (!(await ideDelete(db, T, projectId, id))) throw errors.notFound('Terminal session', id);
  }
}
