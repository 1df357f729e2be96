import { type RunStatement, statement, type WritePart, writePlaceholders, writeValues } from '../../db/statements.js';
import { must } from '../../lib/must.js';
import type { JsonRow, JsonWriteRow, RowOf } from '../../db/rows.js';
import type { EventAnswerRow } from './billing.js';

/** The load's rows come through json_agg (src/db/rows.ts, JsonRow): numeric columns named as such. */
export type ModelRow = JsonRow<RowOf<'cost_models'>, 'base_rate'>;
export type QuotaRow = JsonRow<RowOf<'daily_quota_usage'>, 'consumed'>;
export type GuardRow = JsonRow<RowOf<'budget_guards'>>;
export type OverageRow = JsonRow<RowOf<'overage_charges'>, 'unit_amount'>;
/** A primary, live subscription with what its plan says about usage (the `subs` select below). */
export type SubRow = JsonRow<Pick<RowOf<'subscriptions'>, 'id' | 'user_id' | 'plan_id' | 'status' | 'current_period_start' | 'current_period_end' | 'pay_as_you_go'>> &
  JsonRow<Pick<RowOf<'plans'>, 'pool_mode' | 'overage_unit_amount' | 'currency'>, 'overage_unit_amount'> & { plan_payg: boolean };

export interface BillingState {
  users: { id: string; time_zone: string | null }[];
  models: ModelRow[];
  subs: SubRow[];
  quotas: QuotaRow[];
  /** Events already recorded under the batch's action hashes: their rows (see eventAnswer). */
  seen: (EventAnswerRow & { request_hash: string })[];
  guards: GuardRow[];
  overages: OverageRow[];
}

interface BillingQuery {
  userIds: string[];
  metrics: string[];
  /** Quota windows that end after this (ISO instant) and start before `quotaTo`. */
  quotaFrom: string;
  quotaTo: string;
  keys: { userId: string; actionHash: string }[];
}

const billingParams = (q: BillingQuery): unknown[] => [
  q.userIds,
  q.metrics,
  q.quotaFrom,
  q.quotaTo,
  q.keys.map((k) => k.userId),
  q.keys.map((k) => k.actionHash),
];

function billingState(row: Partial<Record<keyof BillingState, unknown[] | null>> | undefined): BillingState {
  return {
    users: (row?.users ?? []) as BillingState['users'],
    models: (row?.models ?? []) as BillingState['models'],
    subs: (row?.subs ?? []) as BillingState['subs'],
    quotas: (row?.quotas ?? []) as BillingState['quotas'],
    seen: (row?.seen ?? []) as BillingState['seen'],
    guards: (row?.guards ?? []) as BillingState['guards'],
    overages: (row?.overages ?? []) as BillingState['overages'],
  };
}

/** The rows each write statement below takes (its jsonb_to_recordset column list, in the same order). */
export type EventWrite = JsonWriteRow<
  'usage_events',
  | 'id' | 'user_id' | 'metric' | 'quantity' | 'complexity_score' | 'action_hash' | 'request_hash' | 'subscription_id' | 'free_units' | 'cost'
  | 'charged' | 'overage' | 'transaction_id' | 'result' | 'metadata' | 'occurred_at' | 'created_at' | 'workspace_id',
  'quantity' | 'complexity_score' | 'free_units'
>;
export type QuotaWrite = JsonWriteRow<'daily_quota_usage', 'user_id' | 'metric' | 'date_key' | 'window_start' | 'window_end' | 'consumed' | 'quota', 'consumed'>;
export type CounterWrite = JsonWriteRow<
  'usage_counters',
  'user_id' | 'metric' | 'window' | 'window_start' | 'window_end' | 'quantity' | 'credits' | 'overage' | 'events',
  'quantity'
>;
export type OverageWrite = JsonWriteRow<
  'overage_charges',
  'id' | 'user_id' | 'subscription_id' | 'metric' | 'period_start' | 'period_end' | 'credits' | 'amount' | 'unit_amount' | 'currency'
>;
/** `spend` is the new current_window_spend. */
export type GuardWrite = JsonWriteRow<'budget_guards', 'id' | 'window_start' | 'window_end' | 'alerted_80_at' | 'alerted_100_at'> & { spend: number };

export interface BillingWrites {
  events: EventWrite[];
  quotas: QuotaWrite[];
  counters: CounterWrite[];
  overages: OverageWrite[];
  guards: GuardWrite[];
}

/**
 * The billing side of a usage batch: one statement to load what pricing needs for every user of
 * the batch, one statement of data-modifying CTEs to write it back. The ledger side is credits'
 * BatchSql, in the same transaction.
 */
/** The part that updates existing rows (budget guards): it also gets its ids (writeValues). */
const UPDATES = new Set([16]);

export class UsageSql {
  private readonly loadText: string;
  private readonly checkText: string;
  private readonly writeTexts = new Map<number, string>();

  /** `ledgerColumns`: the ledger port's snapshot select list (credits.port.ts), for POST /v1/check. */
  constructor(
    private readonly schema: string,
    ledgerColumns: (accountParam: string, dueByParam: string) => string,
  ) {
    const t = this.t.bind(this);
    const billing = `
      (select json_agg(json_build_object('id', u.id, 'time_zone', u.time_zone)) from ${t('users')} u where u.id = any($1::text[])) as users,
      (select json_agg(c) from ${t('cost_models')} c where c.metric = any($2::text[])) as models,
      (select json_agg(x) from (
        select s.id, s.user_id, s.plan_id, s.status, s.current_period_start, s.current_period_end, s.pay_as_you_go,
               p.pay_as_you_go as plan_payg, p.pool_mode, p.overage_unit_amount, p.currency
        from ${t('subscriptions')} s join ${t('plans')} p on p.id = s.plan_id
        where s.user_id = any($1::text[]) and s.is_primary and s.status <> 'canceled') x) as subs,
      (select json_agg(q) from ${t('daily_quota_usage')} q
        where q.user_id = any($1::text[]) and q.metric = any($2::text[])
          and q.window_end > $3::timestamptz and q.window_start < $4::timestamptz) as quotas,
      (select json_agg(e) from (
        select e.id, e.user_id, e.workspace_id, e.metric, e.quantity, e.action_hash, e.request_hash, e.cost, e.charged, e.free_units, e.overage,
               e.transaction_id, e.subscription_id, e.result
        from unnest($5::text[], $6::text[]) as k(user_id, action_hash)
        join ${t('usage_events')} e on e.user_id = k.user_id and e.action_hash = k.action_hash) e) as seen,
      (select json_agg(g) from ${t('budget_guards')} g where g.user_id = any($1::text[])) as guards,
      (select json_agg(o) from ${t('overage_charges')} o
        join ${t('subscriptions')} s on s.id = o.subscription_id and o.period_start = s.current_period_start
        where s.user_id = any($1::text[]) and s.status <> 'canceled' and o.metric = any($2::text[])) as overages`;
    this.loadText = `select ${billing}`;
    // POST /v1/check answers from one round trip: the account's ledger state and billing's together.
    this.checkText = `select ${ledgerColumns('$7', '$8')}, ${billing}`;
  }

  private t(name: string): string {
    return `"${this.schema}"."${name}"`;
  }

  async load(run: RunStatement, q: BillingQuery): Promise<BillingState> {
    const [row] = await run<Record<keyof BillingState, unknown[] | null>>(statement('usage_load', this.loadText, billingParams(q)));
    return billingState(row);
  }

  /** One user's ledger state (account, live grants, holds due to expire) and billing state, at once. */
  async loadForCheck(
    run: RunStatement,
    q: BillingQuery & { accountId: string; now: Date },
  ): Promise<{ ledger: { account: unknown; grants: unknown; holds: unknown }; billing: BillingState }> {
    const [row] = await run<Record<keyof BillingState, unknown[] | null> & { account: unknown; grants: unknown; holds: unknown }>(
      statement('usage_check', this.checkText, [...billingParams(q), q.accountId, q.now]),
    );
    return { ledger: { account: row?.account ?? null, grants: row?.grants ?? null, holds: row?.holds ?? null }, billing: billingState(row) };
  }

  async write(run: RunStatement, w: BillingWrites): Promise<void> {
    const parts: WritePart[] = [
      { bit: 1, rows: w.events },
      { bit: 2, rows: w.quotas },
      { bit: 4, rows: w.counters },
      { bit: 8, rows: w.overages },
      { bit: 16, rows: w.guards },
    ].filter((p) => p.rows.length > 0);
    if (parts.length === 0) return;
    const mask = parts.reduce((m, p) => m | p.bit, 0);
    let text = this.writeTexts.get(mask);
    if (!text) {
      text = this.writeText(parts.map((p) => p.bit));
      this.writeTexts.set(mask, text);
    }
    await run(statement(`usage_write_${mask}`, text, writeValues(parts, UPDATES)));
  }

  private writeText(bits: number[]): string {
    const t = this.t.bind(this);
    const cte: Record<number, (p: string, ids: string) => string> = {
      1: (p) => `events as (
        insert into ${t('usage_events')} (id, user_id, metric, quantity, complexity_score, action_hash, request_hash, subscription_id,
          free_units, cost, charged, overage, transaction_id, result, metadata, occurred_at, created_at, workspace_id)
        select * from jsonb_to_recordset(${p}::jsonb) as x(id text, user_id text, metric text, quantity numeric, complexity_score numeric,
          action_hash text, request_hash text, subscription_id text, free_units numeric, cost int8, charged int8, overage int8,
          transaction_id text, result jsonb, metadata jsonb, occurred_at timestamptz, created_at timestamptz, workspace_id text))`,
      2: (p) => `quotas as (
        insert into ${t('daily_quota_usage')} (user_id, metric, date_key, window_start, window_end, consumed, quota)
        select * from jsonb_to_recordset(${p}::jsonb) as x(user_id text, metric text, date_key date, window_start timestamptz,
          window_end timestamptz, consumed numeric, quota int8)
        on conflict (user_id, metric, window_start) do update set consumed = excluded.consumed, quota = excluded.quota, updated_at = now())`,
      4: (p) => `counters as (
        insert into ${t('usage_counters')} as c (user_id, metric, "window", window_start, window_end, quantity, credits, overage, events)
        select * from jsonb_to_recordset(${p}::jsonb) as x(user_id text, metric text, "window" text, window_start timestamptz,
          window_end timestamptz, quantity numeric, credits int8, overage int8, events int8)
        on conflict (user_id, metric, "window", window_start) do update set
          quantity = c.quantity + excluded.quantity, credits = c.credits + excluded.credits,
          overage = c.overage + excluded.overage, events = c.events + excluded.events, updated_at = now())`,
      8: (p) => `overages as (
        insert into ${t('overage_charges')} (id, user_id, subscription_id, metric, period_start, period_end, credits, amount,
          unit_amount, currency)
        select * from jsonb_to_recordset(${p}::jsonb) as x(id text, user_id text, subscription_id text, metric text,
          period_start timestamptz, period_end timestamptz, credits int8, amount int8, unit_amount numeric, currency text)
        on conflict (subscription_id, metric, period_start) do update set
          credits = excluded.credits, amount = excluded.amount, updated_at = now())`,
      16: (p, ids) => `guards as (
        update ${t('budget_guards')} g set window_start = x.window_start, window_end = x.window_end, current_window_spend = x.spend,
          alerted_80_at = x.alerted_80_at, alerted_100_at = x.alerted_100_at, updated_at = now()
        from jsonb_to_recordset(${p}::jsonb) as x(id text, window_start timestamptz, window_end timestamptz, spend int8,
          alerted_80_at timestamptz, alerted_100_at timestamptz)
        where g.id = x.id and g.id = any(${ids}::text[]))`,
    };
    const ctes = writePlaceholders(bits, UPDATES).map((p, i) => must(cte[must(bits[i], 'a placeholder per part')], 'a statement per part')(p.rows, p.ids));
    return `with ${ctes.join(',\n')}\nselect 1`;
  }
}
