import { sql } from 'kysely';
import type { Db, Executor } from '../../db/database.js';
import { ApiError, errorBody, errors } from '../../http/errors.js';
import {
  idempotencyClaimMany,
  idempotencyCompleteMany,
  type IdempotencyScope,
  requestHash,
  scopeKey,
} from '../../http/idempotency.js';
import type { PageRequest } from '../../http/pagination.js';
import { newId } from '../../lib/ids.js';
import { AccountBatcher } from './credits.batcher.js';
import { accountIdOf, balanceBody, type LedgerOp, type OpResult } from './credits.js';
import { applyOps } from './credits.engine.js';
import { CreditsRepository } from './credits.repository.js';

export type Owner = { userId: string } | { workspaceId: string };

export interface CreditsConfig {
  balanceCap: number | null;
  signupBonus: number;
  /** Most operations one transaction carries (group commit). */
  maxBatch?: number;
}

/**
 * The ledger's entry point, shared by the HTTP routes, the SDK and other modules. Every movement
 * goes through `execute`: queued per account, applied by the pure engine inside one transaction
 * that holds the account's row lock, and written set-based together with its idempotency record.
 */
export class CreditsService {
  readonly repo: CreditsRepository;
  private readonly batcher: AccountBatcher<LedgerOp, OpResult>;
  private readonly idempotencyTable;

  constructor(
    private readonly db: Db,
    schema: string,
    private readonly config: CreditsConfig,
    private readonly now: () => Date,
  ) {
    this.repo = new CreditsRepository(schema);
    this.idempotencyTable = sql.table(`${schema}.idempotency_keys`);
    this.batcher = new AccountBatcher((accountId, ops) => this.runBatch(accountId, ops), config.maxBatch ?? 256);
  }

  /** Queues one operation on an owner's account; resolves with its answer once committed. */
  execute(owner: Owner, op: LedgerOp): Promise<OpResult> {
    return this.batcher.submit(accountIdOf(owner), op);
  }

  /** Capture and release name a hold, not an owner: find the hold's account first. */
  async executeOnHold(holdId: string, op: LedgerOp): Promise<OpResult> {
    const hold = await this.repo.holdFind(this.db, holdId);
    if (!hold) return notFoundResult(op, errors.notFound('Hold', holdId));
    return this.batcher.submit(hold.accountId, op);
  }

  /**
   * Runs a batch inside a caller's transaction (the user-creation transaction grants the sign-up
   * bonus this way, so it commits with the user or not at all).
   */
  async executeIn(trx: Executor, owner: Owner, ops: LedgerOp[]): Promise<OpResult[]> {
    return this.applyBatch(trx, accountIdOf(owner), ops);
  }

  /** Creates the account of a new user or workspace (in the caller's transaction). */
  async openAccount(trx: Executor, owner: Owner): Promise<void> {
    await this.repo.accountInsert(trx, {
      id: accountIdOf(owner),
      userId: 'userId' in owner ? owner.userId : null,
      workspaceId: 'workspaceId' in owner ? owner.workspaceId : null,
    });
  }

  /** The sign-up bonus: an operation like any other, keyed so it can happen once per user. */
  signupBonusOp(userId: string): LedgerOp | null {
    if (this.config.signupBonus <= 0) return null;
    return {
      kind: 'grant',
      requestId: `signup:${userId}`,
      idem: null,
      amount: this.config.signupBonus,
      reason: 'sign-up bonus',
      class: 'default',
      source: 'signup_bonus',
      expiresAt: null,
      priority: 0,
      metadata: {},
    };
  }

  private async runBatch(accountId: string, ops: LedgerOp[]): Promise<OpResult[]> {
    return this.db.transaction().execute((trx) => this.applyBatch(trx, accountId, ops));
  }

  private async applyBatch(trx: Executor, accountId: string, ops: LedgerOp[]): Promise<OpResult[]> {
    const now = this.now();
    const account = (await this.repo.accountLock(trx, accountId)) ?? (await this.openMissingAccount(trx, accountId));
    if (!account) {
      const what = accountId.startsWith('acc_w_') ? 'Workspace' : 'User';
      return ops.map((op) => notFoundResult(op, errors.notFound(what, accountId.replace(/^acc_[uw]_/, ''))));
    }

    // Idempotency: the account lock is held, so every earlier request with one of these keys has
    // committed and its record is visible. Duplicates inside the batch follow their first.
    const results: (OpResult | undefined)[] = new Array(ops.length);
    const leaderOf = new Map<string, number>();
    const followers: { index: number; leader: number; same: boolean }[] = [];
    const scopes: IdempotencyScope[] = [];
    ops.forEach((op, i) => {
      if (!op.idem) return;
      const k = scopeKey(op.idem);
      const leader = leaderOf.get(k);
      if (leader === undefined) {
        leaderOf.set(k, i);
        scopes.push(op.idem);
      } else {
        followers.push({ index: i, leader, same: ops[leader]!.idem!.requestHash === op.idem.requestHash });
      }
    });
    const claims = await idempotencyClaimMany(trx, this.idempotencyTable, scopes);
    const toRun: { op: LedgerOp; index: number }[] = [];
    ops.forEach((op, i) => {
      if (op.idem && leaderOf.get(scopeKey(op.idem)) !== i) return;
      const claim = op.idem ? claims.get(scopeKey(op.idem)) : undefined;
      if (claim?.kind === 'replay') results[i] = { ...claim.response, replayed: true } as OpResult;
      else if (claim?.kind === 'mismatch') results[i] = errorResult(op, errors.idempotencyKeyReused());
      else toRun.push({ op, index: i });
    });

    if (toRun.length > 0) {
      const runOps = toRun.map((r) => r.op);
      const holdIds = runOps.flatMap((op) => (op.kind === 'capture' || op.kind === 'release' ? [op.holdId] : []));
      const refundIds = runOps.flatMap((op) => (op.kind === 'refund' && op.transactionId ? [op.transactionId] : []));
      // With nothing held and no hold named, there is no hold to load (the common debit path).
      const [grants, holds, refundTargets] = await Promise.all([
        this.repo.grantsLive(trx, accountId),
        account.held > 0 || holdIds.length > 0 ? this.repo.holdsFor(trx, accountId, holdIds, now) : [],
        this.repo.refundTargets(trx, accountId, refundIds),
      ]);
      const known = new Set(grants.map((g) => g.id));
      const missing = [...new Set(refundTargets.flatMap((t) => t.allocations.map((a) => a.grantId)))].filter((id) => !known.has(id));
      grants.push(...(await this.repo.grantsByIds(trx, missing)));

      const out = applyOps({ account, grants, holds, refundTargets, now, balanceCap: this.config.balanceCap }, runOps);
      // A batch of refusals changed nothing: write nothing (not even the account's updated_at).
      if (out.entries.length > 0 || out.grants.length > 0 || out.holds.length > 0) await this.repo.writeBatch(trx, out);
      toRun.forEach((r, j) => (results[r.index] = out.results[j]));
      const done = toRun
        .map((r, j) => ({ scope: r.op.idem, response: out.results[j]! }))
        .filter((d): d is { scope: IdempotencyScope; response: OpResult } => d.scope !== null && d.response.status < 500);
      await idempotencyCompleteMany(trx, this.idempotencyTable, done);
    }

    for (const f of followers) {
      const leader = results[f.leader]!;
      results[f.index] = f.same ? { ...leader, replayed: true } as OpResult : errorResult(ops[f.index]!, errors.idempotencyKeyReused());
    }
    return results as OpResult[];
  }

  /**
   * Workspace accounts open on first use (a workspace made by an end user cannot write money
   * tables); so does a user account missing for any reason. Unknown owners stay unknown.
   */
  private async openMissingAccount(trx: Executor, accountId: string) {
    const owner: Owner | null = accountId.startsWith('acc_u_')
      ? { userId: accountId.slice(6) }
      : accountId.startsWith('acc_w_')
        ? { workspaceId: accountId.slice(6) }
        : null;
    if (!owner) return undefined;
    const exists =
      'userId' in owner
        ? await trx.selectFrom('users').select('id').where('id', '=', owner.userId).executeTakeFirst()
        : await trx.selectFrom('workspaces').select('id').where('id', '=', owner.workspaceId).executeTakeFirst();
    if (!exists) return undefined;
    await this.openAccount(trx, owner);
    return this.repo.accountLock(trx, accountId);
  }

  /**
   * Expires what is due on accounts nobody is touching (busy accounts expire lazily in their own
   * batches). Goes through the batcher, so it never races live traffic. Returns accounts swept.
   */
  async sweep(limit = 500): Promise<number> {
    const now = this.now();
    const due = await sql<{ account_id: string }>`
      select account_id from ${this.repo.table('credit_holds')} where status = 'held' and expires_at <= ${now}
      union
      select account_id from ${this.repo.table('credit_grants')} where remaining > 0 and expires_at <= ${now} and expired_at is null
      limit ${limit}`.execute(this.db);
    await Promise.all(
      due.rows.map((r) => this.batcher.submit(r.account_id, { kind: 'sweep', requestId: 'scheduler', idem: null })),
    );
    return due.rows.length;
  }

  async balance(db: Executor, owner: Owner) {
    const accountId = accountIdOf(owner);
    const account = await this.repo.accountFind(db, accountId);
    if (!account) {
      // Not opened yet: an owner with no money movements has a zero balance.
      const exists =
        'userId' in owner
          ? await db.selectFrom('users').select('id').where('id', '=', owner.userId).executeTakeFirst()
          : await db.selectFrom('workspaces').select('id').where('id', '=', owner.workspaceId).executeTakeFirst();
      if (!exists) throw 'userId' in owner ? errors.notFound('User', owner.userId) : errors.notFound('Workspace', owner.workspaceId);
      return balanceBody(
        { id: accountId, userId: 'userId' in owner ? owner.userId : null, workspaceId: 'workspaceId' in owner ? owner.workspaceId : null, balance: 0, held: 0, totalCredited: 0, totalSpent: 0 },
        [],
      );
    }
    const grants = await this.repo.grantsLive(db, accountId);
    return balanceBody(account, grants);
  }

  async transactions(db: Executor, owner: Owner, page: PageRequest, type?: string) {
    await this.balance(db, owner); // 404 for unknown owners
    return this.repo.ledgerPage(db, accountIdOf(owner), page, type);
  }

  async holds(db: Executor, owner: Owner, page: PageRequest, status?: string) {
    await this.balance(db, owner); // 404 for unknown owners
    return this.repo.holdsPage(db, accountIdOf(owner), page, status);
  }

  async hold(db: Executor, holdId: string) {
    const hold = await this.repo.holdFind(db, holdId);
    if (!hold) throw errors.notFound('Hold', holdId);
    return hold;
  }
}

function errorResult(op: LedgerOp, err: ApiError): OpResult {
  return { status: err.status, body: errorBody(err, op.requestId) };
}

const notFoundResult = errorResult;

/** The idempotency scope a money operation has, whether it came over HTTP or through the SDK. */
export function moneyScope(principal: string, key: string, path: string, body: unknown, userId: string | null = null): IdempotencyScope {
  return { principal, key, userId, method: 'POST', path, requestHash: requestHash('POST', path, body) };
}

export { newId };
