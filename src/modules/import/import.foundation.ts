import { sql } from 'kysely';
import { newId } from '../../lib/ids.js';
import type { Anomaly, BatchContext, Shape, TableStep } from './import.js';
import { type ImportedPlan, importedPlanOf, renewalTerms } from './import.plans.js';
import { importMapInsert } from './import.repository.js';
import { date, freshRows, int, ownerOf, ownersOf, str, Tally } from './import.rows.js';
import type { SourceDb } from './import.source.js';
import { usersWithEmptyAccounts } from './import.users.js';

/**
 * Seed 003, `foundation` (docs/import.md): Supabase `users` (beside auth.users), one `subscriptions`
 * row per user (plan free/basic/pro, Lemon Squeezy id) and `usage_counters` per metric and window.
 * It has no credit balance: users arrive with an empty account; subscriptions join billing under the
 * plan of the same slug; usage counters carry on as Tally's, so a quota window in progress continues.
 */
const SHAPE = 'foundation';
const ownerCheck = (t: (n: string) => string, table: string) => `exists (select 1 from ${t('users')} u where u.id = ${t(table)}.user_id) as owner_exists`;

const users = usersWithEmptyAccounts(SHAPE, 'id::text as id, email, created_at', (r, now) => ({
  id: String(r.id),
  email: str(r.email),
  metadata: JSON.stringify({ imported_from: SHAPE }),
  created_at: date(r.created_at) ?? now,
}));

const STATUS: Record<string, string> = { trial: 'trialing', active: 'active', past_due: 'past_due', cancelled: 'canceled', expired: 'canceled' };
const PLANS = new Set(['free', 'basic', 'pro']);

const subscriptions: TableStep = {
  table: 'subscriptions',
  key: 'id',
  columns: (t) => `id::text as id, user_id::text as user_id, status, plan, lemon_squeezy_id, current_period_start, current_period_end, trial_ends_at, created_at, updated_at,
    ${ownerCheck(t, 'subscriptions')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'subscriptions', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const firsts = await firstsWithProviderId(ctx.src, fresh);
    const plans = new Map<string, ImportedPlan>();
    const values = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const status = STATUS[String(r.status ?? '')];
      const planName = String(r.plan ?? '');
      if (!status || !PLANS.has(planName)) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'subscriptions', source_id: sid, rule: 'A status or plan Tally does not know is not guessed: the subscription is not imported', details: { status: r.status, plan: r.plan } });
        continue;
      }
      let plan = plans.get(planName);
      if (plan === undefined) {
        plan = await importedPlanOf(ctx, planName, SHAPE);
        plans.set(planName, plan);
      }
      const period = periodOf(r, ctx.now);
      const canceled = status === 'canceled';
      const lemon = str(r.lemon_squeezy_id);
      // The scan reported duplicated provider ids: only the first row keeps the link.
      const linked = lemon !== null && firsts.get(lemon) === sid;
      values.push({
        id: newId('subscription'),
        source_id: sid,
        user_id: owner.target_id,
        plan_id: plan.id,
        ...renewalTerms(plan, linked),
        status,
        current_period_start: period.start,
        current_period_end: period.end,
        anchor_at: period.start,
        trial_end: date(r.trial_ends_at),
        canceled_at: String(r.status) === 'cancelled' ? (date(r.updated_at) ?? ctx.now) : null,
        ended_at: canceled ? (date(r.current_period_end) ?? date(r.updated_at) ?? ctx.now) : null,
        // Plans made for the import have no allowances; a real plan's next window opens at the period's end.
        cycles_due_at: canceled ? null : period.end,
        provider: linked ? 'lemonsqueezy' : null,
        provider_subscription_id: linked ? lemon : null,
        metadata: { imported_from: SHAPE, source_id: sid, source_status: str(r.status), lemon_squeezy_id: lemon },
        created_at: date(r.created_at) ?? ctx.now,
      });
    }
    const inserted = await insertSubscriptions(ctx, values);
    const maps = [];
    for (const v of values) {
      if (!inserted.has(v.id)) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'subscriptions', source_id: v.source_id, rule: 'Tally already has a live primary subscription for this user, or this Lemon Squeezy id: not imported', details: { lemon_squeezy_id: v.metadata.lemon_squeezy_id } });
        continue;
      }
      maps.push({ table: 'subscriptions', sourceId: v.source_id, targetTable: 'subscriptions', targetId: v.id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

/**
 * For a batch: the first row (lowest id) of each of its Lemon Squeezy ids — one query over the
 * batch's ids, not a subquery a row (the seed declares no index on lemon_squeezy_id: a subquery a
 * row read the whole table once a row).
 */
async function firstsWithProviderId(src: SourceDb, rows: Record<string, unknown>[]): Promise<Map<string, string>> {
  const ids = [...new Set(rows.flatMap((r) => (r.lemon_squeezy_id === null || r.lemon_squeezy_id === undefined ? [] : [String(r.lemon_squeezy_id)])))];
  if (ids.length === 0) return new Map();
  const firsts = await src.rows<{ lemon_squeezy_id: string; id: string }>(
    `select lemon_squeezy_id, min(id::text) as id from ${src.t('subscriptions')} where lemon_squeezy_id = any($1::text[]) group by lemon_squeezy_id`,
    [ids],
  );
  return new Map(firsts.map((f) => [f.lemon_squeezy_id, f.id]));
}

/** One statement for a batch of subscriptions, in the batch's order (a row that meets a unique index, or an earlier row of the batch, is not written); answers the ids written. */
async function insertSubscriptions(ctx: BatchContext, values: Record<string, unknown>[]): Promise<Set<string>> {
  if (values.length === 0) return new Set();
  const { rows } = await sql<{ id: string }>`
    insert into ${sql.table(`${ctx.schema}.subscriptions`)} (id, user_id, plan_id, status, current_period_start, current_period_end, anchor_at, trial_end,
      canceled_at, ended_at, cycles_due_at, provider, provider_subscription_id, metadata, created_at)
    select id, user_id, plan_id, status, current_period_start, current_period_end, anchor_at, trial_end, canceled_at, ended_at, cycles_due_at, provider,
      provider_subscription_id, metadata, created_at
    from jsonb_to_recordset(${JSON.stringify(values)}::jsonb) as r(id text, user_id text, plan_id text, status text, current_period_start timestamptz,
      current_period_end timestamptz, anchor_at timestamptz, trial_end timestamptz, canceled_at timestamptz, ended_at timestamptz, cycles_due_at timestamptz,
      provider text, provider_subscription_id text, metadata jsonb, created_at timestamptz)
    on conflict do nothing
    returning id`.execute(ctx.trx);
  return new Set(rows.map((r) => r.id));
}

/** The source's period, or the written rule for a missing one (`missing_period`): from created_at, to the trial's end or a month on. */
function periodOf(r: Record<string, unknown>, now: Date): { start: Date; end: Date } {
  const start = date(r.current_period_start) ?? date(r.created_at) ?? now;
  const monthOn = new Date(new Date(start).setUTCMonth(start.getUTCMonth() + 1));
  const end = date(r.current_period_end) ?? (r.status === 'trial' ? date(r.trial_ends_at) : null) ?? monthOn;
  return { start, end: end > start ? end : monthOn };
}

const DAY = 86_400_000;

/** Tally's counter windows: a day, a calendar month (UTC), or any other period. */
function windowOf(start: Date, end: Date): 'day' | 'month' | 'period' {
  if (end.getTime() - start.getTime() === DAY && start.getTime() % DAY === 0) return 'day';
  const monthEnd = Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1);
  if (start.getUTCDate() === 1 && start.getTime() % DAY === 0 && end.getTime() === monthEnd) return 'month';
  return 'period';
}

const counters: TableStep = {
  table: 'usage_counters',
  key: 'id',
  columns: (t) => `id::text as id, user_id::text as user_id, metric, count, window_start, window_end, created_at, ${ownerCheck(t, 'usage_counters')}`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'usage_counters', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const start = date(r.window_start);
      const end = date(r.window_end);
      const count = int(r.count);
      if (!start || !end || end <= start || count === null || count < 0) {
        // The scan reported it (unknown_value): not imported.
        tally.skip('unknown_value');
        continue;
      }
      const window = windowOf(start, end);
      const row = await ctx.trx
        .insertInto('usage_counters')
        // The source counted one number per metric: Tally's quantity. No credits or overage were charged for it here.
        .values({ user_id: owner.target_id, metric: String(r.metric).slice(0, 64), window, window_start: start, window_end: end, quantity: String(count), created_at: date(r.created_at) ?? ctx.now })
        .onConflict((oc) => oc.doNothing())
        .returning(sql<string>`metric`.as('metric'))
        .executeTakeFirst();
      if (!row) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'usage_counters', source_id: sid, rule: 'Tally already counts this user, metric and window: the source counter is not added to it', details: { metric: r.metric, window } });
        continue;
      }
      maps.push({ table: 'usage_counters', sourceId: sid, targetTable: 'usage_counters', targetId: `${owner.target_id}/${String(r.metric)}/${window}/${start.toISOString()}` });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

async function scan(src: SourceDb, limit = 1000): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const out: Anomaly[] = [];
  for (const table of ['subscriptions', 'usage_counters']) {
    const orphans = await src.rows<{ id: string; user_id: string | null }>(
      `select c.id::text as id, c.user_id::text as user_id from ${t(table)} c left join ${t('users')} u on u.id = c.user_id where u.id is null order by c.id limit $1`,
      [limit],
    );
    for (const r of orphans) out.push({ kind: 'orphan', table, source_id: r.id, rule: 'A row whose user is not in users belongs to nobody: it is not imported', details: { user_id: r.user_id } });
  }
  const missing = await src.rows<{ id: string }>(
    `select s.id::text as id from ${t('subscriptions')} s join ${t('users')} u on u.id = s.user_id
      where s.current_period_start is null or s.current_period_end is null or s.current_period_end <= s.current_period_start order by s.id limit $1`,
    [limit],
  );
  for (const r of missing) {
    out.push({ kind: 'missing_period', table: 'subscriptions', source_id: r.id, rule: "No usable period: it starts at current_period_start (else created_at) and ends at current_period_end, a trial's trial_ends_at, else a month on", details: {} });
  }
  // A window function, not a subquery a row (no index on lemon_squeezy_id in the seed).
  const dupes = await src.rows<{ id: string; lemon_squeezy_id: string; first: string }>(
    `select id, lemon_squeezy_id, first from (select s.id::text as id, s.lemon_squeezy_id, min(s.id::text) over (partition by s.lemon_squeezy_id) as first
       from ${t('subscriptions')} s where s.lemon_squeezy_id is not null) w where id <> first order by id limit $1`,
    [limit],
  );
  for (const r of dupes) {
    out.push({ kind: 'duplicate_provider_id', table: 'subscriptions', source_id: r.id, rule: 'One Lemon Squeezy id, one subscription: the lowest source id keeps the link; this one is imported without it (its webhooks will not find it)', details: { lemon_squeezy_id: r.lemon_squeezy_id, linked_row: r.first } });
  }
  const badCounters = await src.rows<{ id: string; count: string }>(
    `select id::text as id, count::text as count from ${t('usage_counters')} where count < 0 or window_end <= window_start order by id limit $1`,
    [limit],
  );
  for (const r of badCounters) out.push({ kind: 'unknown_value', table: 'usage_counters', source_id: r.id, rule: 'A counter whose window ends before it starts, or whose count is negative, is not imported', details: { count: r.count } });
  return out;
}

export const foundation: Shape = {
  name: SHAPE,
  signature: ['users', 'subscriptions', 'usage_counters'],
  steps: [users, subscriptions, counters],
  notImported: [{ table: 'storage.buckets, storage.objects', why: "Supabase Storage's files live outside these tables: move them with the storage API (docs/storage.md)" }],
  scan: (src) => scan(src),
  async sourceCredits(src) {
    // No balance in this design: every user is an account holding 0.
    const [r] = await src.rows<{ accounts: string }>(`select count(*)::text as accounts from ${src.t('users')}`);
    return { total: 0, accounts: Number(r?.accounts ?? 0) };
  },
};
