import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import { randomToken } from '../../lib/random.js';
import { userFindById } from '../users/users.repository.js';
import {
  type AddMemberBody,
  type CreateWorkspaceBody,
  isManager,
  type MemberRow,
  slugify,
  type UpdateWorkspaceBody,
  type WorkspaceRole,
  type WorkspaceRow,
} from './workspaces.js';
import {
  memberDelete,
  memberInsert,
  memberList,
  memberRole,
  memberUpdateRole,
  workspaceDelete,
  workspaceFindById,
  workspaceHasLedger,
  workspaceInsert,
  workspaceList,
  workspaceSlugTaken,
  workspaceUpdate,
} from './workspaces.repository.js';

const slugConflict = () => errors.conflict('A workspace with this slug already exists', { field: 'slug' });

/**
 * The slug pre-check only sees workspaces the caller may see (RLS); the unique index sees them all.
 * Either way the answer is the same 409.
 */
async function slugUnique<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    const e = err as { code?: string; constraint?: string };
    if (e.code === '23505' && e.constraint === 'workspaces_slug_key') throw slugConflict();
    throw err;
  }
}

/**
 * Workspaces and their rosters. Rules: the owner is a member with role `owner`, set at creation
 * and never changed through the roster; owners and admins manage the workspace; only the owner
 * appoints admins or deletes the workspace; anyone may leave (except the owner).
 */
export class WorkspacesService {
  async create(db: Executor, principal: Principal, input: Static<typeof CreateWorkspaceBody>): Promise<WorkspaceRow> {
    let ownerId: string;
    if (principal.kind === 'service') {
      if (!input.owner_id) throw errors.invalidRequest('owner_id is required when the service creates a workspace', { field: 'owner_id' });
      ownerId = input.owner_id;
    } else if (principal.kind === 'user') {
      if (input.owner_id !== undefined && input.owner_id !== principal.userId) {
        throw errors.forbidden('You can only create workspaces you own');
      }
      ownerId = principal.userId;
    } else {
      throw errors.unauthenticated();
    }
    if (!(await userFindById(db, ownerId))) throw errors.notFound('User', ownerId);
    const slug = input.slug ?? slugify(input.name, randomToken(6).toLowerCase());
    if (await workspaceSlugTaken(db, slug)) throw slugConflict();
    const workspace = await slugUnique(() =>
      workspaceInsert(db, {
        id: newId('workspace'),
        name: input.name,
        slug,
        description: input.description ?? null,
        owner_id: ownerId,
        settings: input.settings ?? {},
      }),
    );
    await memberInsert(db, { workspace_id: workspace.id, user_id: ownerId, role: 'owner', invited_by: null });
    return workspace;
  }

  async get(db: Executor, principal: Principal, id: string): Promise<WorkspaceRow> {
    await this.roleOf(db, principal, id);
    const ws = await workspaceFindById(db, id);
    if (!ws) throw errors.notFound('Workspace', id);
    return ws;
  }

  /**
   * For other modules' workspace-scoped resources (outgoing webhook endpoints): the caller manages
   * the workspace (owner or admin; the service always). 404 for non-members, 403 for other members.
   */
  async assertManager(db: Executor, principal: Principal, id: string): Promise<void> {
    if (!isManager(await this.roleOf(db, principal, id))) throw errors.forbidden('Only owners and admins can manage this workspace’s webhook endpoints');
  }

  async list(db: Executor, principal: Principal, page: PageRequest, userId: string | undefined) {
    if (principal.kind === 'user') {
      if (userId !== undefined && userId !== principal.userId) throw errors.forbidden('You can only list your own workspaces');
      return workspaceList(db, page, principal.userId);
    }
    return workspaceList(db, page, userId ?? null);
  }

  async update(db: Executor, principal: Principal, id: string, patch: Static<typeof UpdateWorkspaceBody>): Promise<WorkspaceRow> {
    const role = await this.roleOf(db, principal, id);
    if (!isManager(role)) throw errors.forbidden('Only owners and admins can change a workspace');
    // Deactivating stops every member's spending (docs/ledger.md): the owner's decision, not an admin's.
    if (patch.is_active !== undefined && role !== 'owner') throw errors.forbidden('Only the owner can deactivate or reactivate a workspace');
    if (patch.slug !== undefined && (await workspaceSlugTaken(db, patch.slug, id))) throw slugConflict();
    const ws = await slugUnique(() => workspaceUpdate(db, id, patch));
    if (!ws) throw errors.notFound('Workspace', id);
    return ws;
  }

  async remove(db: Executor, principal: Principal, id: string): Promise<void> {
    const role = await this.roleOf(db, principal, id);
    if (role !== 'owner') throw errors.forbidden('Only the owner can delete a workspace');
    // The ledger is append-only: a pool with money history is kept (deactivate it instead).
    if (await workspaceHasLedger(db, id)) {
      throw errors.conflict('This workspace has credit history and cannot be deleted; set is_active to false instead', {
        workspace_id: id,
      });
    }
    if (!(await workspaceDelete(db, id))) throw errors.notFound('Workspace', id);
  }

  async members(db: Executor, principal: Principal, id: string, page: PageRequest) {
    await this.roleOf(db, principal, id);
    return memberList(db, id, page);
  }

  async addMember(db: Executor, principal: Principal, id: string, input: Static<typeof AddMemberBody>): Promise<MemberRow> {
    const role = await this.roleOf(db, principal, id);
    this.assertMayAssign(role, input.role);
    if ((await memberRole(db, id, input.user_id)) !== null) {
      throw errors.conflict('This user is already a member', { user_id: input.user_id });
    }
    try {
      return await memberInsert(db, {
        workspace_id: id,
        user_id: input.user_id,
        role: input.role,
        invited_by: principal.kind === 'user' ? principal.userId : null,
      });
    } catch (err) {
      // End users cannot see strangers' rows (RLS), so the foreign key is the existence check.
      if ((err as { code?: string }).code === '23503') throw errors.notFound('User', input.user_id);
      throw err;
    }
  }

  async changeRole(db: Executor, principal: Principal, id: string, userId: string, newRole: WorkspaceRole): Promise<MemberRow> {
    const role = await this.roleOf(db, principal, id);
    const current = await memberRole(db, id, userId);
    if (current === null) throw errors.notFound('Member', userId);
    if (current === 'owner') throw errors.invalidState('The owner’s role cannot be changed');
    this.assertMayAssign(role, newRole);
    if (current === 'admin' && role !== 'owner') throw errors.forbidden('Only the owner can change an admin’s role');
    const row = await memberUpdateRole(db, id, userId, newRole);
    if (!row) throw errors.notFound('Member', userId);
    return row;
  }

  async removeMember(db: Executor, principal: Principal, id: string, userId: string): Promise<void> {
    const role = await this.roleOf(db, principal, id);
    const current = await memberRole(db, id, userId);
    if (current === null) throw errors.notFound('Member', userId);
    if (current === 'owner') throw errors.invalidState('The owner cannot leave or be removed; delete the workspace instead');
    const self = principal.kind === 'user' && principal.userId === userId;
    if (!self) {
      if (!isManager(role)) throw errors.forbidden('Only owners and admins can remove members');
      if (current === 'admin' && role !== 'owner') throw errors.forbidden('Only the owner can remove an admin');
    }
    if (!(await memberDelete(db, id, userId))) throw errors.notFound('Member', userId);
  }

  /**
   * The caller's role in the workspace: 'owner' for the service (it acts for the owner), the
   * member's role for a user. Non-members get 404, so workspace ids do not leak.
   */
  private async roleOf(db: Executor, principal: Principal, id: string): Promise<WorkspaceRole> {
    if (principal.kind === 'service') {
      if (!(await workspaceFindById(db, id))) throw errors.notFound('Workspace', id);
      return 'owner';
    }
    if (principal.kind !== 'user') throw errors.unauthenticated();
    const role = await memberRole(db, id, principal.userId);
    if (role === null) throw errors.notFound('Workspace', id);
    return role;
  }

  private assertMayAssign(callerRole: WorkspaceRole, role: WorkspaceRole): void {
    if (!isManager(callerRole)) throw errors.forbidden('Only owners and admins can manage members');
    if (role === 'admin' && callerRole !== 'owner') throw errors.forbidden('Only the owner can appoint admins');
  }
}
