import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { JsonValue } from '../../db/database.types.js';
import type { RowOf, WireRow } from '../../db/rows.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';
import type { AccountState, GrantState, HoldState, LedgerEntry } from './credits.js';

/** A ledger row as read through `select *` (Dates) or json (`json_agg`, `row_to_json`: ISO strings); src/db/rows.ts. */
export type AccountRow = WireRow<RowOf<'credit_accounts'>>;
export type GrantRow = WireRow<RowOf<'credit_grants'>>;
export type HoldRow = WireRow<RowOf<'credit_holds'>>;
export type EntryRow = WireRow<RowOf<'credit_ledger'>>;

const date = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));
const dateOrNull = (v: Date | string | null): Date | null => (v === null ? null : date(v));
const json = (v: JsonValue): Record<string, unknown> => (v && typeof v === 'object' ? (v as Record<string, unknown>) : {});

export function accountFromRow(r: AccountRow): AccountState {
  return {
    id: r.id,
    userId: r.user_id,
    workspaceId: r.workspace_id,
    balance: r.balance,
    held: r.held,
    totalCredited: r.total_credited,
    totalSpent: r.total_spent,
    lastSeq: r.last_seq,
    version: r.version,
    lowThreshold: r.low_threshold,
  };
}

export function grantFromRow(r: GrantRow): GrantState {
  return {
    id: r.id,
    accountId: r.account_id,
    class: r.class,
    source: r.source,
    amount: r.amount,
    remaining: r.remaining,
    priority: r.priority,
    expiresAt: dateOrNull(r.expires_at),
    expiredAt: dateOrNull(r.expired_at),
    rolloverUntil: dateOrNull(r.rollover_until),
    transactionId: r.transaction_id,
    metadata: json(r.metadata),
    createdAt: date(r.created_at),
    isNew: false,
    dirty: false,
  };
}

export function holdFromRow(r: HoldRow): HoldState {
  return {
    id: r.id,
    accountId: r.account_id,
    userId: r.user_id,
    workspaceId: r.workspace_id,
    memberId: r.member_id,
    amount: r.amount,
    captured: r.captured,
    status: r.status as HoldState['status'],
    expiresAt: date(r.expires_at),
    transactionId: r.transaction_id,
    metadata: json(r.metadata),
    resolvedAt: dateOrNull(r.resolved_at),
    createdAt: date(r.created_at),
    isNew: false,
    dirty: false,
  };
}

export function entryFromRow(r: EntryRow): LedgerEntry {
  return {
    id: r.id,
    accountId: r.account_id,
    userId: r.user_id,
    workspaceId: r.workspace_id,
    memberId: r.member_id,
    type: r.type as LedgerEntry['type'],
    amount: r.amount,
    balanceAfter: r.balance_after,
    reason: r.reason ?? '',
    metadata: json(r.metadata),
    grantId: r.grant_id,
    holdId: r.hold_id,
    refundOf: r.refund_of,
    seq: r.seq,
    createdAt: date(r.created_at),
  };
}

/**
 * Reads for the ledger (balances, lists, single rows). A batch's own three statements are in
 * credits.batch-sql.ts. Raw statements name tables through `table()`: Kysely's schema plugin does
 * not rewrite raw SQL.
 */
export class CreditsRepository {
  constructor(private readonly schema: string) {}

  private t(name: string) {
    return sql.table(`${this.schema}.${name}`);
  }

  /**
   * Ends named grants at `at` (sooner if they already end sooner) and clears their rollover:
   * billing's ended allowances. Grants with nothing left are left alone.
   */
  async grantsEndAt(db: Executor, grantIds: readonly string[], at: Date): Promise<void> {
    await db
      .updateTable('credit_grants')
      .set({ rollover_until: null, expires_at: sql<Date>`least(coalesce(expires_at, ${at}), ${at})` })
      .where('id', 'in', [...grantIds])
      .where('remaining', '>', 0)
      .execute();
  }

  /**
   * The named grants of an account and the rollover buckets their remainders moved into
   * (`metadata.rolled_over_from`; a bucket never rolls again, so one level): each one's amount and
   * remaining, and what left it by expiry (its `expiry` entries name it).
   */
  async grantsWithRollovers(db: Executor, accountId: string, grantIds: readonly string[]) {
    if (grantIds.length === 0) return [];
    const grants = await db
      .selectFrom('credit_grants')
      .select(['id', 'amount', 'remaining', 'source'])
      .where('account_id', '=', accountId)
      .where((eb) => eb.or([eb('id', 'in', [...grantIds]), eb.and([eb('source', '=', 'rollover'), eb(sql<string>`metadata->>'rolled_over_from'`, 'in', [...grantIds])])]))
      .execute();
    if (grants.length === 0) return [];
    const expired = await db
      .selectFrom('credit_ledger')
      .select(['grant_id', sql<string>`sum(amount)`.as('total')])
      .where('account_id', '=', accountId)
      .where('type', '=', 'expiry')
      .where('grant_id', 'in', grants.map((g) => g.id))
      .groupBy('grant_id')
      .execute();
    const out = new Map(expired.map((e) => [e.grant_id, -Number(e.total)]));
    return grants.map((g) => ({ id: g.id, source: g.source, amount: g.amount, remaining: g.remaining, expired: out.get(g.id) ?? 0 }));
  }

  /** Σ refunds naming these entries on the account. */
  async refundedOf(db: Executor, accountId: string, transactionIds: readonly string[]): Promise<number> {
    if (transactionIds.length === 0) return 0;
    const row = await db
      .selectFrom('credit_ledger')
      .select(sql<string>`coalesce(sum(amount), 0)`.as('total'))
      .where('account_id', '=', accountId)
      .where('type', '=', 'refund')
      .where('refund_of', 'in', [...transactionIds])
      .executeTakeFirst();
    return Number(row?.total ?? 0);
  }

  /** Gives an account a new version, so a chained ledger batch carrying its old state reloads it. */
  async accountSetVersion(db: Executor, accountId: string, version: number): Promise<void> {
    await db.updateTable('credit_accounts').set({ version }).where('id', '=', accountId).execute();
  }

  /** The account's own low-balance threshold (null: the default), with a new version (chained batches reload). */
  async accountSetLowThreshold(db: Executor, accountId: string, threshold: number | null, version: number): Promise<boolean> {
    const r = await db.updateTable('credit_accounts').set({ low_threshold: threshold, version }).where('id', '=', accountId).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Accounts with a hold or a grant past due, for the scheduler's sweep. */
  async dueAccounts(db: Executor, now: Date, limit: number): Promise<string[]> {
    const res = await sql<{ account_id: string }>`
      select account_id from ${this.t('credit_holds')} where status = 'held' and expires_at <= ${now}
      union
      select account_id from ${this.t('credit_grants')} where remaining > 0 and expires_at <= ${now} and expired_at is null
      limit ${limit}`.execute(db);
    return res.rows.map((r) => r.account_id);
  }

  /** Whether the owner of an account exists (an account opens on first use, so it may not yet). */
  async ownerExists(db: Executor, owner: { userId: string } | { workspaceId: string }): Promise<boolean> {
    const row =
      'userId' in owner
        ? await db.selectFrom('users').select('id').where('id', '=', owner.userId).executeTakeFirst()
        : await db.selectFrom('workspaces').select('id').where('id', '=', owner.workspaceId).executeTakeFirst();
    return row !== undefined;
  }

  async accountFind(db: Executor, accountId: string): Promise<AccountState | undefined> {
    const row = await db.selectFrom('credit_accounts').selectAll().where('id', '=', accountId).executeTakeFirst();
    return row ? accountFromRow(row) : undefined;
  }

  async accountInsert(db: Executor, account: { id: string; userId: string | null; workspaceId: string | null }): Promise<void> {
    await this.accountsInsert(db, [account]);
  }

  async accountsInsert(db: Executor, accounts: readonly { id: string; userId: string | null; workspaceId: string | null }[]): Promise<void> {
    if (accounts.length === 0) return;
    await db
      .insertInto('credit_accounts')
      .values(accounts.map((a) => ({ id: a.id, user_id: a.userId, workspace_id: a.workspaceId })))
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
  }

  /** Grants with credits left, in consumption order. */
  async grantsLive(db: Executor, accountId: string): Promise<GrantState[]> {
    const res = await sql<GrantRow>`select * from ${this.t('credit_grants')}
      where account_id = ${accountId} and remaining > 0
      order by expires_at nulls last, priority, created_at, id`.execute(db);
    return res.rows.map(grantFromRow);
  }

  async holdFind(db: Executor, id: string): Promise<HoldState | undefined> {
    const res = await sql<HoldRow>`select * from ${this.t('credit_holds')} where id = ${id}`.execute(db);
    return res.rows[0] ? holdFromRow(res.rows[0]) : undefined;
  }

  async ledgerPage(db: Executor, accountId: string, page: PageRequest, type: string | undefined) {
    let q = db
      .selectFrom('credit_ledger')
      .selectAll()
      .select(cursorColumn('credit_ledger').as('cursor_us'))
      .where('account_id', '=', accountId);
    if (type) q = q.where('type', '=', type);
    if (page.after) q = q.where(cursorBefore('credit_ledger', page.after));
    return q.orderBy('credit_ledger.created_at', 'desc').orderBy('credit_ledger.id', 'desc').limit(page.limit + 1).execute();
  }

  async holdsPage(db: Executor, accountId: string, page: PageRequest, status: string | undefined) {
    let q = db
      .selectFrom('credit_holds')
      .selectAll()
      .select(cursorColumn('credit_holds').as('cursor_us'))
      .where('account_id', '=', accountId);
    if (status) q = q.where('status', '=', status);
    if (page.after) q = q.where(cursorBefore('credit_holds', page.after));
    return q.orderBy('credit_holds.created_at', 'desc').orderBy('credit_holds.id', 'desc').limit(page.limit + 1).execute();
  }
}
