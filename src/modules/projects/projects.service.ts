import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import type { NewRow, RowPatch } from '../../db/rows.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import { userFindById } from '../users/users.repository.js';
import { memberRole, workspaceFindById } from '../workspaces/workspaces.repository.js';
import type { MessageCharger } from './projects.charger.js';
import {
  canDelete,
  canWrite,
  type CompleteRequestBody,
  type CreateCommitBody,
  type CreateConversationBody,
  type CreateMessageBody,
  type CreateProjectBody,
  type CreateRequestBody,
  type CreateSessionBody,
  type CreateToolUsageBody,
  type ProjectRole,
  type UpdateProjectBody,
  type UpdateSessionBody,
} from './projects.js';
import {
  childFind,
  childInsert,
  childList,
  childUpdate,
  type ChildFilters,
  type ProjectChildTable,
  projectDelete,
  projectFind,
  projectInsert,
  projectList,
  type ProjectRow,
  projectUpdate,
} from './projects.repository.js';

/**
 * Projects and their agent work. Every call resolves the caller's role on the project first
 * (service = owner; a user = owner of their own project, or their workspace role), then checks it;
 * row-level security checks the same again (docs/projects.md).
 */
export class ProjectsService {
  constructor(
    private readonly now: () => Date,
    private charger: MessageCharger | null = null,
  ) {}

  /** Checks a project's delete must pass first (another module's rows that must not vanish with it). */
  private readonly deleteGuards: ((db: Executor, projectId: string) => Promise<void>)[] = [];

  /** Wired by the composition root once billing's usage events exist. */
  setCharger(charger: MessageCharger | null): void {
    this.charger = charger;
  }

  /** A check every project delete runs after the role check (it refuses by throwing a domain error). */
  guardDelete(guard: (db: Executor, projectId: string) => Promise<void>): void {
    this.deleteGuards.push(guard);
  }

  /** The caller's role on a project; 404 when the project does not exist for them. */
  async access(db: Executor, principal: Principal, projectId: string): Promise<{ project: ProjectRow; role: ProjectRole }> {
    const project = await projectFind(db, projectId);
    if (!project) throw errors.notFound('Project', projectId);
    if (principal.kind === 'service') return { project, role: 'owner' };
    if (principal.kind !== 'user') throw errors.unauthenticated();
    if (project.user_id === principal.userId) return { project, role: 'owner' };
    const role = project.workspace_id ? await memberRole(db, project.workspace_id, principal.userId) : null;
    if (!role) throw errors.notFound('Project', projectId);
    return { project, role };
  }

  private async writable(db: Executor, principal: Principal, projectId: string) {
    const a = await this.access(db, principal, projectId);
    if (!canWrite(a.role)) throw errors.forbidden('Viewers can read this project but not change it');
    return a;
  }

  async create(db: Executor, principal: Principal, input: Static<typeof CreateProjectBody>) {
    const { workspace_id, user_id, ...fields } = input;
    if (workspace_id !== undefined && user_id !== undefined) {
      throw errors.invalidRequest('A project belongs to a user or a workspace, not both', { field: 'body.workspace_id' });
    }
    let owner: { user_id: string | null; workspace_id: string | null };
    if (workspace_id !== undefined) {
      if (principal.kind === 'user') {
        const role = await memberRole(db, workspace_id, principal.userId);
        if (!role) throw errors.notFound('Workspace', workspace_id);
        if (!canWrite(role)) throw errors.forbidden('Viewers cannot create projects in this workspace');
      } else if (!(await workspaceFindById(db, workspace_id))) {
        throw errors.notFound('Workspace', workspace_id);
      }
      owner = { user_id: null, workspace_id };
    } else if (principal.kind === 'user') {
      if (user_id !== undefined && user_id !== principal.userId) throw errors.forbidden('You can only create projects you own');
      owner = { user_id: principal.userId, workspace_id: null };
    } else {
      if (!user_id) throw errors.invalidRequest('user_id or workspace_id is required when the service creates a project', { field: 'body.user_id' });
      if (!(await userFindById(db, user_id))) throw errors.notFound('User', user_id);
      owner = { user_id, workspace_id: null };
    }
    return projectInsert(db, {
      id: newId('project'),
      ...owner,
      created_by: principal.kind === 'user' ? principal.userId : null,
      ...fields,
    });
  }

  async get(db: Executor, principal: Principal, id: string) {
    return (await this.access(db, principal, id)).project;
  }

  async list(db: Executor, principal: Principal, page: PageRequest, filter: { user_id?: string; workspace_id?: string }) {
    if (principal.kind === 'user') {
      if (filter.user_id !== undefined && filter.user_id !== principal.userId) throw errors.forbidden('You can only list your own projects');
      if (filter.workspace_id !== undefined && !(await memberRole(db, filter.workspace_id, principal.userId))) {
        throw errors.notFound('Workspace', filter.workspace_id);
      }
      return projectList(db, page, { memberId: principal.userId, ...(filter.user_id ? { userId: filter.user_id } : {}), ...(filter.workspace_id ? { workspaceId: filter.workspace_id } : {}) });
    }
    return projectList(db, page, { ...(filter.user_id ? { userId: filter.user_id } : {}), ...(filter.workspace_id ? { workspaceId: filter.workspace_id } : {}) });
  }

  async update(db: Executor, principal: Principal, id: string, patch: Static<typeof UpdateProjectBody>) {
    await this.writable(db, principal, id);
    const row = await projectUpdate(db, id, patch);
    if (!row) throw errors.notFound('Project', id);
    return row;
  }

  async remove(db: Executor, principal: Principal, id: string): Promise<void> {
    const { role } = await this.access(db, principal, id);
    if (!canDelete(role)) throw errors.forbidden('Only the owner can delete a project');
    for (const guard of this.deleteGuards) await guard(db, id);
    if (!(await projectDelete(db, id))) throw errors.notFound('Project', id);
  }

  // ---- agent work ---------------------------------------------------------------------------

  async listChildren<T extends ProjectChildTable>(db: Executor, principal: Principal, projectId: string, table: T, page: PageRequest, filters: ChildFilters<T> = {}) {
    await this.access(db, principal, projectId);
    return childList(db, table, projectId, page, filters);
  }

  async createConversation(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateConversationBody>) {
    await this.writable(db, principal, projectId);
    return childInsert(db, 'conversations', { id: newId('conversation'), project_id: projectId, user_id: userOf(principal), ...body });
  }

  async createSession(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateSessionBody>) {
    await this.writable(db, principal, projectId);
    if (body.conversation_id !== undefined) await this.child(db, 'conversations', projectId, body.conversation_id, 'Conversation');
    return childInsert(db, 'agent_sessions', { id: newId('agentSession'), project_id: projectId, started_at: this.now(), ...body });
  }

  /** Ends a session once (active → completed/failed/canceled), or updates its summary. */
  async updateSession(db: Executor, principal: Principal, projectId: string, sessionId: string, body: Static<typeof UpdateSessionBody>) {
    await this.writable(db, principal, projectId);
    const session = await this.child(db, 'agent_sessions', projectId, sessionId, 'Session');
    const patch: RowPatch<'agent_sessions'> = { ...body };
    if (body.status !== undefined) {
      if (session.status !== 'active') throw errors.invalidState(`The session is already ${session.status}`, { session_id: sessionId });
      const now = this.now();
      patch.completed_at = now;
      patch.duration_ms = Math.max(0, now.getTime() - new Date(session.started_at).getTime());
    }
    const row = await childUpdate(db, 'agent_sessions', projectId, sessionId, patch);
    if (!row) throw errors.notFound('Session', sessionId);
    return row;
  }

  /**
   * Records a message. Its session's totals move in the same transaction (a database trigger), and
   * a `charge` goes to the project owner's credits through the wired charger (the service only).
   */
  async createMessage(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateMessageBody>) {
    const { project } = await this.writable(db, principal, projectId);
    const { charge, cost_usd, ...fields } = body;
    const id = newId('message');
    // numeric is written as its decimal text (what the driver sends for a number anyway)
    const values: NewRow<'messages'> = { id, project_id: projectId, user_id: userOf(principal), ...fields, ...(cost_usd !== undefined ? { cost_usd: String(cost_usd) } : {}) };
    if (charge) {
      if (principal.kind !== 'service') throw errors.forbidden('Only the service can charge credits for a message');
      values.charge_metric = charge.metric;
      values.charge_quantity = charge.quantity;
      if (this.charger) {
        const owner = project.workspace_id ? { workspaceId: project.workspace_id } : { userId: project.user_id as string };
        const result = await this.charger.charge(db, {
          owner,
          metric: charge.metric,
          quantity: charge.quantity,
          actionHash: id,
          metadata: { project_id: projectId, message_id: id, ...(body.session_id ? { session_id: body.session_id } : {}) },
        });
        values.credits_charged = result.charged;
        values.usage_event_id = result.eventId;
      }
    }
    const row = await childInsert(db, 'messages', values);
    await projectUpdate(db, projectId, { last_active_at: this.now() });
    return row;
  }

  async createToolUsage(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateToolUsageBody>) {
    await this.writable(db, principal, projectId);
    return childInsert(db, 'tool_usages', { id: newId('toolUsage'), project_id: projectId, ...body });
  }

  async createRequest(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateRequestBody>) {
    await this.writable(db, principal, projectId);
    if (body.user_message_id !== undefined) await this.child(db, 'messages', projectId, body.user_message_id, 'Message');
    return childInsert(db, 'user_requests', { id: newId('userRequest'), project_id: projectId, user_id: userOf(principal), started_at: this.now(), ...body });
  }

  /** Completes a request once: success or failure with its result; a second completion is 409. */
  async completeRequest(db: Executor, principal: Principal, projectId: string, requestId: string, body: Static<typeof CompleteRequestBody>) {
    await this.writable(db, principal, projectId);
    const req = await this.child(db, 'user_requests', projectId, requestId, 'Request');
    if (req.is_completed) throw errors.invalidState('The request is already completed', { request_id: requestId });
    const row = await childUpdate(db, 'user_requests', projectId, requestId, {
      is_completed: true,
      completed_at: this.now(),
      is_successful: body.is_successful,
      ...(body.result_metadata !== undefined ? { result_metadata: body.result_metadata } : {}),
      ...(body.error_message !== undefined ? { error_message: body.error_message } : {}),
    });
    if (!row) throw errors.notFound('Request', requestId);
    return row;
  }

  async createCommit(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateCommitBody>) {
    await this.writable(db, principal, projectId);
    try {
      return await childInsert(db, 'commits', { id: newId('commit'), project_id: projectId, ...body });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw errors.conflict('This commit is already recorded', { commit_sha: body.commit_sha });
      throw err;
    }
  }

  private async child<T extends ProjectChildTable>(db: Executor, table: T, projectId: string, id: string, what: string) {
    const row = await childFind(db, table, projectId, id);
    if (!row) throw errors.notFound(what, id);
    return row;
  }
}

const userOf = (p: Principal): string | null => (p.kind === 'user' ? p.userId : null);
