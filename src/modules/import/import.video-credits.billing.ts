import { sql } from 'kysely';
import { newId } from '../../lib/ids.js';
import { windowAt } from '../billing/billing.periods.js';
import type { Anomaly, BatchContext, TableStep } from './import.js';
import { scopesOf, SHA256_HEX } from './import.llm-relay.js';
import { type ImportedPlan, importedPlanOf, renewalTerms } from './import.plans.js';
import { importMapInsert, type MapRow } from './import.repository.js';
import { date, freshRows, int, ownerOf, ownersOf, str, Tally } from './import.rows.js';
import type { SourceDb } from './import.source.js';

/**
 * Seed 001's subscriptions and its two auxiliary tables (docs/import.md, video-credits). The seed
 * names `user_subscriptions`' columns (plan_type, plan_status, subscription_id) and nothing of
 * `api_keys` or `usage_stats` but their purpose, so those two are read whole (`to_jsonb` of the row)
 * and taken only through the columns named in docs/import.md; both may be absent (the seed calls them
 * optional). None of them moves a credit: 001's subscription credits are inside the opening balance.
 */
const SHAPE = 'video-credits';
const owned = (t: (n: string) => string, table: string) => `exists (select 1 from ${t('users')} u where u.id = ${t(table)}.user_id) as owner_exists`;
/** A column the seed does not name, read from the row's JSON (null when the source has no such column). */
const field = (alias: string, column: string) => `(to_jsonb(${alias}.*) ->> '${column}')`;

const SUB_STATUS: Record<string, 'trialing' | 'active' | 'past_due' | 'canceled'> = {
  trial: 'trialing',
  trialing: 'trialing',
  active: 'active',
  past_due: 'past_due',
  canceled: 'canceled',
  cancelled: 'canceled',
  expired: 'canceled',
};
const LIVE = `lower(x.plan_status) not in ('canceled', 'cancelled', 'expired')`;
const SLUG = /^[a-z0-9][a-z0-9_-]{0,63}$/;

export const userSubscriptions: TableStep = {
  table: 'user_subscriptions',
  key: 'id',
  // created_at is not in the seed: read if the table has it.
  columns: (t) => `id::text as id, user_id::text as user_id, plan_type, plan_status, subscription_id, ${field(t('user_subscriptions'), 'created_at')} as created_at,
    ${owned(t, 'user_subscriptions')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'user_subscriptions', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const { primaries, firsts } = await subscriptionFacts(ctx.src, fresh);
    const values = [];
    const plans = new Map<string, ImportedPlan>();
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const status = SUB_STATUS[String(r.plan_status ?? '').toLowerCase()];
      const slug = String(r.plan_type ?? '').toLowerCase();
      if (!status || !SLUG.test(slug)) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'user_subscriptions', source_id: sid, rule: 'A plan status or plan name Tally cannot read is not guessed: the subscription is not imported', details: { plan_status: r.plan_status, plan_type: r.plan_type } });
        continue;
      }
      let plan = plans.get(slug);
      if (!plan) {
        plan = await importedPlanOf(ctx, slug, SHAPE);
        plans.set(slug, plan);
      }
      // 001 keeps no period: it is anchored at the row's creation, and the current one is the month
      // around the run's start — the credits this period bought are already in the opening balance,
      // so billing opens the next window at its end, never at once.
      const anchor = date(r.created_at) ?? ctx.asOf;
      const period = anchor > ctx.asOf ? { start: anchor, end: windowAt(anchor, 1, anchor).end } : windowAt(anchor, 1, ctx.asOf);
      const canceled = status === 'canceled';
      const providerId = str(r.subscription_id);
      // The scan reported duplicated ids: only the first row keeps the link (provider ids are unique in Tally).
      const linked = providerId !== null && providerId !== '' && firsts.get(providerId) === sid;
      const id = newId('subscription');
      values.push({
        id,
        source_id: sid,
        user_id: owner.target_id,
        plan_id: plan.id,
        status,
        ...renewalTerms(plan, linked),
        is_primary: canceled || primaries.get(String(r.user_id)) === sid,
        current_period_start: period.start,
        current_period_end: period.end,
        anchor_at: anchor,
        // 001 does not say when a subscription ended: it is known ended by the run's start.
        ended_at: canceled ? ctx.asOf : null,
        cycles_due_at: canceled ? null : period.end,
        provider: linked ? 'creem' : null,
        provider_subscription_id: linked ? providerId : null,
        metadata: { imported_from: SHAPE, source_id: sid, source_plan: str(r.plan_type), source_status: str(r.plan_status), subscription_id: providerId, ...(canceled ? { ended_at_unknown: true } : {}) },
        created_at: date(r.created_at) ?? ctx.now,
      });
    }
    const kept = await insertSubscriptions(ctx, values);
    const maps = [];
    for (const v of values) {
      if (!kept.has(v.id)) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'user_subscriptions', source_id: v.source_id, rule: 'Tally already has a live primary subscription for this user, or this Creem subscription id: not imported', details: { subscription_id: v.provider_subscription_id } });
        continue;
      }
      maps.push({ table: 'user_subscriptions', sourceId: v.source_id, targetTable: 'subscriptions', targetId: v.id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

/** The newest live row of each user (window functions, no index needed). */
const PRIMARY_SQL = (s: string, users: string, also = 'true') => `select user_id, id from (
    select x.user_id::text as user_id, x.id::text as id, row_number() over (partition by x.user_id order by ${field('x', 'created_at')}::timestamptz desc nulls last, x.id desc) as n
    from ${s} x join ${users} u on u.id = x.user_id where ${LIVE} and ${also}) w where n = 1`;

/**
 * For a batch: each of its users' primary (their newest live row) and each of its Creem ids' first
 * row (lowest id) — one query each over the batch's users and ids, not a subquery a row (the seed
 * declares no index on either column).
 */
async function subscriptionFacts(src: SourceDb, rows: Record<string, unknown>[]): Promise<{ primaries: Map<string, string>; firsts: Map<string, string> }> {
  const s = src.t('user_subscriptions');
  const users = [...new Set(rows.map((r) => String(r.user_id)))];
  const ids = [...new Set(rows.flatMap((r) => (r.subscription_id === null || r.subscription_id === undefined ? [] : [String(r.subscription_id)])))];
  const primaries = await src.rows<{ user_id: string; id: string }>(PRIMARY_SQL(s, src.t('users'), 'x.user_id::text = any($1::text[])'), [users]);
  const firsts = ids.length === 0 ? [] : await src.rows<{ subscription_id: string; id: string }>(`select subscription_id, min(id::text) as id from ${s} where subscription_id = any($1::text[]) group by subscription_id`, [ids]);
  return { primaries: new Map(primaries.map((p) => [p.user_id, p.id])), firsts: new Map(firsts.map((f) => [f.subscription_id, f.id])) };
}

/** One statement for a batch of subscriptions; answers the ids written (the others hit a unique index). */
async function insertSubscriptions(ctx: BatchContext, values: Record<string, unknown>[]): Promise<Set<string>> {
  if (values.length === 0) return new Set();
  const json = JSON.stringify(values);
  const { rows } = await sql<{ id: string }>`
    insert into ${sql.table(`${ctx.schema}.subscriptions`)} (id, user_id, plan_id, status, is_primary, current_period_start, current_period_end, anchor_at,
      ended_at, cycles_due_at, provider, provider_subscription_id, self_service, cancel_at_period_end, metadata, created_at)
    select id, user_id, plan_id, status, is_primary, current_period_start, current_period_end, anchor_at, ended_at, cycles_due_at, provider,
      provider_subscription_id, self_service, cancel_at_period_end, metadata, created_at
    from jsonb_to_recordset(${json}::jsonb) as r(id text, user_id text, plan_id text, status text, is_primary boolean, current_period_start timestamptz,
      current_period_end timestamptz, anchor_at timestamptz, ended_at timestamptz, cycles_due_at timestamptz, provider text, provider_subscription_id text,
      self_service boolean, cancel_at_period_end boolean, metadata jsonb, created_at timestamptz)
    on conflict do nothing
    returning id`.execute(ctx.trx);
  return new Set(rows.map((r) => r.id));
}

/** The columns docs/import.md names for 001's `api_keys` (the seed names none). */
const HASH_COLUMNS = ['key_hash', 'hashed_key', 'api_key_hash'];
const hashOf = (row: Record<string, unknown>): string | null => {
  for (const c of HASH_COLUMNS) if (typeof row[c] === 'string') return (row[c] as string).toLowerCase();
  return null;
};
const HASH_SQL = (alias: string) => `lower(coalesce(${HASH_COLUMNS.map((c) => field(alias, c)).join(', ')}, ''))`;

export const apiKeys: TableStep = {
  table: 'api_keys',
  key: 'id',
  optional: true,
  columns: (t) => `id::text as id, user_id::text as user_id, to_jsonb(${t('api_keys')}.*) as row, ${owned(t, 'api_keys')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'api_keys', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const values = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const k = (r.row ?? {}) as Record<string, unknown>;
      const hash = hashOf(k);
      if (hash === null || !SHA256_HEX.test(hash)) {
        // The scan reported it (key_rotation): Tally could never look the key up; its owner mints a new one.
        tally.skip('rotation');
        continue;
      }
      const scopes = scopesOf(k.permissions ?? k.scopes);
      if (scopes === null) {
        ctx.anomaly({ kind: 'key_rotation', table: 'api_keys', source_id: sid, rule: 'Permissions Tally cannot express: the key is imported revoked (never wider than it was); its owner mints a new one', details: { permissions: k.permissions ?? k.scopes } });
      }
      const inactive = k.is_active === false || k.revoked === true || (k.revoked_at !== null && k.revoked_at !== undefined);
      const prefix = str(k.key_prefix ?? k.prefix);
      values.push({
        id: newId('apiKey'),
        source_id: sid,
        user_id: owner.target_id,
        name: (str(k.name) || 'imported').slice(0, 255),
        // The visible part of the key, when the source kept one short enough to be one.
        prefix: prefix && prefix.length <= 32 ? prefix : 'imported',
        key_hash: hash,
        scopes: scopes ?? [],
        expires_at: date(k.expires_at),
        last_used_at: date(k.last_used_at),
        request_count: Math.max(0, int(k.request_count ?? k.usage_count) ?? 0),
        revoked_at: inactive || scopes === null ? (date(k.revoked_at) ?? date(k.updated_at) ?? ctx.now) : null,
        created_at: date(k.created_at) ?? ctx.now,
      });
    }
    const kept = await insertKeys(ctx, values);
    const maps = [];
    for (const v of values) {
      if (!kept.has(v.id)) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'api_keys', source_id: v.source_id, rule: 'Tally already has a key with this hash: not imported twice', details: {} });
        continue;
      }
      maps.push({ table: 'api_keys', sourceId: v.source_id, targetTable: 'api_keys', targetId: v.id, facts: { user_id: v.user_id } });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

async function insertKeys(ctx: BatchContext, values: Record<string, unknown>[]): Promise<Set<string>> {
  if (values.length === 0) return new Set();
  const json = JSON.stringify(values);
  const { rows } = await sql<{ id: string }>`
    insert into ${sql.table(`${ctx.schema}.api_keys`)} (id, user_id, name, prefix, key_hash, scopes, expires_at, last_used_at, request_count, revoked_at, created_at)
    select id, user_id, name, prefix, key_hash, array(select jsonb_array_elements_text(scopes)), expires_at, last_used_at, request_count, revoked_at, created_at
    from jsonb_to_recordset(${json}::jsonb) as r(id text, user_id text, name text, prefix text, key_hash text, scopes jsonb, expires_at timestamptz,
      last_used_at timestamptz, request_count int8, revoked_at timestamptz, created_at timestamptz)
    on conflict do nothing
    returning id`.execute(ctx.trx);
  return new Set(rows.map((r) => r.id));
}

/** Columns of a `usage_stats` row that are not statistics: its identity, owner, day and times. */
const NOT_METRICS = new Set(['id', 'user_id', 'date', 'day', 'stat_date', 'usage_date', 'created_at', 'updated_at']);
const DAY_COLUMNS = ['date', 'day', 'stat_date', 'usage_date'];
const DAY_MS = 86_400_000;

/** The UTC day a stats row counts (a date, or the date of a time), or null. */
function dayOf(row: Record<string, unknown>): Date | null {
  for (const c of DAY_COLUMNS) {
    const v = row[c];
    if (v === null || v === undefined) continue;
    const m = /^(\d{4}-\d{2}-\d{2})/.exec(String(v));
    const d = m ? new Date(`${m[1]}T00:00:00Z`) : null;
    return d && !Number.isNaN(d.getTime()) ? d : null;
  }
  return null;
}

/**
 * 001's daily statistics → Tally's daily usage counters (window `day`, the UTC day), one counter
 * per numeric column: they are what `GET /v1/users/:id/usage` shows per day. Counts only: no
 * credits, overage or events are attributed to them (credits and overage stay 0), and nothing is
 * ever charged from them. A counter Tally already has is never added to.
 */
export const usageStats: TableStep = {
  table: 'usage_stats',
  key: 'id',
  optional: true,
  columns: (t) => `id::text as id, user_id::text as user_id, to_jsonb(${t('usage_stats')}.*) as row, ${owned(t, 'usage_stats')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'usage_stats', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const counters: { source_id: string; user_id: string; metric: string; window_start: Date; window_end: Date; quantity: string; created_at: Date }[] = [];
    const byRow = new Map<string, { owner: MapRow; day: Date; metrics: string[]; other: Record<string, unknown> }>();
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const s = (r.row ?? {}) as Record<string, unknown>;
      const day = dayOf(s);
      const stats = Object.entries(s).filter(([c, v]) => !NOT_METRICS.has(c) && typeof v === 'number');
      const bad = stats.filter(([c, v]) => (v as number) < 0 || !Number.isFinite(v as number) || !/^[A-Za-z0-9_.:-]{1,64}$/.test(c));
      if (!day || bad.length > 0) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'usage_stats', source_id: sid, rule: 'A statistic without a readable day, or with a negative count, is not imported (counters only count up)', details: { day: DAY_COLUMNS.map((c) => s[c]).find((v) => v !== undefined) ?? null, negative: Object.fromEntries(bad) } });
        continue;
      }
      if (stats.length === 0) {
        tally.skip('empty');
        continue;
      }
      const other = Object.fromEntries(Object.entries(s).filter(([c, v]) => !NOT_METRICS.has(c) && typeof v !== 'number'));
      byRow.set(sid, { owner, day, metrics: stats.map(([c]) => c), other });
      for (const [metric, v] of stats) {
        // JSON numbers of a numeric column are exact decimals (jsonb keeps them as written).
        counters.push({ source_id: sid, user_id: owner.target_id, metric, window_start: day, window_end: new Date(day.getTime() + DAY_MS), quantity: String(v), created_at: date(s.created_at) ?? ctx.now });
      }
    }
    const kept = await insertCounters(ctx, counters);
    const maps = [];
    for (const [sid, r] of byRow) {
      const lost = r.metrics.filter((m) => !kept.has(`${r.owner.target_id}\n${m}\n${r.day.toISOString()}`));
      for (const metric of lost) {
        ctx.anomaly({ kind: 'target_conflict', table: 'usage_stats', source_id: sid, rule: 'Tally already counts this user, metric and day (or another stats row of the same day did): the counter is not added to', details: { metric, day: r.day.toISOString().slice(0, 10) } });
      }
      if (lost.length === r.metrics.length) {
        tally.skip('conflict');
        continue;
      }
      maps.push({ table: 'usage_stats', sourceId: sid, targetTable: 'usage_counters', targetId: `${r.owner.target_id}/day/${r.day.toISOString().slice(0, 10)}`, facts: { metrics: r.metrics.filter((m) => !lost.includes(m)), other: r.other } });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

/** One statement for a batch's counters; answers the `user\nmetric\nstart` of those written. */
async function insertCounters(ctx: BatchContext, counters: Record<string, unknown>[]): Promise<Set<string>> {
  if (counters.length === 0) return new Set();
  const json = JSON.stringify(counters);
  const { rows } = await sql<{ user_id: string; metric: string; window_start: Date | string }>`
    insert into ${sql.table(`${ctx.schema}.usage_counters`)} (user_id, metric, "window", window_start, window_end, quantity, created_at)
    select user_id, metric, 'day', window_start, window_end, quantity, created_at
    from jsonb_to_recordset(${json}::jsonb) as r(user_id text, metric text, window_start timestamptz, window_end timestamptz, quantity numeric, created_at timestamptz)
    on conflict do nothing
    returning user_id, metric, window_start`.execute(ctx.trx);
  return new Set(rows.map((r) => `${r.user_id}\n${r.metric}\n${new Date(r.window_start).toISOString()}`));
}

/** The anomalies of these three tables, found before anything is written (the auxiliary ones only when present). */
export async function scanBilling(src: SourceDb, limit: number): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const present = await src.tables();
  const out: Anomaly[] = [];
  const tables = ['user_subscriptions', 'api_keys', 'usage_stats'].filter((x) => present.has(x));
  for (const table of tables) {
    const orphans = await src.rows<{ id: string; user_id: string | null }>(
      `select c.id::text as id, c.user_id::text as user_id from ${t(table)} c left join ${t('users')} u on u.id = c.user_id where u.id is null order by c.id limit $1`,
      [limit],
    );
    for (const r of orphans) out.push({ kind: 'orphan', table, source_id: r.id, rule: 'A row whose user is not in users belongs to nobody: it is not imported', details: { user_id: r.user_id } });
  }
  if (present.has('user_subscriptions')) {
    const s = t('user_subscriptions');
    const dupes = await src.rows<{ id: string; user_id: string; primary_id: string }>(
      `select x.id::text as id, x.user_id::text as user_id, p.id as primary_id from ${s} x join (${PRIMARY_SQL(s, t('users'))}) p on p.user_id = x.user_id::text
        where ${LIVE} and x.id::text <> p.id order by x.id limit $1`,
      [limit],
    );
    for (const r of dupes) {
      out.push({ kind: 'duplicate_subscription', table: 'user_subscriptions', source_id: r.id, rule: "Tally has one live primary subscription per user: the newest live row (created_at, then id) is the primary; this one is imported as secondary (is_primary false)", details: { user_id: r.user_id, primary_row: r.primary_id } });
    }
    const shared = await src.rows<{ id: string; subscription_id: string; first: string }>(
      `select id, subscription_id, first from (select x.id::text as id, x.subscription_id, min(x.id::text) over (partition by x.subscription_id) as first from ${s} x
        where x.subscription_id is not null) w where id <> first order by id limit $1`,
      [limit],
    );
    for (const r of shared) {
      out.push({ kind: 'duplicate_provider_id', table: 'user_subscriptions', source_id: r.id, rule: "One Creem subscription id, one subscription: the lowest source id keeps the link; this one is imported without it (the provider's webhooks will not find it)", details: { subscription_id: r.subscription_id, linked_row: r.first } });
    }
  }
  if (present.has('api_keys')) {
    const rotation = await src.rows<{ id: string }>(`select k.id::text as id from ${t('api_keys')} k where ${HASH_SQL('k')} !~ '^[0-9a-f]{64}$' order by k.id limit $1`, [limit]);
    for (const r of rotation) {
      out.push({ kind: 'key_rotation', table: 'api_keys', source_id: r.id, rule: 'No SHA-256 (hex) hash of the key (another scheme, or none kept): Tally could never look it up, so it is not imported; its owner mints a new one', details: {} });
    }
  }
  return out;
}
