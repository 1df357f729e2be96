import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { Principal } from '../../core/principal.js';
import type { Ledger } from '../credits/credits.port.js';
import type { WorkspaceRole } from './workspaces.js';
import { memberRole, workspaceFindById } from './workspaces.repository.js';
import { type SetSpendCapBody, spendCapToApi } from './workspaces.spend-caps.js';
import { spendCapDelete, spendCapFind, spendCapUpsert } from './workspaces.spend-caps.repository.js';

/**
 * Per-member spend caps on a workspace pool (docs/ledger.md, "Workspace pools"). Who sets one:
 * the service; the owner, on anyone but themself; an admin, on members and viewers only. Nobody
 * sets, lifts or removes their own cap. Row-level security repeats these rules (migration 0022).
 * The cap is kept per (workspace, user), not on the membership: leaving and re-joining keeps it.
 */
export class SpendCapsService {
  constructor(private readonly ledger: Pick<Ledger, 'memberSpend'>) {}

  async get(db: Executor, principal: Principal, workspaceId: string, userId: string) {
    const role = await this.callerRole(db, principal, workspaceId);
    const self = principal.kind === 'user' && principal.userId === userId;
    if (!self && role !== 'owner' && role !== 'admin') throw errors.forbidden("Only owners and admins can read another member's spend cap");
    const row = await spendCapFind(db, workspaceId, userId);
    if (!row) throw errors.notFound('Spend cap', userId);
    return spendCapToApi(row, await this.ledger.memberSpend(db, workspaceId, userId));
  }

  async set(db: Executor, principal: Principal, workspaceId: string, userId: string, input: Static<typeof SetSpendCapBody>) {
    await this.assertMayManage(db, principal, workspaceId, userId);
    const row = await spendCapUpsert(db, {
      workspace_id: workspaceId,
      user_id: userId,
      amount: input.amount,
      period: input.period,
      set_by: principal.kind === 'user' ? principal.userId : 'service',
    });
    return spendCapToApi(row, await this.ledger.memberSpend(db, workspaceId, userId));
  }

  async remove(db: Executor, principal: Principal, workspaceId: string, userId: string): Promise<void> {
    await this.assertMayManage(db, principal, workspaceId, userId, false);
    if (!(await spendCapDelete(db, workspaceId, userId))) throw errors.notFound('Spend cap', userId);
  }

  /** The caller's role ('owner' for the service); a non-member gets 404, as for no such workspace. */
  private async callerRole(db: Executor, principal: Principal, workspaceId: string): Promise<WorkspaceRole> {
    if (principal.kind === 'service') {
      if (!(await workspaceFindById(db, workspaceId))) throw errors.notFound('Workspace', workspaceId);
      return 'owner';
    }
    if (principal.kind !== 'user') throw errors.unauthenticated();
    const role = await memberRole(db, workspaceId, principal.userId);
    if (role === null) throw errors.notFound('Workspace', workspaceId);
    return role;
  }

  /**
   * The service; the owner on anyone but themself; an admin on members and viewers. A cap is set
   * only on a current member (it then survives their leaving); one may be removed after they left.
   */
  private async assertMayManage(db: Executor, principal: Principal, workspaceId: string, userId: string, mustBeMember = true): Promise<void> {
    const role = await this.callerRole(db, principal, workspaceId);
    if (principal.kind === 'user' && principal.userId === userId) throw errors.forbidden('Nobody sets or removes their own spend cap');
    if (role !== 'owner' && role !== 'admin') throw errors.forbidden('Only owners and admins can manage spend caps');
    const target = await memberRole(db, workspaceId, userId);
    if (target === null && mustBeMember) throw errors.notFound('Member', userId);
    if (principal.kind === 'user' && role === 'admin' && (target === 'owner' || target === 'admin')) {
      throw errors.forbidden("Only the owner can manage an admin's spend cap");
    }
    if (principal.kind === 'user' && target === 'owner') throw errors.forbidden("Only the service can cap the owner's spending");
  }
}
