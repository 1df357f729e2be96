import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import type { CreateEditorSessionBody, UpdateEditorSessionBody } from './ide.editor-sessions.js';
import { canMove, editorLifecycle, type EditorStatus, isFinal, statusOf } from './ide.lifecycles.js';
import { type IdeAccess, isUniqueViolation, userOf } from './ide.js';
import { ideDelete, ideFind, ideInsert, ideList, type IdeListFilter, ideUpdate, projectFilesExist, type IdeRow } from './ide.repository.js';

const T = 'editor_sessions';

/**
 * Editor sessions: who has which files of a project open, with cursors and layout. One open
 * session per user and project (a unique partial index); closed sessions are kept. A session is
 * changed only by its own user (or the service); members may read everyone's (presence).
 */
export class EditorSessionsService {
  constructor(
    private readonly access: IdeAccess,
    private readonly now: () => Date,
  ) {}

  async create(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateEditorSessionBody>): Promise<IdeRow<'editor_sessions'>> {
    await this.access.write(db, principal, projectId);
    const userId = await this.access.actor(db, principal, projectId, body.user_id);
    if (userId === null) throw errors.invalidRequest('user_id is required when the service opens an editor session', { field: 'body.user_id' });
    await this.checkFiles(db, projectId, body);
    try {
      return await ideInsert(db, T, {
        id: newId('editorSession'), project_id: projectId, user_id: userId, status: editorLifecycle.initial,
        open_files: body.open_files ?? [], active_file_id: body.active_file_id ?? null, layout_state: body.layout_state ?? {}, last_active_at: this.now(),
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw errors.conflict('This user already has an open editor session in this project; close it first', { project_id: projectId, user_id: userId });
      throw err;
    }
  }

  async get(db: Executor, principal: Principal, projectId: string, id: string): Promise<IdeRow<'editor_sessions'>> {
    await this.access.read(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Editor session', id);
    return row;
  }

  async list(db: Executor, principal: Principal, projectId: string, page: PageRequest, filter: IdeListFilter) {
    await this.access.read(db, principal, projectId);
    return ideList(db, T, projectId, page, filter);
  }

  async update(db: Executor, principal: Principal, projectId: string, id: string, body: Static<typeof UpdateEditorSessionBody>): Promise<IdeRow<'editor_sessions'>> {
    const row = await this.own(db, principal, projectId, id);
    const from: EditorStatus = statusOf(editorLifecycle, row.status);
    if (isFinal(editorLifecycle, from)) throw errors.invalidState(`The editor session is ${from}`, { id, status: from });
    const to: EditorStatus = body.status ?? from;
    if (to !== from && !canMove(editorLifecycle, from, to)) throw errors.invalidState(`An editor session cannot move from ${from} to ${to}`, { id, status: from });
    await this.checkFiles(db, projectId, body);
    const now = this.now();
    const updated = await ideUpdate(
      db, T, projectId, id,
      { open_files: body.open_files, active_file_id: body.active_file_id, layout_state: body.layout_state, last_active_at: now, ...(to !== from ? { status: to, closed_at: now } : {}) },
      from,
    );
    if (!updated) throw errors.invalidState('The editor session changed meanwhile; read it again', { id });
    return updated;
  }

  async remove(db: Executor, principal: Principal, projectId: string, id: string): Promise<void> {
    await this.own(db, principal, projectId, id);
    if (!(await ideDelete(db, T, projectId, id))) throw errors.notFound('Editor session', id);
  }

  private async own(db: Executor, principal: Principal, projectId: string, id: string): Promise<IdeRow<'editor_sessions'>> {
    await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Editor session', id);
    const me = userOf(principal);
    if (me !== null && row.user_id !== me) throw errors.forbidden("Only the session's own user changes an editor session");
    return row;
  }

  private async checkFiles(db: Executor, projectId: string, body: { open_files?: { file_id: string }[]; active_file_id?: string | null }) {
    const ids = [...(body.open_files ?? []).map((f) => f.file_id), ...(body.active_file_id ? [body.active_file_id] : [])];
    if (!(await projectFilesExist(db, projectId, ids))) throw errors.invalidRequest('Every open file must be a file of this project', { field: 'body.open_files' });
  }
}
