import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import { newId } from '../../lib/ids.js';
import { compileFormula } from '../billing/cost-formula.js';
import { ANOMALIES_LISTED, type Anomaly, type BatchContext, HISTORY_BATCH_SCALE, type ReviewItem, type TableStep } from './import.js';
import { ownerUserId } from './import.app-builder.work.js';
import { importMapFind, importMapInsert, type MapRow } from './import.repository.js';
import { date, type HistoryRow, int, json, keepHistory, ownerOf, ownersOf, str, Tally } from './import.rows.js';
import type { SourceDb } from './import.source.js';

/**
 * Seed 000's derived usage and pricing tables (docs/import.md, app-builder, "Derived usage and
 * pricing"). What 000 measured or summed (meter readings, period summaries) and the overage it
 * billed in money are kept as read-only history beside the ledger, linked to the user's opening
 * entry: none moves a credit (the balance arrived as the opening entry) and none is fed to Tally's
 * billing, which would otherwise count, invoice or charge it again. The daily "autofix" counts
 * continue as Tally's daily free quota of metric `autofix`; the cost models arrive **inactive**,
 * because 000's base rate is money and Tally's is credits. Portable SQL (SQLite and PostgreSQL).
 */
const SHAPE = 'app-builder';
const userExists = (t: (n: string) => string, table: string) => `exists (select 1 from ${t('users')} u where u.id = ${t(table)}.user_id) as owner_exists`;

/** A decimal as its exact text (NUMERIC arrives as text from PostgreSQL; SQLite may answer a number). */
const decimal = (v: unknown): string | null => {
  const s = str(v)?.trim() ?? null;
  return s !== null && /^-?\d+(\.\d+)?(e-?\d+)?$/i.test(s) ? s : null;
};

interface Owner {
  userId: string;
  opening: string | null;
  /** The row named no user: it is the `--owner`'s (000 is a single-user app). */
  attributed: boolean;
}

/**
 * The owners of a batch of rows whose `user_id` may be null (readings and summaries of a workspace,
 * or of a user 000 deleted: its foreign key is ON DELETE SET NULL). A row with a user belongs to that
 * user as imported; a row without one to `--owner` (null without it: `owner_not_imported`).
 */
async function ownersWithDefault(ctx: BatchContext, rows: Record<string, unknown>[], tally: Tally): Promise<Map<string, Owner>> {
  const found = await ownersOf(ctx, 'users', rows, 'user_id');
  const out = new Map<string, Owner>();
  let fallback: Owner | null | undefined;
  for (const r of rows) {
    if (r.user_id === null || r.user_id === undefined) {
      if (fallback === undefined) {
        const id = await ownerUserId(ctx);
        // The owner's opening entry, when the owner is a user this source brought (000 keeps its ids).
        const map = id === null ? undefined : (await importMapFind(ctx.trx, ctx.source, 'users', [id])).get(id);
        fallback = id === null ? null : { userId: id, opening: str(map?.facts.opening_entry), attributed: true };
      }
      if (fallback) out.set(String(r.id), fallback);
      else tally.skip('owner_not_imported');
      continue;
    }
    const owner = ownerOf(found, r, 'user_id', tally);
    if (owner) out.set(String(r.id), { userId: owner.target_id, opening: str(owner.facts.opening_entry), attributed: false });
  }
  return out;
}

/** A history row of this shape: never an amount of credits (000 priced these in money or not at all). */
function historyRow(ctx: BatchContext, table: string, r: Record<string, unknown>, owner: Owner, type: string, reason: string | null, metadata: Record<string, unknown>, at: unknown): HistoryRow {
  return {
    id: newId('importedHistory'),
    source: ctx.source,
    source_table: table,
    source_id: String(r.id),
    account_id: `acc_u_${owner.userId}`,
    user_id: owner.userId,
    opening_entry_id: owner.opening,
    type: type.slice(0, 64),
    amount: 0,
    reason: reason?.slice(0, 2000) ?? null,
    metadata: { ...metadata, ...(owner.attributed ? { source_user_id: null, attributed_to_owner: true } : {}) },
    occurred_at: date(at),
  };
}

/** usage_meter_readings: what 000 measured per workspace, metric and window. History, quantities exact. */
export const meterReadings: TableStep = {
  table: 'usage_meter_readings',
  key: 'id',
  batchScale: HISTORY_BATCH_SCALE,
  columns: (t) => `id, workspace_id, user_id, metric, value, period, window_start, window_end, metadata_json, created_at, ${userExists(t, 'usage_meter_readings')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const owners = await ownersWithDefault(ctx, rows, tally);
    const values = [];
    for (const r of rows) {
      const owner = owners.get(String(r.id));
      if (!owner) continue;
      const value = decimal(r.value);
      if (value === null) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'usage_meter_readings', source_id: String(r.id), rule: 'A reading whose value is not a number is not kept', details: { value: r.value } });
        continue;
      }
      values.push(
        historyRow(ctx, 'usage_meter_readings', r, owner, `meter:${String(r.metric)}`, null, {
          workspace_id: str(r.workspace_id),
          metric: str(r.metric),
          value,
          period: str(r.period),
          window_start: date(r.window_start),
          window_end: date(r.window_end),
          metadata: json(r.metadata_json),
        }, r.created_at),
      );
    }
    await keepHistory(ctx, values, tally);
    return tally.outcome;
  },
};

/** usage_summaries: 000's closed periods per workspace and metric (value and overage money, exact). History. */
export const usageSummaries: TableStep = {
  table: 'usage_summaries',
  key: 'id',
  batchScale: HISTORY_BATCH_SCALE,
  columns: (t) => `id, workspace_id, user_id, metric, period, value, overage_amount, currency, created_at, ${userExists(t, 'usage_summaries')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const owners = await ownersWithDefault(ctx, rows, tally);
    const values = [];
    for (const r of rows) {
      const owner = owners.get(String(r.id));
      if (!owner) continue;
      const value = decimal(r.value);
      const overage = r.overage_amount === null || r.overage_amount === undefined ? null : decimal(r.overage_amount);
      if (value === null || (overage === null && r.overage_amount !== null && r.overage_amount !== undefined)) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'usage_summaries', source_id: String(r.id), rule: 'A summary whose value or overage amount is not a number is not kept', details: { value: r.value, overage_amount: r.overage_amount } });
        continue;
      }
      values.push(
        historyRow(ctx, 'usage_summaries', r, owner, `summary:${String(r.metric)}`, null, {
          workspace_id: str(r.workspace_id),
          metric: str(r.metric),
          period: str(r.period),
          value,
          overage_amount: overage,
          currency: str(r.currency)?.toLowerCase() ?? null,
        }, r.created_at),
      );
    }
    await keepHistory(ctx, values, tally);
    return tally.outcome;
  },
};

const OVERAGE_STATUS = new Set(['pending', 'invoiced', 'paid', 'waived']);

/**
 * overage_charges: money 000 billed (or meant to bill) for usage beyond a plan. Kept as history with
 * its amount exactly, in its currency, linked to the user's opening entry and to its summary's
 * history row. Never a Tally `overage_charges` row: those accrue and are invoiced by Tally's own
 * period closing, which would bill 000's charge a second time; never a credit movement.
 */
export const overageCharges: TableStep = {
  table: 'overage_charges',
  key: 'id',
  batchScale: HISTORY_BATCH_SCALE,
  columns: (t) => `id, user_id, workspace_id, metric, amount, currency, status, usage_summary_id, metadata_json, generated_at, invoiced_at, settled_at, ${userExists(t, 'overage_charges')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const owners = await ownersOf(ctx, 'users', rows, 'user_id');
    const summaries = await summaryRows(ctx, rows.flatMap((r) => (r.usage_summary_id === null || r.usage_summary_id === undefined ? [] : [String(r.usage_summary_id)])));
    const values = [];
    for (const r of rows) {
      const found: MapRow | null = ownerOf(owners, r, 'user_id', tally);
      if (!found) continue;
      const owner: Owner = { userId: found.target_id, opening: str(found.facts.opening_entry), attributed: false };
      const amount = decimal(r.amount);
      const currency = str(r.currency)?.toLowerCase() ?? '';
      const status = String(r.status ?? '');
      if (amount === null || amount.startsWith('-') || !/^[a-z]{3}$/.test(currency) || !OVERAGE_STATUS.has(status)) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'overage_charges', source_id: String(r.id), rule: 'An overage charge whose amount, currency or status Tally cannot read exactly is not kept (the report holds it)', details: { amount: r.amount, currency: r.currency, status: r.status } });
        continue;
      }
      const summaryId = str(r.usage_summary_id);
      values.push(
        historyRow(ctx, 'overage_charges', r, owner, `overage:${String(r.metric)}`, `overage ${amount} ${currency} (${status})`, {
          metric: str(r.metric),
          // Money, exactly as 000 kept it (NUMERIC(12,4)), in its currency: never converted to credits.
          money_amount: amount,
          currency,
          status,
          workspace_id: str(r.workspace_id),
          usage_summary_id: summaryId,
          summary_history_id: summaryId === null ? null : (summaries.get(summaryId) ?? null),
          generated_at: date(r.generated_at),
          invoiced_at: date(r.invoiced_at),
          settled_at: date(r.settled_at),
          metadata: json(r.metadata_json),
        }, r.generated_at),
      );
    }
    await keepHistory(ctx, values, tally);
    return tally.outcome;
  },
};

/** The history rows these source summaries became (source summary id → history id). */
async function summaryRows(ctx: BatchContext, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await ctx.trx
    .selectFrom('imported_credit_history')
    .select(['id', 'source_id'])
    .where('source', '=', ctx.source)
    .where('source_table', '=', 'usage_summaries')
    .where('source_id', 'in', [...new Set(ids)])
    .execute();
  return new Map(rows.map((r) => [r.source_id, r.id]));
}

/** The metric of Tally's daily free quota that 000's autofix allowance is (TALLY_FREE_QUOTA_METRICS' default). */
const AUTOFIX_METRIC = 'autofix';

/**
 * allowance_daily_autofix → `daily_quota_usage` of metric `autofix`: the day's window is the date in
 * the user's zone (UTC when unset, as migration 0008 placed older rows), so today's row is the quota
 * the user is using now and continues from 000's count; past days stay as the record of their day.
 */
export const dailyAutofix: TableStep = {
  table: 'allowance_daily_autofix',
  key: 'id',
  batchScale: HISTORY_BATCH_SCALE,
  columns: (t) => `id, user_id, date_key, consumed, "limit" as limit_, created_at, ${userExists(t, 'allowance_daily_autofix')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const owners = await ownersOf(ctx, 'users', rows, 'user_id');
    const values = [];
    for (const r of rows) {
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const consumed = int(r.consumed);
      const quota = int(r.limit_);
      const key = /^\d{4}-\d{2}-\d{2}$/.test(String(r.date_key ?? '')) ? String(r.date_key) : null;
      if (key === null || Number.isNaN(new Date(`${key}T00:00:00Z`).getTime()) || consumed === null || consumed < 0 || quota === null || quota < 0) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'allowance_daily_autofix', source_id: String(r.id), rule: 'A day that is not YYYY-MM-DD, or a negative count or limit, is not imported', details: { date_key: r.date_key, consumed: r.consumed, limit: r.limit_ } });
        continue;
      }
      // Used beyond its limit (the scan reported it: overused_allowance): the day's quota is used up, no more.
      values.push({ source_id: String(r.id), user_id: owner.target_id, date_key: key, consumed: Math.min(consumed, quota), quota, source_consumed: consumed, created_at: date(r.created_at) ?? ctx.now });
    }
    const kept = await insertQuotas(ctx, values);
    const maps = [];
    for (const v of values) {
      const at = kept.get(`${v.user_id}\n${v.date_key}`);
      if (!at) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'allowance_daily_autofix', source_id: v.source_id, rule: "Tally already has this user's autofix quota for that day: the source's count is not added to it", details: { date_key: v.date_key } });
        continue;
      }
      maps.push({ table: 'allowance_daily_autofix', sourceId: v.source_id, targetTable: 'daily_quota_usage', targetId: `${v.user_id}/${AUTOFIX_METRIC}/${at}`, facts: { source_consumed: v.source_consumed, limit: v.quota } });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

/** One statement a batch; answers `user\ndate` → window start of the rows written. */
async function insertQuotas(ctx: BatchContext, values: { user_id: string; date_key: string; consumed: number; quota: number; created_at: Date }[]): Promise<Map<string, string>> {
  if (values.length === 0) return new Map();
  const json = JSON.stringify(values);
  const t = (n: string) => sql.table(`${ctx.schema}.${n}`);
  const { rows } = await sql<{ user_id: string; date_key: string; window_start: Date | string }>`
    insert into ${t('daily_quota_usage')} (user_id, metric, date_key, window_start, window_end, consumed, quota, created_at)
    select r.user_id, ${AUTOFIX_METRIC}, r.date_key, r.date_key::timestamp at time zone coalesce(u.time_zone, 'UTC'),
      (r.date_key + 1)::timestamp at time zone coalesce(u.time_zone, 'UTC'), r.consumed, r.quota, r.created_at
    from jsonb_to_recordset(${json}::jsonb) as r(user_id text, date_key date, consumed numeric, quota int8, created_at timestamptz)
    join ${t('users')} u on u.id = r.user_id
    on conflict do nothing
    returning user_id, date_key::text as date_key, window_start`.execute(ctx.trx);
  return new Map(rows.map((r) => [`${r.user_id}\n${r.date_key}`, new Date(r.window_start).toISOString()]));
}

/** What Tally's cost formula may name (billing.catalog.service.ts, FORMULA_VARIABLES). */
const FORMULA_VARIABLES = ['quantity', 'complexity', 'base_rate'];

/**
 * cost_models → Tally cost models, **inactive**, `base_rate` 0: 000's base_rate is money per unit
 * (`currency`) and Tally's is credits, and there is no rate between them the import could use
 * without inventing one (the deployment's credit price is what it sells credits for, not what 000
 * charged per unit). The source's rate and currency stay in metadata; each model is listed under
 * `needs_review` until an operator sets a credit rate and activates it.
 */
export const costModels: TableStep = {
  table: 'cost_models',
  key: 'id',
  columns: () => 'id, metric, unit, formula, base_rate, currency, metadata_json, created_at',
  async write(ctx, rows) {
    const tally = new Tally();
    const done = await importMapFind(ctx.trx, ctx.source, 'cost_models', rows.map((r) => String(r.id)));
    tally.skip('already_imported', done.size);
    const maps = [];
    for (const r of rows.filter((x) => !done.has(String(x.id)))) {
      const sid = String(r.id);
      const metric = String(r.metric ?? '');
      const unit = str(r.unit) ?? '';
      const formula = str(r.formula) ?? '';
      const rate = decimal(r.base_rate);
      const currency = str(r.currency)?.toLowerCase() ?? '';
      const compiled = compileFormula(formula, FORMULA_VARIABLES);
      const prices = compiled.ok && [1, 1000].every((quantity) => {
        const v = compiled.formula.evaluate({ quantity, complexity: 1, base_rate: Number(rate ?? 0) });
        return v.ok && Number.isFinite(v.value) && v.value >= 0;
      });
      if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(metric) || unit.length < 1 || unit.length > 32 || !prices || rate === null || rate.startsWith('-') || !/^[a-z]{3}$/.test(currency)) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'cost_models', source_id: sid, rule: "A cost model whose metric, unit, currency, rate or formula Tally's cost models cannot take (docs/billing.md, the formula language) is not imported; the report keeps it", details: { metric, unit, formula, base_rate: str(r.base_rate), currency, ...(compiled.ok ? {} : { formula_error: compiled.error }) } });
        continue;
      }
      const row = await ctx.trx
        .insertInto('cost_models')
        .values({
          metric,
          unit,
          formula,
          // Not 000's number: that is money; 0 until an operator sets a credit rate (needs_review).
          base_rate: '0',
          // 000's metric is its credit class (BC, RC, Usage).
          class: /^[A-Za-z0-9_.-]{1,32}$/.test(metric) ? metric : 'Usage',
          daily_free_quota: 0,
          currency,
          is_active: false,
          metadata: JSON.stringify({ imported_from: SHAPE, source_id: sid, source_base_rate: rate, source_currency: currency, base_rate_is_money: true, source_metadata: json(r.metadata_json) }),
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('metric')
        .executeTakeFirst();
      if (!row) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'cost_models', source_id: sid, rule: 'Tally already has a cost model for this metric: it is kept as it is, the source model is not imported', details: { metric } });
        continue;
      }
      maps.push({ table: 'cost_models', sourceId: sid, targetTable: 'cost_models', targetId: metric });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

export const derivedSteps = [meterReadings, usageSummaries, overageCharges, dailyAutofix, costModels];

/** The anomalies of the derived tables, found before anything is written. */
export async function scanDerived(src: SourceDb, limit: number): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const out: Anomaly[] = [];
  // Readings and summaries may name no user (a workspace's, or a deleted user's): only a named user that is missing is an orphan.
  for (const table of ['usage_meter_readings', 'usage_summaries', 'overage_charges', 'allowance_daily_autofix']) {
    const orphans = await src.rows<Record<string, unknown>>(
      `select c.id, c.user_id from ${t(table)} c left join ${t('users')} u on u.id = c.user_id where c.user_id is not null and u.id is null order by c.id limit $1`,
      [limit],
    );
    for (const r of orphans) out.push({ kind: 'orphan', table, source_id: String(r.id), rule: 'A row whose user is not in users belongs to nobody: it is not imported', details: { user_id: str(r.user_id) } });
  }
  const unlinked = await src.rows<Record<string, unknown>>(
    `select o.id, o.usage_summary_id from ${t('overage_charges')} o join ${t('users')} u on u.id = o.user_id left join ${t('usage_summaries')} s on s.id = o.usage_summary_id
      where o.usage_summary_id is not null and s.id is null order by o.id limit $1`,
    [limit],
  );
  for (const r of unlinked) {
    out.push({ kind: 'orphan', table: 'overage_charges', source_id: String(r.id), rule: 'Its usage summary is gone: the charge is money and its user exists, so it is kept, without the link (the source id stays in its metadata)', details: { usage_summary_id: str(r.usage_summary_id) } });
  }
  const overused = await src.rows<Record<string, unknown>>(`select id, user_id, date_key, consumed, "limit" as limit_ from ${t('allowance_daily_autofix')} where consumed > "limit" order by id limit $1`, [limit]);
  for (const r of overused) {
    out.push({ kind: 'overused_allowance', table: 'allowance_daily_autofix', source_id: String(r.id), rule: "Consumed beyond the day's limit: the day's quota arrives used up (consumed = limit); the excess is not carried", details: { date_key: str(r.date_key), consumed: int(r.consumed), limit: int(r.limit_) } });
  }
  return out;
}

/**
 * What an operator must look at after importing these tables (on every run while it holds): each
 * cost model still inactive with its money rate, and each overage charge 000 had not settled
 * (pending or invoiced) — money owed that Tally will not collect by itself.
 */
export async function reviewDerived(trx: Executor, source: string): Promise<ReviewItem[]> {
  const models = await trx
    .selectFrom('import_map as m')
    .innerJoin('cost_models as c', 'c.metric', 'm.target_id')
    .select(['m.source_id', 'c.metric', 'c.unit', 'c.formula', 'c.metadata'])
    .where('m.source', '=', source)
    .where('m.source_table', '=', 'cost_models')
    .where('c.is_active', '=', false)
    .orderBy('c.metric')
    .execute();
  const charges = await trx
    .selectFrom('imported_credit_history')
    .select(['id', 'source_id', 'user_id', 'metadata'])
    .where('source', '=', source)
    .where('source_table', '=', 'overage_charges')
    .where(sql<string>`metadata->>'status'`, 'in', ['pending', 'invoiced'])
    .orderBy('source_id')
    .limit(ANOMALIES_LISTED)
    .execute();
  return [
    ...models.map((c) => {
      const meta = c.metadata as Record<string, unknown>;
      return {
        table: 'cost_models',
        source_id: c.source_id,
        target_table: 'cost_models',
        target_id: c.metric,
        why: "imported inactive with base_rate 0: 000's base_rate is money, Tally's is credits; set a credit base_rate (and check the formula), then PATCH /v1/cost-models/:metric is_active true",
        details: { metric: c.metric, unit: c.unit, formula: c.formula, source_base_rate: meta.source_base_rate, source_currency: meta.source_currency },
      };
    }),
    ...charges.map((h) => {
      const meta = h.metadata as Record<string, unknown>;
      return {
        table: 'overage_charges',
        source_id: h.source_id,
        target_table: 'imported_credit_history',
        target_id: h.id,
        why: 'not settled in the source: money the user owes that Tally will not invoice (kept as history only); collect or waive it outside Tally',
        details: { user_id: h.user_id, metric: meta.metric, amount: meta.money_amount, currency: meta.currency, status: meta.status },
      };
    }),
  ];
}
