import { newId } from '../../lib/ids.js';
import { type BatchContext, HISTORY_BATCH_SCALE, type TableStep } from './import.js';
import { importMapInsert } from './import.repository.js';
import { bool, date, freshRows, int, json, keepHistory, minorUnits, ownerOf, ownersOf, str, Tally } from './import.rows.js';

/**
 * Seed 000's billing tables (docs/import.md, app-builder): plans and subscriptions into billing,
 * point transactions and consumption events into read-only history, budget guards into Tally's.
 * Portable SQL: the same select lists run on SQLite and PostgreSQL.
 */
const SHAPE = 'app-builder';
const ownerCheck = (t: (n: string) => string, table: string) => `exists (select 1 from ${t('users')} u where u.id = ${t(table)}.user_id) as owner_exists`;

/** A plan's slug from its name (Tally's slugs: lower case, digits, `_` and `-`). */
const slugOf = (name: string) => name.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 64) || 'plan';

export const plans: TableStep = {
  table: 'plans',
  key: 'id',
  columns: () => 'id, name, description, bc_monthly, rc_monthly, usage_bonus_rate, trial_days, shared_mode, payg_enabled, price_usd, is_active, created_at',
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'plans', rows, 'id', tally);
    const maps = [];
    for (const r of fresh) {
      const id = String(r.id);
      const price = minorUnits(r.price_usd);
      const trial = int(r.trial_days);
      const mode = str(r.shared_mode);
      const bonus = str(r.usage_bonus_rate ?? '0');
      if (price === null || price < 0 || trial === null || trial < 0 || trial > 365 || (mode !== 'shared_pool' && mode !== 'hybrid') || !/^\d+(\.\d+)?$/.test(bonus ?? '') || Number(bonus) > 0.9999) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'plans', source_id: id, rule: 'A plan whose price, trial, mode or bonus rate Tally cannot read exactly is not imported (nor its subscriptions)', details: { price_usd: r.price_usd, trial_days: r.trial_days, shared_mode: r.shared_mode } });
        continue;
      }
      const row = await ctx.trx
        .insertInto('plans')
        .values({
          id,
          slug: slugOf(String(r.name)),
          name: String(r.name).slice(0, 100),
          description: str(r.description)?.slice(0, 2000) ?? null,
          pool_mode: mode,
          pay_as_you_go: bool(r.payg_enabled),
          usage_bonus_rate: String(bonus),
          trial_days: trial,
          price_monthly: price,
          is_active: bool(r.is_active),
          metadata: JSON.stringify({ imported_from: SHAPE, source_id: id }),
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'plans', source_id: id, rule: 'Tally already has a plan with this id, name or slug: not imported (nor its subscriptions)', details: { name: r.name } });
        continue;
      }
      // bc_monthly / rc_monthly: the plan's monthly allowances of class BC and RC.
      const allowances = [
        ['BC', int(r.bc_monthly) ?? 0],
        ['RC', int(r.rc_monthly) ?? 0],
      ].filter(([, n]) => (n as number) > 0);
      if (allowances.length > 0) {
        await ctx.trx
          .insertInto('plan_allowances')
          .values(allowances.map(([cls, amount]) => ({ plan_id: id, class: String(cls), amount: amount as number, window: 'monthly', rollover_policy: 'none' })))
          .execute();
      }
      maps.push({ table: 'plans', sourceId: id, targetTable: 'plans', targetId: id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

/** point_transactions and consumption_events: history beside the ledger, never replayed into balances. */
function historyStep(table: 'point_transactions' | 'consumption_events'): TableStep {
  return {
    table,
    key: 'id',
    batchScale: HISTORY_BATCH_SCALE,
    columns: (t) =>
      table === 'point_transactions'
        ? `id, user_id, type, change as amount, description, balance_after, metadata_json, created_at, ${ownerCheck(t, table)}`
        : `id, user_id, allowance_id, type, amount, complexity_score, action_hash, metadata_json, created_at, ${ownerCheck(t, table)}`,
    async write(ctx, rows) {
      const tally = new Tally();
      const owners = await ownersOf(ctx, 'users', rows, 'user_id');
      const values = [];
      for (const r of rows) {
        const owner = ownerOf(owners, r, 'user_id', tally);
        if (!owner) continue;
        const amount = int(r.amount);
        if (amount === null) {
          tally.skip('unknown_value');
          ctx.anomaly({ kind: 'unknown_value', table, source_id: String(r.id), rule: 'An amount that is not a whole number of credits is not kept', details: { amount: r.amount } });
          continue;
        }
        const consumption = table === 'consumption_events';
        values.push({
          id: newId('importedHistory'),
          source: ctx.source,
          source_table: table,
          source_id: String(r.id),
          account_id: `acc_u_${owner.target_id}`,
          user_id: owner.target_id,
          opening_entry_id: str(owner.facts.opening_entry),
          // A consumption event spent `amount`: kept signed, as a debit would be.
          type: consumption ? `consumption:${String(r.type)}`.slice(0, 64) : String(r.type).slice(0, 64),
          amount: consumption ? -amount : amount,
          reason: str(consumption ? r.type : r.description)?.slice(0, 2000) ?? null,
          metadata: consumption
            ? { allowance_id: str(r.allowance_id), complexity_score: int(r.complexity_score), action_hash: str(r.action_hash), metadata: json(r.metadata_json) }
            : { balance_after: int(r.balance_after), metadata: json(r.metadata_json) },
          occurred_at: date(r.created_at),
        });
      }
      await keepHistory(ctx, values, tally);
      return tally.outcome;
    },
  };
}

export const pointTransactions = historyStep('point_transactions');
export const consumptionEvents = historyStep('consumption_events');

const SUB_STATUS = new Set(['trialing', 'active', 'past_due', 'canceled']);

export const subscriptions: TableStep = {
  table: 'user_subscriptions',
  key: 'id',
  columns: (t) => `id, user_id, plan_id, status, payg_enabled, is_primary, current_period_start, current_period_end, trial_ends_at, canceled_at, metadata_json, created_at, updated_at,
    ${ownerCheck(t, 'user_subscriptions')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'user_subscriptions', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const planMaps = await ownersOf(ctx, 'plans', fresh, 'plan_id');
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const plan = planMaps.get(String(r.plan_id));
      if (!plan) {
        tally.skip('orphan');
        continue;
      }
      const status = String(r.status ?? '');
      const start = date(r.current_period_start);
      if (!SUB_STATUS.has(status) || !start) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'user_subscriptions', source_id: sid, rule: 'A subscription whose status or period Tally cannot read is not imported', details: { status: r.status, current_period_start: r.current_period_start } });
        continue;
      }
      // No end: the plan's allowances are monthly, so the period is the month from its start.
      const end = date(r.current_period_end) ?? new Date(new Date(start).setUTCMonth(start.getUTCMonth() + 1));
      const canceled = status === 'canceled';
      const id = newId('subscription');
      const row = await ctx.trx
        .insertInto('subscriptions')
        .values({
          id,
          user_id: owner.target_id,
          plan_id: plan.target_id,
          status,
          is_primary: bool(r.is_primary),
          pay_as_you_go: bool(r.payg_enabled),
          current_period_start: start,
          current_period_end: end > start ? end : new Date(start.getTime() + 1000),
          anchor_at: start,
          trial_end: date(r.trial_ends_at),
          canceled_at: date(r.canceled_at),
          ended_at: canceled ? (date(r.canceled_at) ?? date(r.updated_at) ?? ctx.now) : null,
          // The current window's allowance arrived as grants (the opening): the next opens at the period's end.
          cycles_due_at: canceled ? null : end,
          metadata: JSON.stringify({ imported_from: SHAPE, source_id: sid, metadata: json(r.metadata_json) }),
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'user_subscriptions', source_id: sid, rule: 'Tally allows one live primary subscription per user: a second is not imported', details: { user_id: owner.target_id, plan_id: plan.target_id } });
        continue;
      }
      maps.push({ table: 'user_subscriptions', sourceId: sid, targetTable: 'subscriptions', targetId: id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

/** The calendar month (UTC) around an instant: the window an imported guard's spend belongs to. */
function monthOf(at: Date): { start: Date; end: Date } {
  return { start: new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1)), end: new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1)) };
}

export const budgetGuards: TableStep = {
  table: 'budget_guards',
  key: 'id',
  columns: (t) => `id, user_id, monthly_cap, behavior, notify, currency, current_window_spend, created_at, ${ownerCheck(t, 'budget_guards')}`,
  async write(ctx: BatchContext, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'budget_guards', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const maps = [];
    const window = monthOf(ctx.asOf);
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const cap = minorUnits(r.monthly_cap);
      const spend = minorUnits(r.current_window_spend);
      const behavior = String(r.behavior ?? 'throttle');
      const currency = (str(r.currency) ?? 'usd').toLowerCase();
      if (cap === null || cap < 0 || spend === null || spend < 0 || (behavior !== 'suspend' && behavior !== 'throttle') || !/^[a-z]{3}$/.test(currency)) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'budget_guards', source_id: sid, rule: 'A guard whose cap, spend, behaviour or currency Tally cannot read exactly is not imported', details: { monthly_cap: r.monthly_cap, behavior: r.behavior } });
        continue;
      }
      const id = newId('budgetGuard');
      const row = await ctx.trx
        .insertInto('budget_guards')
        .values({
          id,
          user_id: owner.target_id,
          monthly_cap: cap,
          currency,
          behavior,
          notify: bool(r.notify),
          window_start: window.start,
          window_end: window.end,
          // Tally keeps spend in micro minor units (exact); the source kept cents.
          current_window_spend: spend * 1_000_000,
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        // The scan named the source's second guards (duplicate_guard); a guard Tally had is a conflict.
        tally.skip('duplicate');
        continue;
      }
      maps.push({ table: 'budget_guards', sourceId: sid, targetTable: 'budget_guards', targetId: id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

const PAYMENT_STATUS = new Set(['created', 'requires_action', 'processing', 'succeeded', 'failed']);
const PROVIDERS = new Set(['stripe', 'paypal', 'creem']);

/**
 * payments: kept as Tally payments with `credits` 0 — the points they bought are inside the opening
 * balance, so a later refund webhook claws back nothing the import did not grant (as for 001).
 */
export const payments: TableStep = {
  table: 'payments',
  key: 'id',
  columns: (t) => `id, user_id, provider, status, amount, currency, package_id, points, provider_payment_id, provider_customer_id, provider_receipt_url,
    raw_provider_payload, metadata_json, point_transaction_id, created_at, processed_at, ${ownerCheck(t, 'payments')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'payments', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const amount = int(r.amount);
      const currency = (str(r.currency) ?? 'usd').toLowerCase();
      const status = String(r.status ?? '');
      const provider = String(r.provider ?? '');
      if (amount === null || amount < 0 || !/^[a-z]{3}$/.test(currency) || !PAYMENT_STATUS.has(status) || !PROVIDERS.has(provider) || !str(r.provider_payment_id)) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'payments', source_id: sid, rule: 'A payment whose amount, currency, status or provider Tally cannot take exactly is not imported', details: { amount: r.amount, currency: r.currency, status: r.status, provider: r.provider } });
        continue;
      }
      const id = newId('payment');
      const row = await ctx.trx
        .insertInto('payments')
        .values({
          id,
          user_id: owner.target_id,
          provider,
          provider_payment_id: String(r.provider_payment_id),
          provider_customer_id: str(r.provider_customer_id),
          status,
          amount,
          currency,
          credits: 0,
          receipt_url: str(r.provider_receipt_url),
          raw_payload: JSON.stringify(json(r.raw_provider_payload)),
          metadata: JSON.stringify({ imported_from: SHAPE, source_id: sid, source_points: int(r.points), package_id: str(r.package_id), point_transaction_id: str(r.point_transaction_id), metadata: json(r.metadata_json) }),
          processed_at: date(r.processed_at),
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'payments', source_id: sid, rule: 'Tally already has a payment with this provider id: not imported twice', details: { provider, provider_payment_id: r.provider_payment_id } });
        continue;
      }
      maps.push({ table: 'payments', sourceId: sid, targetTable: 'payments', targetId: id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};
