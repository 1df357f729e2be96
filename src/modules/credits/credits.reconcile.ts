import { sql } from 'kysely';
import type { Database, Executor } from '../../db/database.js';
import { must } from '../../lib/must.js';

export interface Drift {
  account_id: string;
  check: string;
  expected: number | string;
  actual: number | string;
}

export interface ReconcileReport {
  ok: boolean;
  accounts: number;
  entries: number;
  open_holds: number;
  drift: Drift[];
}

/**
 * Verifies the ledger's invariants for every account, in SQL over the whole database:
 * balance = Σ ledger = Σ grant remaining; held = Σ open holds, 0 ≤ held ≤ Σ positive grants (= balance
 * without debt); debt (negative `debt` grants) only from clawbacks; each entry's
 * balance_after is the running sum in seq order (entries numbered 1..n per account); lifetime totals match their entries; every debit, capture,
 * expiry and refund is fully allocated to grants; every hold's status agrees with its fields.
 */
export async function reconcile(database: Database, executor?: Executor): Promise<ReconcileReport> {
  const t = (name: string) => sql.table(`${database.schema}.${name}`);
  // An HTTP caller passes its request transaction (PGlite has one connection: the root would wait on it).
  const db = executor ?? database.root;
  const drift: Drift[] = [];
  const add = (rows: { account_id: string; expected: unknown; actual: unknown }[], check: string) => {
    for (const r of rows) drift.push({ account_id: r.account_id, check, expected: Number(r.expected), actual: Number(r.actual) });
  };
  type R = { account_id: string; expected: unknown; actual: unknown };

  add((await sql<R>`select a.id as account_id, coalesce(l.s, 0) as expected, a.balance as actual
      from ${t('credit_accounts')} a left join (select account_id, sum(amount) s from ${t('credit_ledger')} group by 1) l on l.account_id = a.id
      where a.balance <> coalesce(l.s, 0)`.execute(db)).rows, 'balance = sum(ledger)');
  add((await sql<R>`select a.id as account_id, coalesce(g.s, 0) as expected, a.balance as actual
      from ${t('credit_accounts')} a left join (select account_id, sum(remaining) s from ${t('credit_grants')} group by 1) g on g.account_id = a.id
      where a.balance <> coalesce(g.s, 0)`.execute(db)).rows, 'balance = sum(grants.remaining)');
  add((await sql<R>`select a.id as account_id, coalesce(h.s, 0) as expected, a.held as actual
      from ${t('credit_accounts')} a left join (select account_id, sum(amount) s from ${t('credit_holds')} where status = 'held' group by 1) h on h.account_id = a.id
      where a.held <> coalesce(h.s, 0)`.execute(db)).rows, 'held = sum(open holds)');
  // Open holds are always backed by positive grants. Without debt that is `held <= balance`; a
  // clawback's debt may take the balance itself below held (the backing credits stay).
  add((await sql<R>`select a.id as account_id, coalesce(g.s, 0) as expected, a.held as actual
      from ${t('credit_accounts')} a left join (select account_id, sum(remaining) s from ${t('credit_grants')} where remaining > 0 group by 1) g on g.account_id = a.id
      where a.held < 0 or a.held > coalesce(g.s, 0)`.execute(db)).rows, '0 <= held <= positive grants');
  // Debt only ever comes from a clawback: the sum of debt grants never exceeds the sum of clawbacks.
  add((await sql<R>`select d.account_id, coalesce(c.s, 0) as expected, d.s as actual
      from (select account_id, -sum(remaining) s from ${t('credit_grants')} where source = 'debt' group by 1) d
      left join (select account_id, -sum(amount) s from ${t('credit_ledger')} where type = 'clawback' group by 1) c on c.account_id = d.account_id
      where d.s > coalesce(c.s, 0)`.execute(db)).rows, 'debt <= clawbacks');
  add((await sql<R>`select account_id, running as expected, balance_after as actual from (
        select account_id, balance_after, sum(amount) over (partition by account_id order by seq) as running
        from ${t('credit_ledger')}) x where running <> balance_after`.execute(db)).rows, 'balance_after = running sum (in seq order)');
  // Entries are numbered 1..n per account without gaps or repeats, and the account knows its n.
  add((await sql<R>`select a.id as account_id, a.last_seq as expected, coalesce(l.n, 0) as actual
      from ${t('credit_accounts')} a left join (select account_id, count(*) as n, count(distinct seq) as d, max(seq) as m
        from ${t('credit_ledger')} group by 1) l on l.account_id = a.id
      where coalesce(l.n, 0) <> a.last_seq or coalesce(l.d, 0) <> a.last_seq or coalesce(l.m, 0) <> a.last_seq`.execute(db)).rows,
    'ledger entries numbered 1..last_seq');
  add((await sql<R>`select a.id as account_id, coalesce(c.s, 0) as expected, a.total_credited as actual
      from ${t('credit_accounts')} a left join (select account_id, sum(amount) s from ${t('credit_ledger')}
        where type = 'grant' or (type = 'adjustment' and amount > 0) group by 1) c on c.account_id = a.id
      where a.total_credited <> coalesce(c.s, 0)`.execute(db)).rows, 'total_credited = grants + positive adjustments');
  add((await sql<R>`select a.id as account_id, coalesce(c.s, 0) as expected, a.total_spent as actual
      from ${t('credit_accounts')} a left join (select account_id, -sum(amount) s from ${t('credit_ledger')}
        where type in ('debit', 'capture', 'refund') group by 1) c on c.account_id = a.id
      where a.total_spent <> coalesce(c.s, 0)`.execute(db)).rows, 'total_spent = debits + captures - refunds');
  // An entry's allocations are its allocation rows or, when it has none, all of it to its grant_id.
  add((await sql<R>`select l.account_id, abs(l.amount) as expected,
        coalesce(sum(x.amount), case when l.grant_id is not null then abs(l.amount) else 0 end) as actual
      from ${t('credit_ledger')} l left join ${t('credit_allocations')} x on x.transaction_id = l.id
      group by l.id, l.account_id, l.amount, l.grant_id
      having abs(l.amount) <> coalesce(sum(x.amount), case when l.grant_id is not null then abs(l.amount) else 0 end)`.execute(db)).rows,
    'entry fully allocated to grants');
  add((await sql<R>`select account_id, 0 as expected, 1 as actual from ${t('credit_holds')}
      where (status = 'captured' and (captured is null or (captured > 0 and transaction_id is null)))
         or (status in ('released', 'expired', 'held') and captured is not null)`.execute(db)).rows, 'hold status agrees with its fields');
  add((await sql<R>`select account_id, amount as expected, remaining as actual from ${t('credit_grants')}
      where source <> 'debt' and (remaining < 0 or remaining > amount)`.execute(db)).rows, '0 <= grant.remaining <= grant.amount');
  add((await sql<R>`select account_id, -amount as expected, remaining as actual from ${t('credit_grants')}
      where source = 'debt' and (remaining > 0 or remaining < -amount)`.execute(db)).rows, '-amount <= debt.remaining <= 0');

  const counts = await sql<{ accounts: number; entries: number; open_holds: number }>`select
      (select count(*) from ${t('credit_accounts')})::int as accounts,
      (select count(*) from ${t('credit_ledger')})::int as entries,
      (select count(*) from ${t('credit_holds')} where status = 'held')::int as open_holds`.execute(db);
  const c = must(counts.rows[0], 'a select without from returns one row');
  return { ok: drift.length === 0, accounts: c.accounts, entries: c.entries, open_holds: c.open_holds, drift };
}
