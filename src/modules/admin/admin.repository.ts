import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { Bucket } from './admin.js';

export interface PointRow {
  at: Date;
  users: string | number;
  granted: string | number;
  spent: string | number;
  held: string | number;
  expired: string | number;
  events: string | number;
}

/**
 * One row per bucket in [from, to), zeros included, so charts have no gaps. Raw SQL (a series
 * joined to per-bucket aggregates): table names are qualified with the schema here. Buckets are
 * cut in UTC whatever the session's time zone.
 */
export async function statsSeries(db: Executor, schema: string, bucket: Bucket, from: Date, to: Date): Promise<PointRow[]> {
  const t = (name: string) => sql.table(`${schema}.${name}`);
  const step = sql.lit(`1 ${bucket}`);
  const b = sql.lit(bucket);
  const trunc = (col: string) => sql`date_trunc(${b}, ${sql.ref(col)}, 'UTC')`;
  const inRange = (col: string) => sql`${sql.ref(col)} >= ${from} and ${sql.ref(col)} < ${to}`;
  const rows = await sql<PointRow>`
    with b as (
      select generate_series(date_trunc(${b}, ${from}::timestamptz, 'UTC'), ${to}::timestamptz - interval '1 microsecond', ${step}::interval) as at
    )
    select b.at,
      coalesce(u.n, 0) as users, coalesce(l.granted, 0) as granted, coalesce(l.spent, 0) as spent,
      coalesce(h.held, 0) as held, coalesce(l.expired, 0) as expired, coalesce(e.n, 0) as events
    from b
    left join (select ${trunc('created_at')} as at, count(*) as n from ${t('users')} where ${inRange('created_at')} group by 1) u on u.at = b.at
    left join (select ${trunc('created_at')} as at,
        sum(case when type = 'grant' or (type = 'adjustment' and amount > 0) then amount else 0 end) as granted,
        -sum(case when type in ('debit', 'capture', 'refund') then amount else 0 end) as spent,
        -sum(case when type = 'expiry' then amount else 0 end) as expired
      from ${t('credit_ledger')} where ${inRange('created_at')} group by 1) l on l.at = b.at
    left join (select ${trunc('created_at')} as at, sum(amount) as held from ${t('credit_holds')} where ${inRange('created_at')} group by 1) h on h.at = b.at
    left join (select ${trunc('occurred_at')} as at, count(*) as n from ${t('usage_events')} where ${inRange('occurred_at')} group by 1) e on e.at = b.at
    order by b.at`.execute(db);
  return rows.rows;
}

/** Net revenue per bucket and currency (payments that succeeded, less what was refunded). */
export async function revenueSeries(db: Executor, schema: string, bucket: Bucket, from: Date, to: Date) {
  const at = sql`coalesce(processed_at, created_at)`;
  return (
    await sql<{ at: Date; currency: string; amount: string | number }>`
      select date_trunc(${sql.lit(bucket)}, ${at}, 'UTC') as at, currency, sum(amount - amount_refunded) as amount
      from ${sql.table(`${schema}.payments`)}
      where status in ('succeeded', 'refunded', 'disputed') and ${at} >= ${from} and ${at} < ${to}
      group by 1, 2`.execute(db)
  ).rows;
}

/** Totals now, across the whole database. */
/** The one row of the totals: counts and sums come back as int8/numeric text or numbers by driver. */
type Num = string | number;
export interface StatsTotalsRow {
  users: Num;
  balance: Num;
  held: Num;
  credited: Num;
  spent: Num;
  expired: Num;
  events: Num;
  unmatched_payments: Num;
  failed_webhooks: Num;
  rejected_webhooks: Num;
}

export async function statsTotals(db: Executor, schema: string) {
  const t = (name: string) => sql.table(`${schema}.${name}`);
  const one = (
    await sql<StatsTotalsRow>`select
      (select count(*) from ${t('users')}) as users,
      (select coalesce(sum(balance), 0) from ${t('credit_accounts')}) as balance,
      (select coalesce(sum(held), 0) from ${t('credit_accounts')}) as held,
      (select coalesce(sum(total_credited), 0) from ${t('credit_accounts')}) as credited,
      (select coalesce(sum(total_spent), 0) from ${t('credit_accounts')}) as spent,
      (select coalesce(-sum(amount), 0) from ${t('credit_ledger')} where type = 'expiry') as expired,
      (select count(*) from ${t('usage_events')}) as events,
      (select count(*) from ${t('payments')} where match_status = 'unmatched') as unmatched_payments,
      (select count(*) from ${t('webhook_events')} where status = 'failed') as failed_webhooks,
      (select count(*) from ${t('webhook_events')} where status = 'rejected') as rejected_webhooks`.execute(db)
  ).rows[0];
  if (!one) throw new Error('invariant broken: a select without from returns one row');
  const revenue = (
    await sql<{ currency: string; amount: string | number }>`select currency, sum(amount - amount_refunded) as amount
      from ${t('payments')} where status in ('succeeded', 'refunded', 'disputed') group by 1`.execute(db)
  ).rows;
  const jobs = (await sql<{ status: string; n: string | number }>`select status, count(*) as n from ${t('jobs')} group by 1`.execute(db)).rows;
  return { one, revenue, jobs };
}
