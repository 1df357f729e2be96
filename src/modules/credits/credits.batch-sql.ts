import { randomInt } from 'node:crypto';
import { type AnswerCodec, type IdempotencyScope, KeyRecordedMeanwhile } from '../idempotency/idempotency.js';
import { type Recorded, recordRows, recordsCte, type Replay, replayMap, replaysParams, replaysQuery, type StoredKeyRow } from '../idempotency/idempotency.batch.js';
import { type RunStatement, type Statement, statement, type WritePart, writePlaceholders, writeValues } from '../../db/statements.js';
import type { AccountState, GrantState, HoldState, RefundTarget, SpenderState } from './credits.js';
import type { EngineOutput } from './credits.engine.js';
import { type AccountRow, accountFromRow, type EntryRow, type GrantRow, grantFromRow, type HoldRow, holdFromRow } from './credits.repository.js';
import { must } from '../../lib/must.js';
import { ledgerEntryColumn, storedBody, storedBodyText } from './credits.stored-answers.js';

/** A stored answer of `replaysQuery`, with the ledger row a compact one names (`ledgerEntryColumn`). */
type ReplayRow = StoredKeyRow & { entry: EntryRow | null };
/** Sums are numeric: a string from `pg`; Number() reads either driver's answer. */
type Sum = string | number;
type SpenderRow = {
  account_id: string;
  member_id: string;
  role: string | null;
  active: boolean;
  cap: number | null;
  period: SpenderState['period'];
  spent: Sum;
  held: Sum;
};
type RefundTargetRow = { id: string; account_id: string; type: RefundTarget['type']; amount: number; grant_id: string | null; refunded: Sum };
type RefundAllocRow = { transaction_id: string; grant_id: string; amount: number; position: number; refund_of: string | null };

/**
 * A ledger batch is three statements, whatever its size and however many accounts it touches:
 *
 * 1. `lock` — lock the batch's accounts (in id order: two batches can never deadlock). Its own
 *    statement: what follows has to be read with a snapshot taken after the locks were granted.
 * 2. `load` — everything the engine needs, in one query: live grants, open or named holds, stored
 *    answers of the batch's Idempotency-Keys (plus a second query only when a refund names a debit).
 * 3. `write` — every change, in one statement of data-modifying CTEs, including each key's record
 *    with its final answer. A key recorded meanwhile by another transaction (the same key on another
 *    account) makes it throw; the queue then runs each operation again alone, and that run replays.
 *
 * With BEGIN and COMMIT that is five round trips per batch. Texts are fixed per shape so that
 * PostgreSQL prepares each once per connection (see src/db/statements.ts).
 */
export class BatchSql {
  private readonly lockText: string;
  private readonly loadText: string;
  private readonly refundsText: string;
  private readonly replaysText: string;
  private readonly writeTexts = new Map<number, string>();

  constructor(
    private readonly schema: string,
    /** How outcomes are recorded under their keys (statuses are the HTTP layer's: src/http/answers.ts). */
    private readonly answers: AnswerCodec,
  ) {
    const t = this.t.bind(this);
    this.lockText = `select * from ${t('credit_accounts')} where id = any($1::text[]) order by id for update`;
    // Stored answers of a batch's keys: part of the load, and alone for a chained batch.
    // A compact stored movement is rebuilt from its ledger row: read with the record.
    const replays = (principals: string, keys: string) => replaysQuery(t('idempotency_keys'), principals, keys, ledgerEntryColumn(t('credit_ledger')));
    this.loadText = `select
        -- remaining <> 0: live grants, and the debt a clawback left (negative; new grants pay it first).
        (select json_agg(g) from ${t('credit_grants')} g where g.account_id = any($1::text[]) and g.remaining <> 0) as grants,
        (select json_agg(h) from ${t('credit_holds')} h
          where h.account_id = any($2::text[]) and (h.id = any($3::text[]) or (h.status = 'held' and h.expires_at <= $4))) as holds,
        (select json_agg(k) from (${replays('$5', '$6')}) k) as replays,
        -- Per account, the first open hold not loaded here: until then this load knows every hold
        -- that comes due (what a chained batch may rely on).
        (select json_agg(d) from (
          select h.account_id, min(h.expires_at) as next_due from ${t('credit_holds')} h
          where h.account_id = any($2::text[]) and h.status = 'held' and h.expires_at > $4 group by h.account_id) d) as next_due`;
    this.replaysText = replays('$1', '$2');
    this.refundsText = `
      with targets as (
        select e.id, e.account_id, e.type, e.amount, e.grant_id,
          coalesce((select sum(r.amount) from ${t('credit_ledger')} r where r.refund_of = e.id), 0) as refunded
        from ${t('credit_ledger')} e
        where e.id = any($1::text[]) and e.account_id = any($2::text[])
      ), entries as (
        -- The targets and the refunds already made against them.
        select l.id, l.grant_id, l.amount, l.refund_of from ${t('credit_ledger')} l where l.id in (select id from targets)
        union all
        select l.id, l.grant_id, l.amount, l.refund_of from ${t('credit_ledger')} l where l.refund_of in (select id from targets)
      ), allocs as (
        -- An entry's allocations: its rows, or (none) all of it to its grant_id.
        select a.transaction_id, a.grant_id, a.amount, a.position, e.refund_of
        from entries e join ${t('credit_allocations')} a on a.transaction_id = e.id
        union all
        select e.id, e.grant_id, abs(e.amount), 0, e.refund_of from entries e
        where e.grant_id is not null and not exists (select 1 from ${t('credit_allocations')} a where a.transaction_id = e.id)
      )
      select (select json_agg(targets) from targets) as targets,
             (select json_agg(allocs order by allocs.transaction_id, allocs.position) from allocs) as allocs,
             (select json_agg(g) from ${t('credit_grants')} g where g.id in (select grant_id from allocs) and g.remaining = 0) as grants`;
  }

  private t(name: string): string {
    return `"${this.schema}"."${name}"`;
  }

  /**
   * A quote's snapshot as a select list (the ledger port's `snapshots.columns`): the account, its
   * live grants, and its open holds due by the second parameter.
   */
  snapshotColumns(accountParam: string, dueByParam: string): string {
    const t = this.t.bind(this);
    return `(select row_to_json(a) from ${t('credit_accounts')} a where a.id = ${accountParam}) as account,
      (select json_agg(g) from ${t('credit_grants')} g where g.account_id = ${accountParam} and g.remaining <> 0) as grants,
      (select json_agg(h) from ${t('credit_holds')} h where h.account_id = ${accountParam} and h.status = 'held' and h.expires_at <= ${dueByParam}) as holds`;
  }

  /**
   * Opens the account of an existing owner that has none yet (workspace pools open on first use).
   * False when the owner does not exist.
   */
  async openAccount(run: RunStatement, accountId: string): Promise<boolean> {
    const user = accountId.startsWith('acc_u_');
    if (!user && !accountId.startsWith('acc_w_')) return false;
    const text = user
      ? `insert into ${this.t('credit_accounts')} (id, user_id) select $1, id from ${this.t('users')} where id = $2
         on conflict (id) do nothing returning id`
      : `insert into ${this.t('credit_accounts')} (id, workspace_id) select $1, id from ${this.t('workspaces')} where id = $2
         on conflict (id) do nothing returning id`;
    const rows = await run(statement('ledger_open_account', text, [accountId, accountId.slice(6)]));
    return rows.length > 0;
  }

  /**
   * Pool spenders (docs/ledger.md, "Workspace pools"), read under the pools' row locks: per
   * (account, member) the member's role (null: not a member), spend cap, and what the cap counts at
   * `now` — the member's debits and captures on the pool since the cap's period began (a UTC
   * calendar month, or ever) and their open holds. Derived from the ledger, so a replay (which
   * writes nothing) never counts twice, and nothing the member can change resets it.
   */
  async spenders(
    run: RunStatement,
    pairs: { accountId: string; memberId: string }[],
    now: Date,
    always = false,
  ): Promise<(SpenderState & { accountId: string; spent: number; held: number })[]> {
    if (pairs.length === 0) return [];
    const rows = await run<SpenderRow>(
      statement('ledger_spenders', this.spendersText, [pairs.map((p) => p.accountId), pairs.map((p) => p.memberId), now, always]),
    );
    return rows.map((r) => ({
      accountId: r.account_id,
      memberId: r.member_id,
      role: r.role,
      active: r.active,
      cap: r.cap,
      period: r.period,
      // Without a cap nothing is counted (one less sum on every uncapped spend).
      used: r.cap === null ? 0 : Number(r.spent) + Number(r.held),
      spent: Number(r.spent),
      held: Number(r.held),
    }));
  }

  private get spendersText(): string {
    const t = this.t.bind(this);
    // $4: count even without a cap (a report); a spend without a cap needs no sums.
    return `select x.account_id, x.member_id, m.role, coalesce(w.is_active, false) as active, c.amount as cap, c.period,
        case when c.amount is null and not $4::boolean then 0 else
          coalesce((select sum(-l.amount) from ${t('credit_ledger')} l
            where l.account_id = x.account_id and l.member_id = x.member_id and l.type in ('debit', 'capture')
              and (c.period is distinct from 'month'
                   or l.created_at >= (date_trunc('month', $3::timestamptz at time zone 'UTC') at time zone 'UTC'))), 0)
        end as spent,
        case when c.amount is null and not $4::boolean then 0 else
          coalesce((select sum(h.amount) from ${t('credit_holds')} h
            where h.account_id = x.account_id and h.member_id = x.member_id and h.status = 'held' and h.expires_at > $3::timestamptz), 0)
        end as held
      from unnest($1::text[], $2::text[]) as x(account_id, member_id)
      left join ${t('workspaces')} w on w.id = substr(x.account_id, 7)
      left join ${t('workspace_members')} m on m.workspace_id = substr(x.account_id, 7) and m.user_id = x.member_id
      left join ${t('workspace_spend_caps')} c on c.workspace_id = substr(x.account_id, 7) and c.user_id = x.member_id
      where left(x.account_id, 6) = 'acc_w_'`;
  }

  /**
   * Removes accounts this transaction opened and wrote nothing to (a batch of refusals on a pool's
   * first use): still locked by us, so nobody else has seen them.
   */
  async dropUnused(run: RunStatement, accountIds: string[]): Promise<void> {
    if (accountIds.length === 0) return;
    await run(
      statement('ledger_drop_unused', `delete from ${this.t('credit_accounts')} where id = any($1::text[]) and last_seq = 0 and held = 0 and balance = 0`, [accountIds]),
    );
  }

  async lock(run: RunStatement, accountIds: string[]): Promise<AccountState[]> {
    return (await run<AccountRow>(statement('ledger_lock', this.lockText, [accountIds]))).map(accountFromRow);
  }

  async load(
    run: RunStatement,
    q: {
      accountIds: string[];
      /** Accounts whose holds may matter: something is held, or a hold is named. */
      holdAccountIds: string[];
      holdIds: string[];
      now: Date;
      scopes: IdempotencyScope[];
      refundIds: string[];
    },
  ): Promise<{
    grants: GrantState[];
    holds: HoldState[];
    replays: Map<string, Replay>;
    refundTargets: RefundTarget[];
    /** Per account with open holds: when the first one this load did not bring comes due (ms). */
    nextHoldDue: Map<string, number>;
  }> {
    const [row] = await run<{ grants: GrantRow[] | null; holds: HoldRow[] | null; replays: ReplayRow[] | null; next_due: { account_id: string; next_due: string }[] | null }>(
      statement('ledger_load', this.loadText, [
        q.accountIds,
        q.holdAccountIds,
        q.holdIds,
        q.now,
        ...replaysParams(q.scopes),
      ]),
    );
    // Refunds are rare: what they need is a second query, only when the batch has one.
    const [refunds] =
      q.refundIds.length === 0
        ? [{ targets: null, allocs: null, grants: null }]
        : await run<{ targets: RefundTargetRow[] | null; allocs: RefundAllocRow[] | null; grants: GrantRow[] | null }>(
            statement('ledger_refunds', this.refundsText, [q.refundIds, q.accountIds]),
          );
    const replays = replayMap(row?.replays ?? [], this.answers, replayBody);
    const allocs = refunds?.allocs ?? [];
    const refundTargets: RefundTarget[] = (refunds?.targets ?? []).map((t) => {
      const id = t.id;
      const restoredByGrant = new Map<string, number>();
      const allocations: { grantId: string; amount: number }[] = [];
      for (const a of allocs) {
        if (a.transaction_id === id) allocations.push({ grantId: a.grant_id, amount: a.amount });
        else if (a.refund_of === id) {
          const g = a.grant_id;
          restoredByGrant.set(g, (restoredByGrant.get(g) ?? 0) + a.amount);
        }
      }
      return {
        id,
        accountId: t.account_id,
        type: t.type,
        amount: t.amount,
        refunded: Number(t.refunded),
        allocations,
        restoredByGrant,
      };
    });
    return {
      grants: [...(row?.grants ?? []), ...(refunds?.grants ?? [])].map(grantFromRow),
      holds: (row?.holds ?? []).map(holdFromRow),
      replays,
      refundTargets,
      nextHoldDue: new Map((row?.next_due ?? []).map((d) => [d.account_id, new Date(d.next_due).getTime()])),
    };
  }

  /** Stored answers of these keys (a chained batch asks before it waits for its locks). */
  async replays(run: RunStatement, scopes: IdempotencyScope[]): Promise<Map<string, Replay>> {
    if (scopes.length === 0) return new Map();
    const rows = await run<ReplayRow>(statement('ledger_replays', this.replaysText, replaysParams(scopes)));
    return replayMap(rows, this.answers, replayBody);
  }

  /** Every change of a batch (all its accounts) in one statement of data-modifying CTEs. */
  async write(run: RunStatement, outs: EngineOutput[], done: Recorded[]): Promise<void> {
    await this.runWrite(run, this.prepareWrite(outs, done));
  }

  /**
   * The write, built: every written account's `version` has moved on (in `outs` too), so the
   * state the caller holds is the state the database will have once this commits.
   */
  prepareWrite(outs: EngineOutput[], done: Recorded[]): PreparedWrite {
    return { statement: this.writeStatement(outs, done), keys: done.length };
  }

  async runWrite(run: RunStatement, w: PreparedWrite): Promise<void> {
    if (!w.statement) return;
    const [res] = await run<{ keys: number }>(w.statement);
    if ((res?.keys ?? 0) !== w.keys) {
      throw new KeyRecordedMeanwhile();
    }
  }

  /** The write statement for this batch's shape: only the parts it needs (fewer CTEs to plan). */
  private writeStatement(outs: EngineOutput[], done: Recorded[]): Statement | null {
    const entries = outs.flatMap((o) => o.entries);
    const grants = outs.flatMap((o) => o.grants.map((g) => ({ g, a: o.account })));
    const holds = outs.flatMap((o) => o.holds);
    const allocations = outs.flatMap((o) => o.allocations);
    const accounts = outs.filter((o) => o.entries.length > 0 || o.holds.length > 0 || o.grants.length > 0).map((o) => o.account);
    const parts: WritePart[] = [
      {
        bit: 1,
        rows: entries.map((e) => ({
          id: e.id, account_id: e.accountId, user_id: e.userId, workspace_id: e.workspaceId, member_id: e.memberId, type: e.type, amount: e.amount,
          balance_after: e.balanceAfter, reason: e.reason, metadata: e.metadata, grant_id: e.grantId, hold_id: e.holdId,
          refund_of: e.refundOf, seq: e.seq, created_at: e.createdAt,
        })),
      },
      {
        bit: 2,
        rows: grants.filter(({ g }) => g.isNew).map(({ g, a }) => ({
          id: g.id, account_id: g.accountId, user_id: a.userId, workspace_id: a.workspaceId, class: g.class, source: g.source,
          amount: g.amount, remaining: g.remaining, priority: g.priority, expires_at: g.expiresAt, expired_at: g.expiredAt,
          rollover_until: g.rolloverUntil, transaction_id: g.transactionId, metadata: g.metadata, created_at: g.createdAt,
        })),
      },
      {
        bit: 4,
        rows: grants.filter(({ g }) => !g.isNew).map(({ g }) => ({
          id: g.id, remaining: g.remaining, expired_at: g.expiredAt, rollover_until: g.rolloverUntil,
        })),
      },
      {
        bit: 8,
        rows: holds.filter((h) => h.isNew).map((h) => ({
          id: h.id, account_id: h.accountId, user_id: h.userId, workspace_id: h.workspaceId, member_id: h.memberId, amount: h.amount, captured: h.captured,
          status: h.status, expires_at: h.expiresAt, transaction_id: h.transactionId, metadata: h.metadata,
          resolved_at: h.resolvedAt, created_at: h.createdAt,
        })),
      },
      {
        bit: 16,
        rows: holds.filter((h) => !h.isNew).map((h) => ({
          id: h.id, status: h.status, captured: h.captured, transaction_id: h.transactionId, resolved_at: h.resolvedAt,
        })),
      },
      { bit: 32, rows: withPositions(allocations) },
      {
        bit: 64,
        // Every written account gets a fresh random version, here and in the caller's state (which a
        // chained batch carries forward: docs/ledger.md). Random, not counted: a batch that rolled
        // back must never name a version that someone else's write could then have made real.
        rows: accounts.map((a) => ({
          id: a.id, balance: a.balance, held: a.held, total_credited: a.totalCredited, total_spent: a.totalSpent, last_seq: a.lastSeq,
          version: (a.version = newAccountVersion()),
        })),
      },
      {
        bit: 128,
        rows: recordRows(done, this.answers, storedBodyText),
      },
    ].filter((p) => p.rows.length > 0);
    if (parts.length === 0) return null;
    const mask = parts.reduce((m, p) => m | p.bit, 0);
    let text = this.writeTexts.get(mask);
    if (!text) {
      text = this.writeText(parts.map((p) => p.bit));
      this.writeTexts.set(mask, text);
    }
    return statement(`ledger_write_${mask}`, text, writeValues(parts, UPDATES));
  }

  private writeText(bits: number[]): string {
    const t = this.t.bind(this);
    const cte: Record<number, (p: string, ids: string) => string> = {
      1: (p) => `ledger as (
        insert into ${t('credit_ledger')}
          (id, account_id, user_id, workspace_id, member_id, type, amount, balance_after, reason, metadata, grant_id, hold_id, refund_of, seq, created_at)
        select * from jsonb_to_recordset(${p}::jsonb) as x(id text, account_id text, user_id text, workspace_id text, member_id text, type text,
          amount int8, balance_after int8, reason text, metadata jsonb, grant_id text, hold_id text, refund_of text, seq int8,
          created_at timestamptz))`,
      2: (p) => `new_grants as (
        insert into ${t('credit_grants')} (id, account_id, user_id, workspace_id, class, source, amount, remaining, priority,
          expires_at, expired_at, rollover_until, transaction_id, metadata, created_at)
        select * from jsonb_to_recordset(${p}::jsonb) as x(id text, account_id text, user_id text, workspace_id text, class text,
          source text, amount int8, remaining int8, priority int4, expires_at timestamptz, expired_at timestamptz,
          rollover_until timestamptz, transaction_id text, metadata jsonb, created_at timestamptz))`,
      4: (p, ids) => `changed_grants as (
        update ${t('credit_grants')} g
        set remaining = x.remaining, expired_at = x.expired_at, rollover_until = x.rollover_until, updated_at = now()
        from jsonb_to_recordset(${p}::jsonb) as x(id text, remaining int8, expired_at timestamptz, rollover_until timestamptz)
        where g.id = x.id and g.id = any(${ids}::text[]))`,
      8: (p) => `new_holds as (
        insert into ${t('credit_holds')} (id, account_id, user_id, workspace_id, member_id, amount, captured, status, expires_at,
          transaction_id, metadata, resolved_at, created_at)
        select * from jsonb_to_recordset(${p}::jsonb) as x(id text, account_id text, user_id text, workspace_id text, member_id text,
          amount int8, captured int8, status text, expires_at timestamptz, transaction_id text, metadata jsonb,
          resolved_at timestamptz, created_at timestamptz))`,
      16: (p, ids) => `changed_holds as (
        update ${t('credit_holds')} h
        set status = x.status, captured = x.captured, transaction_id = x.transaction_id, resolved_at = x.resolved_at,
            updated_at = now()
        from jsonb_to_recordset(${p}::jsonb) as x(id text, status text, captured int8, transaction_id text, resolved_at timestamptz)
        where h.id = x.id and h.id = any(${ids}::text[]))`,
      32: (p) => `allocations as (
        insert into ${t('credit_allocations')} (transaction_id, grant_id, amount, position)
        select * from jsonb_to_recordset(${p}::jsonb) as x(transaction_id text, grant_id text, amount int8, position int2))`,
      64: (p, ids) => `accounts as (
        update ${t('credit_accounts')} a
        set balance = x.balance, held = x.held, total_credited = x.total_credited, total_spent = x.total_spent,
            last_seq = x.last_seq, version = x.version, updated_at = now()
        from jsonb_to_recordset(${p}::jsonb) as x(id text, balance int8, held int8, total_credited int8, total_spent int8, last_seq int8,
          version int8)
        where a.id = x.id and a.id = any(${ids}::text[]))`,
      128: (p) => recordsCte('keys', t('idempotency_keys'), p),
    };
    const ctes = writePlaceholders(bits, UPDATES).map((p, i) => must(cte[must(bits[i], 'a placeholder per part')], 'a statement per part')(p.rows, p.ids));
    const count = bits.includes(128) ? '(select count(*)::int from keys)' : '0';
    return `with ${ctes.join(',\n')}\nselect ${count} as keys`;
  }
}

/** A replay row's answer body: compact movements rebuilt with their ledger row (credits.stored-answers.ts). */
const replayBody = (k: ReplayRow): unknown => storedBody(k.response_body, k.entry);

/** The parts that update existing rows (grants, holds, accounts): they also get their ids (writeValues). */
const UPDATES = new Set([4, 16, 64]);

/** A random account version: 48 bits from the CSPRNG (JSON-safe, collisions ~2^-48 per comparison). */
export function newAccountVersion(): number {
  return randomInt(1, 2 ** 48);
}


export interface PreparedWrite {
  statement: Statement | null;
  /** Idempotency records the statement must insert (fewer: one was recorded meanwhile). */
  keys: number;
}


/** Numbers each transaction's allocations in the order the engine made them (consumption order). */
function withPositions(allocations: EngineOutput['allocations']) {
  const next = new Map<string, number>();
  return allocations.map((x) => {
    const position = next.get(x.transactionId) ?? 0;
    next.set(x.transactionId, position + 1);
    return { transaction_id: x.transactionId, grant_id: x.grantId, amount: x.amount, position };
  });
}
