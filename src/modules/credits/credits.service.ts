import type { Database, Db, Executor } from '../../db/database.js';
import { inStatementTransaction, kyselyRunner, type RunStatement } from '../../db/statements.js';
import { type DomainError, errors } from '../../core/errors.js';
import { type EventSink, NO_EVENTS } from '../../core/events.js';
import { type LedgerAudit, NO_LEDGER_AUDIT } from '../../core/audit.js';
import { auditedMovements } from './credits.audit.js';
import { type AnswerCodec, KeyRecordedMeanwhile, refused, scopeKey } from '../idempotency/idempotency.js';
import { BatchKeys, type Recorded, type Replay, replayOf } from '../idempotency/idempotency.batch.js';
import type { PageRequest } from '../../core/paging.js';
import { BatchSql, newAccountVersion } from './credits.batch-sql.js';
import type { Invalidations } from '../../lib/invalidations.js';
import { groupBy } from '../../lib/group-by.js';
import { must } from '../../lib/must.js';
import { LedgerQueue } from '../../lib/ledger-queue.js';
import { queueLimits } from '../../db/faults.js';
import {
  type AccountState,
  accountIdOf,
  balanceBody,
  type ConsumeTier,
  type GrantState,
  type HoldState,
  type LedgerOp,
  type OpResult,
  type Owner,
  type RefundTarget,
  type SpenderState,
} from './credits.js';
import { memberOf } from './credits.engine.members.js';
import { type ConsumeResult, type EngineOutput, LedgerSession } from './credits.engine.js';
import { type AccountRow, accountFromRow, CreditsRepository, type GrantRow, grantFromRow, type HoldRow, holdFromRow } from './credits.repository.js';
import type { ConsumingAccount, Ledger, LedgerSnapshot, MemberSpend, Payer } from './credits.port.js';

export type { Owner };

export interface CreditsConfig {
  balanceCap: number | null;
  signupBonus: number;
  /** Most operations one transaction carries (group commit). */
  maxBatch?: number;
  /** Most ledger transactions in flight at once (each on its own accounts). */
  maxParallel?: number;
  /** Most operations waiting in this process before new ones get 503 (default 10,000). */
  maxBacklog?: number;
  /** The low-balance threshold of accounts that set none (`credits.low`; 0 or absent: none). */
  lowThreshold?: number;
}

/**
 * The ledger's entry point, shared by the HTTP routes, the SDK and other modules. Every movement
 * goes through `execute`: queued per account, applied by the pure engine inside one transaction
 * that holds the account's row lock, and written set-based together with its idempotency record.
 */
/** A ledger transaction's size (operations), duration and outcome. */
export type BatchObserver = (size: number, seconds: number, ok: boolean) => void;

export class CreditsService implements Ledger {
  readonly repo: CreditsRepository;
  private readonly sql: BatchSql;
  private readonly queue: LedgerQueue<LedgerOp, OpResult>;
  /** Holds this process made → their accounts (an immutable fact; bounded, oldest dropped). */
  private readonly holdAccounts = new Map<string, string>();
  /** Per account, the state its last batch in this process left (chained batches). */
  private readonly carries = new Map<string, Carry>();

  private readonly db: Db;

  constructor(
    private readonly database: Database,
    private readonly config: CreditsConfig,
    private readonly now: () => Date,
    /** How outcomes are recorded under their keys (the composition root passes src/http/answers.ts). */
    readonly answers: AnswerCodec,
    private readonly invalidations?: Invalidations,
    /** Where the ledger's events go (credits.granted, credits.low, credits.depleted, hold.expired). */
    private readonly events: EventSink = NO_EVENTS,
    /** Where grants, adjustments, refunds and clawbacks are named for the audit log (docs/audit.md). */
    private readonly audit: LedgerAudit = NO_LEDGER_AUDIT,
  ) {
    this.db = database.db;
    this.repo = new CreditsRepository(database.schema);
    this.sql = new BatchSql(database.schema, answers);
    // A key recorded meanwhile by another transaction (same key, other account): the second run
    // loads that record and replays it or answers 409.
    this.queue = new LedgerQueue(
      (items, handOff) => this.runBatch(items, handOff),
      config.maxBatch ?? 256,
      config.maxParallel ?? 2,
      (err) => err instanceof KeyRecordedMeanwhile,
      { ...queueLimits(config.maxBacklog), observe: (size, seconds, ok) => this.batchObserver?.(size, seconds, ok) },
    );
  }

  private batchObserver: BatchObserver | null = null;

  /** Told every ledger transaction's size and duration (the composition root wires GET /metrics here). */
  observeBatches(observer: BatchObserver): void {
    this.batchObserver = observer;
  }

  /** Money operations waiting in this process for a transaction (GET /ready). */
  get waiting(): number {
    return this.queue.waitingCount;
  }

  /** Queues one operation on an owner's account; resolves with its answer once committed. */
  execute(owner: Owner, op: LedgerOp): Promise<OpResult> {
    return this.queue.submit(accountIdOf(owner), op);
  }

  /**
   * Capture and release name a hold, not an owner: find the hold's account first (a hold never
   * changes account, so the holds this process made are remembered and need no lookup).
   */
  /** `expectedAccount`: the account the caller says the hold is on; any other → 404, nothing changed. */
  async executeOnHold(holdId: string, op: LedgerOp, expectedAccount: string | null = null): Promise<OpResult> {
    let accountId = this.holdAccounts.get(holdId);
    if (accountId === undefined) {
      const hold = await this.repo.holdFind(this.db, holdId);
      if (!hold) return errorResult(op, errors.notFound('Hold', holdId));
      accountId = hold.accountId;
    }
    if (expectedAccount !== null && expectedAccount !== accountId) return errorResult(op, errors.notFound('Hold', holdId));
    return this.queue.submit(accountId, op);
  }

  /**
   * Runs a batch inside a caller's transaction (the user-creation transaction grants the sign-up
   * bonus this way, so it commits with the user or not at all).
   */
  async executeIn(trx: Executor, owner: Owner, ops: LedgerOp[]): Promise<OpResult[]> {
    const accountId = accountIdOf(owner);
    return this.applyBatch(kyselyRunner(trx), ops.map((op) => ({ accountId, op })), null);
  }

  async consumeIn<T>(
    run: RunStatement,
    payers: readonly Payer[],
    work: (accounts: ReadonlyMap<string, ConsumingAccount>, now: Date) => T | Promise<T>,
  ): Promise<T> {
    const accountIds = [...new Set(payers.map((p) => accountIdOf(p.owner)))].sort();
    let accounts = await this.sql.lock(run, accountIds);
    const opened: string[] = [];
    if (accounts.length < accountIds.length) {
      // A pool opens on first use, as in every batch (a user's account opens with the user).
      const present = new Set(accounts.map((a) => a.id));
      for (const id of accountIds.filter((a) => a.startsWith('acc_w_') && !present.has(a))) {
        if (await this.sql.openAccount(run, id)) opened.push(id);
      }
      if (opened.length > 0) accounts = [...accounts, ...(await this.sql.lock(run, opened))].sort((a, b) => (a.id < b.id ? -1 : 1));
    }
    const now = this.now(); // after the locks, as in every batch
    const holdIds = payers.flatMap((p) => p.holdIds ?? []);
    const loaded = await this.sql.load(run, {
      accountIds: accounts.map((a) => a.id),
      holdAccountIds: accounts.filter((a) => a.held > 0).map((a) => a.id),
      holdIds,
      now,
      scopes: [],
      refundIds: [],
    });
    const pairs = payers.flatMap((p) => (p.memberId ? [{ accountId: accountIdOf(p.owner), memberId: p.memberId }] : []));
    const spenders = groupBy(await this.sql.spenders(run, dedupePairs(pairs), now), (s) => s.accountId);
    const grants = groupBy(loaded.grants, (g) => g.accountId);
    const holds = groupBy(loaded.holds, (h) => h.accountId);
    const sessions: LedgerSession[] = [];
    const byAccount = new Map<string, ConsumingAccount>();
    for (const account of accounts) {
      const session = consumptionSession(
        { account, grants: grants.get(account.id) ?? [], holds: holds.get(account.id) ?? [] },
        now,
        spenders.get(account.id) ?? [],
        this.config.lowThreshold,
      );
      sessions.push(session);
      byAccount.set(account.id, consumingAccount(session));
    }
    const result = await work(byAccount, now);
    const outs = sessions.map((s) => s.output([]));
    await this.sql.dropUnused(run, opened.filter((id) => !outs.some((o) => o.account.id === id && touches(o))));
    await this.sql.write(run, outs, []);
    await this.events.record(run, outs.flatMap((o) => o.events));
    return result;
  }

  readonly snapshots = {
    columns: (accountParam: string, dueByParam: string): string => this.sql.snapshotColumns(accountParam, dueByParam),
    snapshotOf: (row: { account: unknown; grants: unknown; holds: unknown }): LedgerSnapshot | null => {
      if (!row.account) return null;
      // The json columns of `columns` above: whole rows (row_to_json, json_agg), or null when none.
      const rows = <R>(v: unknown) => (Array.isArray(v) ? (v as R[]) : []);
      return { account: accountFromRow(row.account as AccountRow), grants: rows<GrantRow>(row.grants).map(grantFromRow), holds: rows<HoldRow>(row.holds).map(holdFromRow) };
    },
  };

  quote(snapshot: LedgerSnapshot, now: Date): ConsumingAccount {
    return consumingAccount(consumptionSession(snapshot, now, [], this.config.lowThreshold));
  }

  async endGrantsAt(trx: Executor, owner: Owner, grantIds: readonly string[], at: Date): Promise<void> {
    if (grantIds.length === 0) return;
    await this.repo.grantsEndAt(trx, grantIds, at);
    // A chained batch may carry this account's state from before this write: a new version makes it reload.
    await this.repo.accountSetVersion(trx, accountIdOf(owner), newAccountVersion());
  }

  refundedOf(trx: Executor, owner: Owner, transactionIds: readonly string[]): Promise<number> {
    return this.repo.refundedOf(trx, accountIdOf(owner), transactionIds);
  }

  async grantsUsed(trx: Executor, owner: Owner, grantIds: readonly string[]): Promise<{ used: number; held: number; liveRollovers: string[] }> {
    const grants = await this.repo.grantsWithRollovers(trx, accountIdOf(owner), grantIds);
    return {
      used: grants.reduce((sum, g) => sum + g.amount - g.remaining - g.expired, 0),
      held: grants.reduce((sum, g) => sum + Math.max(g.remaining, 0), 0),
      liveRollovers: grants.filter((g) => g.source === 'rollover' && g.remaining > 0).map((g) => g.id),
    };
  }

  async memberSpend(db: Executor, workspaceId: string, memberId: string): Promise<MemberSpend> {
    const now = this.now();
    const [s] = await this.sql.spenders(kyselyRunner(db), [{ accountId: accountIdOf({ workspaceId }), memberId }], now, true);
    const period = s?.period ?? null;
    const start = period === 'month' ? new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)) : null;
    const end = period === 'month' ? new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)) : null;
    return { cap: s?.cap ?? null, period, spent: s?.spent ?? 0, held: s?.held ?? 0, periodStart: start, periodEnd: end };
  }

  /** Creates the account of a new user or workspace (in the caller's transaction). */
  async openAccount(trx: Executor, owner: Owner): Promise<void> {
    await this.openAccounts(trx, [owner]);
  }

  async openAccounts(trx: Executor, owners: readonly Owner[]): Promise<void> {
    await this.repo.accountsInsert(
      trx,
      owners.map((owner) => ({
        id: accountIdOf(owner),
        userId: 'userId' in owner ? owner.userId : null,
        workspaceId: 'workspaceId' in owner ? owner.workspaceId : null,
      })),
    );
  }

  async executeManyIn(trx: Executor, items: readonly { owner: Owner; op: LedgerOp }[]): Promise<OpResult[]> {
    if (items.length === 0) return [];
    return this.applyBatch(kyselyRunner(trx), items.map(({ owner, op }) => ({ accountId: accountIdOf(owner), op })), null);
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

  private async runBatch(items: { accountId: string; op: LedgerOp }[], handOff: () => void): Promise<OpResult[]> {
    try {
      // Chaining needs a second connection to wait on the lock: PostgreSQL only (PGlite has one).
      return await inStatementTransaction(this.database, (run) => this.applyBatch(run, items, this.database.pool ? handOff : null));
    } finally {
      // Settled: cached reads of these accounts (POST /v1/check) are out of date.
      this.invalidations?.accountsChanged([...new Set(items.map((i) => i.accountId))]);
    }
  }

  /**
   * One transaction's worth of operations, on any accounts: lock and claim, load, apply the pure
   * engine per account, write — three statements (see credits.batch-sql.ts).
   *
   * Chained (docs/ledger.md): an account whose previous batch in this process handed on the state
   * it was writing starts from that state. Its operations are applied *before* the row lock is
   * granted — while the previous batch still writes and commits — and kept only if, under the
   * lock, the account's version is the one that state ends at (nobody else wrote it, and that
   * batch committed); otherwise the account is loaded and applied again, as if nothing was carried.
   */
  private async applyBatch(run: RunStatement, items: { accountId: string; op: LedgerOp }[], handOff: (() => void) | null): Promise<OpResult[]> {
    const results: (OpResult | undefined)[] = new Array(items.length);

    // Idempotency: duplicates inside the batch follow their first occurrence.
    const keys = new BatchKeys(items.map(({ op }) => op.idem));
    const scopes = keys.scopes;
    const leaders = items.map((it, i) => ({ ...it, index: i })).filter(({ op, index }) => keys.leads(index, op.idem));
    const byAccount = groupBy(leaders, (l) => l.accountId);
    const accountIds = [...byAccount.keys()].sort();
    const done: Recorded[] = [];

    // Chained: when every account can start from a carried state, apply before the locks (the
    // answers are provisional until checked). A batch only partly carried is loaded whole: one load
    // costs what the replays lookup it would replace costs.
    const early = new Map<string, Applied>();
    const carried = handOff ? this.usableCarries(byAccount, this.now()) : null;
    if (carried) {
      const replays = await this.sql.replays(run, scopes);
      for (const [accountId, carry] of carried) {
        early.set(accountId, this.applyAccount(must(byAccount.get(accountId), 'a carried account is in the batch'), replays, { ...carry, refundTargets: [] }, carried.now, carry.holdsKnownUntil));
      }
    }

    let accounts = await this.sql.lock(run, accountIds);
    const opened: string[] = [];
    if (accounts.length < accountIds.length) {
      // Accounts that do not exist yet open on first use (workspaces), if their owner exists.
      const present = new Set(accounts.map((a) => a.id));
      for (const id of accountIds.filter((a) => !present.has(a))) {
        if (await this.sql.openAccount(run, id)) opened.push(id);
      }
      if (opened.length > 0) accounts = [...accounts, ...(await this.sql.lock(run, opened))];
    }
    const byId = new Map(accounts.map((a) => [a.id, a]));
    // The clock is read once the locks are held: a batch that waited for another's lock stamps its
    // entries after that one's (seq is the order of record; created_at should agree with it).
    const now = this.now();

    // A carried state still holds if the account is at the version it ends at.
    const applied = new Map<string, Applied>();
    for (const [accountId, a] of early) {
      if (byId.get(accountId)?.version === must(carried?.get(accountId), 'an account applied early was carried').account.version) applied.set(accountId, a);
    }
    const toLoad = accountIds.filter((id) => byId.has(id) && !applied.has(id));
    // Owners that do not exist: their keys may still hold a stored answer (a 404 replays too).
    const unknown = accountIds.filter((id) => !byId.has(id));
    let replays = new Map<string, Replay>();
    if (toLoad.length > 0 || unknown.length > 0) {
      const mine = toLoad.flatMap((id) => must(byAccount.get(id), 'a batch account has operations'));
      const unknownOps = unknown.flatMap((id) => must(byAccount.get(id), 'a batch account has operations'));
      const holdIds = mine.flatMap(({ op }) => (op.kind === 'capture' || op.kind === 'release' ? [op.holdId] : []));
      const loaded = await this.sql.load(run, {
        accountIds: toLoad,
        holdAccountIds: toLoad.filter((id) => must(byId.get(id), 'a loaded account is locked').held > 0 || must(byAccount.get(id), 'a batch account has operations').some(({ op }) => op.kind === 'capture' || op.kind === 'release')),
        holdIds,
        now,
        scopes: [...mine, ...unknownOps].flatMap(({ op }) => (op.idem ? [op.idem] : [])),
        refundIds: mine.flatMap(({ op }) => (op.kind === 'refund' && op.transactionId ? [op.transactionId] : [])),
      });
      replays = loaded.replays;
      // Pool members spending in this batch: their role, cap and spend, read under the locks.
      const spenders = groupBy(
        await this.sql.spenders(run, spenderPairs(mine.map(({ accountId, op }) => ({ accountId, op }))), now),
        (s) => s.accountId,
      );
      const grants = groupBy(loaded.grants, (g) => g.accountId);
      const holds = groupBy(loaded.holds, (h) => h.accountId);
      const targets = groupBy(loaded.refundTargets, (t) => t.accountId);
      for (const accountId of toLoad) {
        const state = {
          account: must(byId.get(accountId), 'a loaded account is locked'),
          grants: grants.get(accountId) ?? [],
          holds: holds.get(accountId) ?? [],
          refundTargets: targets.get(accountId) ?? [],
          spenders: spenders.get(accountId) ?? [],
        };
        applied.set(accountId, this.applyAccount(must(byAccount.get(accountId), 'a batch account has operations'), loaded.replays, state, now, loaded.nextHoldDue.get(accountId) ?? Infinity));
      }
    }

    const outs: EngineOutput[] = [];
    for (const accountId of accountIds) {
      const a = applied.get(accountId);
      if (!a) {
        // No such owner: a stored answer replays; otherwise 404, recorded under its key like any 4xx.
        for (const { op, index } of must(byAccount.get(accountId), 'a batch account has operations')) {
          const replayed = replayOf(op.idem, replays, op.requestId);
          if (replayed) {
            results[index] = replayed;
            continue;
          }
          const what = accountId.startsWith('acc_w_') ? 'Workspace' : 'User';
          const result = errorResult(op, errors.notFound(what, accountId.replace(/^acc_[uw]_/, '')));
          results[index] = result;
          if (op.idem) done.push({ scope: op.idem, outcome: result });
        }
        continue;
      }
      a.answers.forEach(({ index, result, record }) => {
        results[index] = result;
        const { op } = must(items[index], 'an answer belongs to an item of its batch');
        if (op.kind === 'hold' && result.ok && result.created) this.rememberHold((result.value as { id: string }).id, accountId);
        if (record) done.push({ scope: must(op.idem, 'a recorded answer has an idempotency scope'), outcome: result });
      });
      if (a.session) outs.push(a.session.output([]));
    }
    // A batch of refusals changed nothing but its keys: nothing else is written.
    // A pool opened for a batch that only refused (a stranger's spend) is not left behind: a refusal changes nothing.
    await this.sql.dropUnused(run, opened.filter((id) => !outs.some((o) => o.account.id === id && touches(o))));
    const write = this.sql.prepareWrite(outs, done);
    if (handOff) {
      // The versions moved on with prepareWrite: what we hand on is what this commit leaves. The
      // batch's keys are one set shared by all its accounts (a key may come back on any of them).
      const batchKeys = keys.keys();
      for (const [accountId, a] of applied) {
        if (a.session) this.remember(accountId, a, batchKeys);
      }
      handOff();
    }
    await this.sql.runWrite(run, write);
    // The batch's events, in its transaction: one statement for all of them (none: no round trip).
    await this.events.record(run, outs.flatMap((o) => o.events));
    // Grants, adjustments, refunds and clawbacks named in the audit log, in this transaction (a
    // batch of debits has none: no statement, no cost on the hot path).
    await this.audit.record(run, auditedMovements(items, results));

    keys.answerFollowers(results, (index) => must(items[index], 'a follower is an item of its batch').op.requestId);
    return results as OpResult[];
  }

  /** One account's operations over its state: replays and reused keys answered, the rest run by the engine. */
  private applyAccount(
    ops: { op: LedgerOp; index: number }[],
    replays: Map<string, Replay>,
    state: { account: AccountState; grants: GrantState[]; holds: HoldState[]; refundTargets: RefundTarget[]; spenders?: SpenderState[] },
    now: Date,
    holdsKnownUntil: number,
  ): Applied {
    const answers: Applied['answers'] = [];
    const run: { op: LedgerOp; index: number }[] = [];
    for (const { op, index } of ops) {
      const replayed = replayOf(op.idem, replays, op.requestId);
      if (replayed) answers.push({ index, result: replayed, record: false });
      else run.push({ op, index });
    }
    if (run.length === 0) return { answers, session: null, holdsKnownUntil };
    const session = new LedgerSession({ ...state, now, balanceCap: this.config.balanceCap, lowThreshold: this.config.lowThreshold ?? 0 });
    for (const { op, index } of run) {
      const result = session.run(op);
      // Refusals are answers too: recorded, so the same request gets the same answer.
      answers.push({ index, result, record: op.idem !== null });
    }
    return { answers, session, holdsKnownUntil };
  }

  /**
   * Which accounts of a batch may start from a carried state: one was left, it knows every hold
   * that can come due by now, and every operation is one the carried state can answer (no refund
   * naming a debit, no sweep or expiry, no hold it does not hold, no key its batch was carrying).
   */
  private usableCarries(byAccount: Map<string, { op: LedgerOp }[]>, now: Date): (Map<string, Carry> & { now: Date }) | null {
    const out = Object.assign(new Map<string, Carry>(), { now });
    for (const [accountId, ops] of byAccount) {
      const carry = this.carries.get(accountId);
      if (!carry || now.getTime() >= carry.holdsKnownUntil) return null;
      const fits = ops.every(({ op }) => {
        if (op.idem && carry.keys.has(scopeKey(op.idem))) return false;
        // A pool member's spend needs the member's cap and spend, read under the lock.
        if (memberOf(op) !== null) return false;
        switch (op.kind) {
          case 'grant':
          case 'debit':
          case 'adjust':
          case 'hold':
            return true;
          case 'capture':
          case 'release':
            return carry.holdIds.has(op.holdId);
          default:
            return false;
        }
      });
      if (!fits) return null;
      out.set(accountId, carry);
    }
    return out.size > 0 ? out : null;
  }

  private rememberHold(holdId: string, accountId: string): void {
    while (this.holdAccounts.size >= MAX_HOLD_ACCOUNTS) this.holdAccounts.delete(this.holdAccounts.keys().next().value as string);
    this.holdAccounts.set(holdId, accountId);
  }

  /** Keeps the state a batch leaves for the account's next batch (bounded; oldest dropped). */
  private remember(accountId: string, a: Applied, keys: ReadonlySet<string>): void {
    const state = must(a.session, 'a remembered account ran a session').carried();
    this.carries.delete(accountId);
    while (this.carries.size >= MAX_CARRIES) this.carries.delete(this.carries.keys().next().value as string);
    this.carries.set(accountId, { ...state, holdIds: new Set(state.holds.map((h) => h.id)), holdsKnownUntil: a.holdsKnownUntil, keys });
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
        { id: accountId, userId: 'userId' in owner ? owner.userId : null, workspaceId: 'workspaceId' in owner ? owner.workspaceId : null, balance: 0, held: 0, totalCredited: 0, totalSpent: 0, lastSeq: 0, version: 0 },
        [],
      );
    }
    const grants = await this.repo.grantsLive(db, accountId);
    return balanceBody(account, grants);
  }

  /**
   * Sets the balance below which the account is low (`credits.low`, told once per downward
   * crossing; docs/webhooks-out.md); null falls back to the deployment's default. Opens a
   * workspace pool's account if it has none yet. Nothing is told now: only a later crossing tells.
   */
  async setLowThreshold(db: Executor, owner: Owner, threshold: number | null) {
    await this.assertOwner(db, owner);
    const accountId = accountIdOf(owner);
    if (!(await this.repo.accountSetLowThreshold(db, accountId, threshold, newAccountVersion()))) {
      await this.openAccount(db, owner);
      await this.repo.accountSetLowThreshold(db, accountId, threshold, newAccountVersion());
    }
    // The state a batch of this process carries names the old threshold (and version): drop it.
    this.carries.delete(accountId);
    this.invalidations?.accountsChanged([accountId]);
    return {
      user_id: 'userId' in owner ? owner.userId : null,
      workspace_id: 'workspaceId' in owner ? owner.workspaceId : null,
      low_threshold: threshold,
      effective_threshold: threshold ?? this.config.lowThreshold ?? 0,
    };
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

/** What a batch knows of an account it worked on. */
interface Applied {
  answers: { index: number; result: OpResult; record: boolean }[];
  /** Null when every operation was answered without the engine (replays). */
  session: LedgerSession | null;
  /** Until when (ms) the state holds every open hold that can come due. */
  holdsKnownUntil: number;
}

/** The state an account's last batch in this process left, for its next one to start from. */
interface Carry {
  account: AccountState;
  grants: GrantState[];
  holds: HoldState[];
  holdIds: Set<string>;
  holdsKnownUntil: number;
  /** The keys of the batch that left it: a key among them must wait for that batch's answer. */
  keys: ReadonlySet<string>;
}

/** Consumption is never capped: the cap is for grants, and consumption only spends. */
const consumptionSession = (s: LedgerSnapshot, now: Date, spenders: SpenderState[] = [], lowThreshold = 0) =>
  new LedgerSession({ account: s.account, grants: [...s.grants], holds: [...s.holds], refundTargets: [], now, balanceCap: null, spenders, lowThreshold });

/** A session as the port shows it: balance, what is coverable, and consuming. */
function consumingAccount(session: LedgerSession): ConsumingAccount {
  return {
    get balance() {
      return session.accountState.balance;
    },
    get held() {
      return session.accountState.held;
    },
    coverable: (tiers: ConsumeTier[], want?: number) => session.coverable(tiers, want),
    assertMaySpend: (memberId: string, amount: number) => session.assertMaySpend(memberId, amount),
    consume: (c): ConsumeResult => {
      const result = session.run({ kind: 'consume', idem: null, ...c });
      if (!result.ok) throw result.error;
      return must(session.lastConsume, 'a consume that ran left its result');
    },
    hold: (h): string => {
      const result = session.run({ kind: 'hold', idem: null, ...h });
      if (!result.ok) throw result.error;
      return String((result.value as { id: string }).id);
    },
    settleHold: ({ requestId, holdId, amount, metadata }) => {
      const held = session.openHold(holdId);
      if (held === null) return { open: false, captured: 0, transactionId: null };
      const captured = Math.max(0, Math.min(amount, held));
      const result = captured > 0 ? session.run({ kind: 'capture', idem: null, requestId, holdId, amount: captured, metadata }) : session.run({ kind: 'release', idem: null, requestId, holdId });
      if (!result.ok) throw result.error;
      return { open: true, captured, transactionId: (result.value as { transaction_id: string | null }).transaction_id };
    },
  };
}

/** Whether a batch's output writes anything for its account. */
const touches = (o: EngineOutput): boolean => o.entries.length > 0 || o.holds.length > 0 || o.grants.length > 0;

/** The (pool account, member) pairs a batch's operations spend for. */
function spenderPairs(items: { accountId: string; op: LedgerOp }[]): { accountId: string; memberId: string }[] {
  return dedupePairs(items.flatMap(({ accountId, op }) => {
    const memberId = memberOf(op);
    return memberId === null ? [] : [{ accountId, memberId }];
  }));
}

function dedupePairs(pairs: { accountId: string; memberId: string }[]): { accountId: string; memberId: string }[] {
  return [...new Map(pairs.map((p) => [`${p.accountId}\n${p.memberId}`, p])).values()];
}

/** Accounts whose last state is kept; a hot account needs one, the rest is a bound on memory. */
const MAX_CARRIES = 10_000;
const MAX_HOLD_ACCOUNTS = 100_000;

function errorResult(op: LedgerOp, err: DomainError): OpResult {
  return refused(err, op.requestId);
}
