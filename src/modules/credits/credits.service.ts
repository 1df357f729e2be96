import type { Database, Db, Executor } from '../../db/database.js';
import { inStatementTransaction, kyselyRunner, type RunStatement } from '../../db/statements.js';
import { ApiError, errorBody, errors } from '../../http/errors.js';
import { type IdempotencyScope, KeyRecordedMeanwhile, requestHash, scopeKey } from '../../http/idempotency.js';
import type { PageRequest } from '../../http/pagination.js';
import { BatchSql } from './credits.batch-sql.js';
import type { Invalidations } from '../../lib/invalidations.js';
import { LedgerQueue } from '../../lib/ledger-queue.js';
import { accountIdOf, balanceBody, type LedgerOp, type OpResult } from './credits.js';
import { applyOps } from './credits.engine.js';
import { CreditsRepository } from './credits.repository.js';

export type Owner = { userId: string } | { workspaceId: string };

export interface CreditsConfig {
  balanceCap: number | null;
  signupBonus: number;
  /** Most operations one transaction carries (group commit). */
  maxBatch?: number;
  /** Most ledger transactions in flight at once (each on its own accounts). */
  maxParallel?: number;
}

/**
 * The ledger's entry point, shared by the HTTP routes, the SDK and other modules. Every movement
 * goes through `execute`: queued per account, applied by the pure engine inside one transaction
 * that holds the account's row lock, and written set-based together with its idempotency record.
 */
export class CreditsService {
  readonly repo: CreditsRepository;
  private readonly sql: BatchSql;
  private readonly queue: LedgerQueue<LedgerOp, OpResult>;

  private readonly db: Db;

  constructor(
    private readonly database: Database,
    private readonly config: CreditsConfig,
    private readonly now: () => Date,
    private readonly invalidations?: Invalidations,
  ) {
    this.db = database.db;
    this.repo = new CreditsRepository(database.schema);
    this.sql = new BatchSql(database.schema);
    // A key recorded meanwhile by another transaction (same key, other account): the second run
    // loads that record and replays it or answers 409.
    this.queue = new LedgerQueue((items) => this.runBatch(items), config.maxBatch ?? 256, config.maxParallel ?? 2, (err) => err instanceof KeyRecordedMeanwhile);
  }

  /** Queues one operation on an owner's account; resolves with its answer once committed. */
  execute(owner: Owner, op: LedgerOp): Promise<OpResult> {
    return this.queue.submit(accountIdOf(owner), op);
  }

  /** Capture and release name a hold, not an owner: find the hold's account first. */
  async executeOnHold(holdId: string, op: LedgerOp): Promise<OpResult> {
    const hold = await this.repo.holdFind(this.db, holdId);
    if (!hold) return errorResult(op, errors.notFound('Hold', holdId));
    return this.queue.submit(hold.accountId, op);
  }

  /**
   * Runs a batch inside a caller's transaction (the user-creation transaction grants the sign-up
   * bonus this way, so it commits with the user or not at all).
   */
  async executeIn(trx: Executor, owner: Owner, ops: LedgerOp[]): Promise<OpResult[]> {
    const accountId = accountIdOf(owner);
    return this.applyBatch(kyselyRunner(trx), ops.map((op) => ({ accountId, op })));
  }

  /** Creates the account of a new user or workspace (in the caller's transaction). */
  async openAccount(trx: Executor, owner: Owner): Promise<void> {
    await this.repo.accountInsert(trx, {
      id: accountIdOf(owner),
      userId: 'userId' in owner ? owner.userId : null,
      workspaceId: 'workspaceId' in owner ? owner.workspaceId : null,
    });
  }

  /**
   * The sign-up bonus: an operation like any other. It runs in the user-creation transaction, and a
   * unique index allows one `signup_bonus` grant per account, so it happens exactly once.
   */
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

  private async runBatch(items: { accountId: string; op: LedgerOp }[]): Promise<OpResult[]> {
    try {
      return await inStatementTransaction(this.database, (run) => this.applyBatch(run, items));
    } finally {
      // Settled: cached reads of these accounts (POST /v1/check) are out of date.
      this.invalidations?.accountsChanged([...new Set(items.map((i) => i.accountId))]);
    }
  }

  /**
   * One transaction's worth of operations, on any accounts: lock and claim, load, apply the pure
   * engine per account, write — three statements (see credits.batch-sql.ts).
   */
  private async applyBatch(run: RunStatement, items: { accountId: string; op: LedgerOp }[]): Promise<OpResult[]> {
    const results: (OpResult | undefined)[] = new Array(items.length);

    // Idempotency: duplicates inside the batch follow their first occurrence.
    const leaderOf = new Map<string, number>();
    const followers: { index: number; leader: number; same: boolean }[] = [];
    const scopes: IdempotencyScope[] = [];
    items.forEach(({ op }, i) => {
      if (!op.idem) return;
      const k = scopeKey(op.idem);
      const leader = leaderOf.get(k);
      if (leader === undefined) {
        leaderOf.set(k, i);
        scopes.push(op.idem);
      } else {
        followers.push({ index: i, leader, same: items[leader]!.op.idem!.requestHash === op.idem.requestHash });
      }
    });
    const isLeader = (op: LedgerOp, i: number) => !op.idem || leaderOf.get(scopeKey(op.idem)) === i;

    const accountIds = [...new Set(items.map((it) => it.accountId))].sort();
    let accounts = await this.sql.lock(run, accountIds);
    if (accounts.length < accountIds.length) {
      // Accounts that do not exist yet open on first use (workspaces), if their owner exists.
      const present = new Set(accounts.map((a) => a.id));
      const opened = [];
      for (const id of accountIds.filter((a) => !present.has(a))) {
        if (await this.sql.openAccount(run, id)) opened.push(id);
      }
      if (opened.length > 0) accounts = [...accounts, ...(await this.sql.lock(run, opened))];
    }
    const byId = new Map(accounts.map((a) => [a.id, a]));
    // The clock is read once the locks are held: a batch that waited for another's lock stamps its
    // entries after that one's (seq is the order of record; created_at should agree with it).
    const now = this.now();

    const leaders = items.map((it, i) => ({ ...it, index: i })).filter(({ op, index }) => isLeader(op, index));
    const candidates = leaders.filter(({ accountId }) => byId.has(accountId));
    const runAccounts = [...new Set(candidates.map((r) => r.accountId))];
    const holdIds = candidates.flatMap(({ op }) => (op.kind === 'capture' || op.kind === 'release' ? [op.holdId] : []));
    const loaded = await this.sql.load(run, {
      accountIds: runAccounts,
      holdAccountIds: runAccounts.filter(
        (id) => byId.get(id)!.held > 0 || candidates.some((r) => r.accountId === id && (r.op.kind === 'capture' || r.op.kind === 'release')),
      ),
      holdIds,
      now,
      scopes,
      refundIds: candidates.flatMap(({ op }) => (op.kind === 'refund' && op.transactionId ? [op.transactionId] : [])),
    });

    // Answers that need no engine: replays, reused keys, unknown owners.
    const done: { scope: IdempotencyScope; response: OpResult }[] = [];
    const runnable: typeof leaders = [];
    for (const leader of leaders) {
      const { op, accountId, index } = leader;
      const stored = op.idem ? loaded.replays.get(scopeKey(op.idem)) : undefined;
      if (op.idem && stored) {
        results[index] =
          stored.requestHash === op.idem.requestHash
            ? { ...stored.response, replayed: true }
            : errorResult(op, errors.idempotencyKeyReused());
      } else if (!byId.has(accountId)) {
        const what = accountId.startsWith('acc_w_') ? 'Workspace' : 'User';
        results[index] = errorResult(op, errors.notFound(what, accountId.replace(/^acc_[uw]_/, '')));
        if (op.idem) done.push({ scope: op.idem, response: results[index]! }); // 4xx answers replay too
      } else {
        runnable.push(leader);
      }
    }

    // The engine, account by account, each over its own state.
    const outs = [];
    for (const accountId of [...new Set(runnable.map((r) => r.accountId))]) {
      const mine = runnable.filter((r) => r.accountId === accountId);
      const out = applyOps(
        {
          account: byId.get(accountId)!,
          grants: loaded.grants.filter((g) => g.accountId === accountId),
          holds: loaded.holds.filter((h) => h.accountId === accountId),
          refundTargets: loaded.refundTargets.filter((t) => t.accountId === accountId),
          now,
          balanceCap: this.config.balanceCap,
        },
        mine.map((r) => r.op),
      );
      mine.forEach((r, j) => {
        const result = out.results[j]!;
        results[r.index] = result;
        if (r.op.idem && result.status < 500) done.push({ scope: r.op.idem, response: result });
      });
      outs.push(out);
    }
    // A batch of refusals changed nothing but its keys: nothing else is written.
    await this.sql.write(run, outs, done);

    for (const f of followers) {
      const leader = results[f.leader]!;
      results[f.index] = f.same ? { ...leader, replayed: true } : errorResult(items[f.index]!.op, errors.idempotencyKeyReused());
    }
    return results as OpResult[];
  }

  /**
   * Expires what is due on accounts nobody is touching (busy accounts expire lazily in their own
   * batches). Goes through the queue, so it never races live traffic. Returns accounts swept.
   */
  async sweep(limit = 500): Promise<number> {
    const due = await this.repo.dueAccounts(this.db, this.now(), limit);
    await Promise.all(due.map((accountId) => this.queue.submit(accountId, { kind: 'sweep', requestId: 'scheduler', idem: null })));
    return due.length;
  }

  async balance(db: Executor, owner: Owner) {
    const accountId = accountIdOf(owner);
    const account = await this.repo.accountFind(db, accountId);
    if (!account) {
      // Not opened yet: an owner with no money movements has a zero balance.
      await this.assertOwner(db, owner);
      return balanceBody(
        { id: accountId, userId: 'userId' in owner ? owner.userId : null, workspaceId: 'workspaceId' in owner ? owner.workspaceId : null, balance: 0, held: 0, totalCredited: 0, totalSpent: 0, lastSeq: 0 },
        [],
      );
    }
    const grants = await this.repo.grantsLive(db, accountId);
    return balanceBody(account, grants);
  }

  async transactions(db: Executor, owner: Owner, page: PageRequest, type?: string) {
    await this.assertOwner(db, owner);
    return this.repo.ledgerPage(db, accountIdOf(owner), page, type);
  }

  async holds(db: Executor, owner: Owner, page: PageRequest, status?: string) {
    await this.assertOwner(db, owner);
    return this.repo.holdsPage(db, accountIdOf(owner), page, status);
  }

  /** 404 for an unknown user or workspace (its account may not be open yet, so ask the owner). */
  private async assertOwner(db: Executor, owner: Owner): Promise<void> {
    if (await this.repo.ownerExists(db, owner)) return;
    throw 'userId' in owner ? errors.notFound('User', owner.userId) : errors.notFound('Workspace', owner.workspaceId);
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

/** The idempotency scope a money operation has, whether it came over HTTP or through the SDK. */
export function moneyScope(principal: string, key: string, path: string, body: unknown, userId: string | null = null): IdempotencyScope {
  return { principal, key, userId, method: 'POST', path, requestHash: requestHash('POST', path, body) };
}
