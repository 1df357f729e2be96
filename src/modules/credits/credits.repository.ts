import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn, type PageRequest } from '../../http/pagination.js';
import type { AccountState, GrantState, HoldState, LedgerEntry, RefundTarget } from './credits.js';
import type { EngineOutput } from './credits.engine.js';

type Row = Record<string, unknown>;
const date = (v: unknown): Date => (v instanceof Date ? v : new Date(String(v)));
const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : date(v));
const json = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' ? (v as Record<string, unknown>) : {});

export function accountFromRow(r: Row): AccountState {
  return {
    id: r['id'] as string,
    userId: (r['user_id'] as string | null) ?? null,
    workspaceId: (r['workspace_id'] as string | null) ?? null,
    balance: Number(r['balance']),
    held: Number(r['held']),
    totalCredited: Number(r['total_credited']),
    totalSpent: Number(r['total_spent']),
  };
}

export function grantFromRow(r: Row): GrantState {
  return {
    id: r['id'] as string,
    accountId: r['account_id'] as string,
    class: r['class'] as string,
    source: r['source'] as string,
    amount: Number(r['amount']),
    remaining: Number(r['remaining']),
    priority: Number(r['priority']),
    expiresAt: dateOrNull(r['expires_at']),
    expiredAt: dateOrNull(r['expired_at']),
    transactionId: (r['transaction_id'] as string | null) ?? null,
    metadata: json(r['metadata']),
    createdAt: date(r['created_at']),
    isNew: false,
    dirty: false,
  };
}

export function holdFromRow(r: Row): HoldState {
  return {
    id: r['id'] as string,
    accountId: r['account_id'] as string,
    userId: (r['user_id'] as string | null) ?? null,
    workspaceId: (r['workspace_id'] as string | null) ?? null,
    amount: Number(r['amount']),
    captured: r['captured'] === null || r['captured'] === undefined ? null : Number(r['captured']),
    status: r['status'] as HoldState['status'],
    expiresAt: date(r['expires_at']),
    transactionId: (r['transaction_id'] as string | null) ?? null,
    metadata: json(r['metadata']),
    resolvedAt: dateOrNull(r['resolved_at']),
    createdAt: date(r['created_at']),
    isNew: false,
    dirty: false,
  };
}

export function entryFromRow(r: Row): LedgerEntry {
  return {
    id: r['id'] as string,
    accountId: r['account_id'] as string,
    userId: (r['user_id'] as string | null) ?? null,
    workspaceId: (r['workspace_id'] as string | null) ?? null,
    type: r['type'] as LedgerEntry['type'],
    amount: Number(r['amount']),
    balanceAfter: Number(r['balance_after']),
    reason: (r['reason'] as string | null) ?? '',
    metadata: json(r['metadata']),
    grantId: (r['grant_id'] as string | null) ?? null,
    holdId: (r['hold_id'] as string | null) ?? null,
    refundOf: (r['refund_of'] as string | null) ?? null,
    createdAt: date(r['created_at']),
  };
}

/**
 * SQL for the ledger. Raw statements name tables through `t()` because Kysely's schema plugin does
 * not rewrite raw SQL. Every write of a batch is one set-based statement per table.
 */
export class CreditsRepository {
  constructor(private readonly schema: string) {}

  table(name: string) {
    return sql.table(`${this.schema}.${name}`);
  }

  private t(name: string) {
    return this.table(name);
  }

  /** Locks the account row for the rest of the transaction: the one lock a money movement takes. */
  async accountLock(db: Executor, accountId: string): Promise<AccountState | undefined> {
    const res = await sql<Row>`select * from ${this.t('credit_accounts')} where id = ${accountId} for update`.execute(db);
    return res.rows[0] ? accountFromRow(res.rows[0]) : undefined;
  }

  async accountFind(db: Executor, accountId: string): Promise<AccountState | undefined> {
    const row = await db.selectFrom('credit_accounts').selectAll().where('id', '=', accountId).executeTakeFirst();
    return row ? accountFromRow(row as unknown as Row) : undefined;
  }

  async accountInsert(db: Executor, account: { id: string; userId: string | null; workspaceId: string | null }): Promise<void> {
    await db
      .insertInto('credit_accounts')
      .values({ id: account.id, user_id: account.userId, workspace_id: account.workspaceId })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
  }

  /** Grants with credits left, in consumption order. */
  async grantsLive(db: Executor, accountId: string): Promise<GrantState[]> {
    const res = await sql<Row>`select * from ${this.t('credit_grants')}
      where account_id = ${accountId} and remaining > 0
      order by expires_at nulls last, priority, created_at, id`.execute(db);
    return res.rows.map(grantFromRow);
  }

  async grantsByIds(db: Executor, ids: string[]): Promise<GrantState[]> {
    if (ids.length === 0) return [];
    const res = await sql<Row>`select * from ${this.t('credit_grants')} where id = any(${ids}::text[])`.execute(db);
    return res.rows.map(grantFromRow);
  }

  /** The holds a batch names, plus the account's open holds that are already past due. */
  async holdsFor(db: Executor, accountId: string, ids: string[], now: Date): Promise<HoldState[]> {
    const res = await sql<Row>`select * from ${this.t('credit_holds')}
      where account_id = ${accountId}
        and (id = any(${ids}::text[]) or (status = 'held' and expires_at <= ${now}))`.execute(db);
    return res.rows.map(holdFromRow);
  }

  async holdFind(db: Executor, id: string): Promise<HoldState | undefined> {
    const res = await sql<Row>`select * from ${this.t('credit_holds')} where id = ${id}`.execute(db);
    return res.rows[0] ? holdFromRow(res.rows[0]) : undefined;
  }

  /** Debits/captures that refunds name: their allocations and what earlier refunds gave back. */
  async refundTargets(db: Executor, accountId: string, ids: string[]): Promise<RefundTarget[]> {
    if (ids.length === 0) return [];
    const entries = await sql<Row>`select e.id, e.account_id, e.type, e.amount,
        coalesce((select sum(r.amount) from ${this.t('credit_ledger')} r where r.refund_of = e.id), 0) as refunded
      from ${this.t('credit_ledger')} e where e.id = any(${ids}::text[]) and e.account_id = ${accountId}`.execute(db);
    if (entries.rows.length === 0) return [];
    const found = entries.rows.map((r) => r['id'] as string);
    const allocs = await sql<Row>`select a.transaction_id, a.grant_id, a.amount, l.refund_of
      from ${this.t('credit_allocations')} a join ${this.t('credit_ledger')} l on l.id = a.transaction_id
      where a.transaction_id = any(${found}::text[]) or l.refund_of = any(${found}::text[])
      order by a.transaction_id, a.grant_id`.execute(db);
    return entries.rows.map((r) => {
      const id = r['id'] as string;
      const restoredByGrant = new Map<string, number>();
      const allocations: { grantId: string; amount: number }[] = [];
      for (const a of allocs.rows) {
        if (a['transaction_id'] === id) allocations.push({ grantId: a['grant_id'] as string, amount: Number(a['amount']) });
        else if (a['refund_of'] === id) {
          const g = a['grant_id'] as string;
          restoredByGrant.set(g, (restoredByGrant.get(g) ?? 0) + Number(a['amount']));
        }
      }
      return {
        id,
        accountId: r['account_id'] as string,
        type: r['type'] as RefundTarget['type'],
        amount: Number(r['amount']),
        refunded: Number(r['refunded']),
        allocations,
        restoredByGrant,
      };
    });
  }

  /** Writes everything a batch computed: a handful of set-based statements, whatever its size. */
  async writeBatch(db: Executor, out: EngineOutput): Promise<void> {
    const a = out.account;
    const newGrants = out.grants.filter((g) => g.isNew);
    const changedGrants = out.grants.filter((g) => !g.isNew);
    const newHolds = out.holds.filter((h) => h.isNew);
    const changedHolds = out.holds.filter((h) => !h.isNew);

    if (newGrants.length > 0) {
      await db
        .insertInto('credit_grants')
        .values(
          newGrants.map((g) => ({
            id: g.id,
            account_id: g.accountId,
            user_id: a.userId,
            workspace_id: a.workspaceId,
            class: g.class,
            source: g.source,
            amount: g.amount,
            remaining: g.remaining,
            priority: g.priority,
            expires_at: g.expiresAt,
            expired_at: g.expiredAt,
            transaction_id: g.transactionId,
            metadata: JSON.stringify(g.metadata),
            created_at: g.createdAt,
          })),
        )
        .execute();
    }
    if (out.entries.length > 0) {
      await db
        .insertInto('credit_ledger')
        .values(
          out.entries.map((e) => ({
            id: e.id,
            account_id: e.accountId,
            user_id: e.userId,
            workspace_id: e.workspaceId,
            type: e.type,
            amount: e.amount,
            balance_after: e.balanceAfter,
            reason: e.reason,
            metadata: JSON.stringify(e.metadata),
            grant_id: e.grantId,
            hold_id: e.holdId,
            refund_of: e.refundOf,
            created_at: e.createdAt,
          })),
        )
        .execute();
    }
    if (changedGrants.length > 0) {
      await sql`update ${this.t('credit_grants')} g
        set remaining = v.remaining, expired_at = v.expired_at
        from unnest(${changedGrants.map((g) => g.id)}::text[], ${changedGrants.map((g) => g.remaining)}::int8[],
                    ${changedGrants.map((g) => g.expiredAt?.toISOString() ?? null)}::timestamptz[]) as v(id, remaining, expired_at)
        where g.id = v.id`.execute(db);
    }
    if (newHolds.length > 0) {
      await db
        .insertInto('credit_holds')
        .values(
          newHolds.map((h) => ({
            id: h.id,
            account_id: h.accountId,
            user_id: h.userId,
            workspace_id: h.workspaceId,
            amount: h.amount,
            captured: h.captured,
            status: h.status,
            expires_at: h.expiresAt,
            transaction_id: h.transactionId,
            metadata: JSON.stringify(h.metadata),
            resolved_at: h.resolvedAt,
            created_at: h.createdAt,
          })),
        )
        .execute();
    }
    if (changedHolds.length > 0) {
      await sql`update ${this.t('credit_holds')} h
        set status = v.status, captured = v.captured, transaction_id = v.transaction_id, resolved_at = v.resolved_at
        from unnest(${changedHolds.map((h) => h.id)}::text[], ${changedHolds.map((h) => h.status)}::text[],
                    ${changedHolds.map((h) => h.captured)}::int8[], ${changedHolds.map((h) => h.transactionId)}::text[],
                    ${changedHolds.map((h) => h.resolvedAt?.toISOString() ?? null)}::timestamptz[])
             as v(id, status, captured, transaction_id, resolved_at)
        where h.id = v.id`.execute(db);
    }
    if (out.allocations.length > 0) {
      await db
        .insertInto('credit_allocations')
        .values(out.allocations.map((x) => ({ transaction_id: x.transactionId, grant_id: x.grantId, amount: x.amount })))
        .execute();
    }
    await sql`update ${this.t('credit_accounts')}
      set balance = ${a.balance}, held = ${a.held}, total_credited = ${a.totalCredited}, total_spent = ${a.totalSpent}
      where id = ${a.id}`.execute(db);
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
