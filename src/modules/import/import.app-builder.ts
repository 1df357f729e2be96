import { sql } from 'kysely';
import type { OpeningBucket } from '../credits/credits.port.js';
import type { Anomaly, BatchContext, Shape, TableStep } from './import.js';
import { budgetGuards, consumptionEvents, payments, plans, pointTransactions, subscriptions } from './import.app-builder.billing.js';
import { derivedSteps, reviewDerived, scanDerived } from './import.app-builder.derived.js';
import { scanIdentities, userProviders } from './import.app-builder.identities.js';
import { findSourceOwner, ownerlessSteps, scanWork } from './import.app-builder.work.js';
import { openingBalance } from './import.opening.js';
import { importMapInsert } from './import.repository.js';
import { bool, date, freshRows, int, json, ownerOf, ownersOf, placeholders, str, Tally } from './import.rows.js';
import type { SourceDb } from './import.source.js';

/**
 * Seed 000, `app-builder` (docs/import.md): SQLAlchemy's `cc.db` on SQLite, or the same tables on
 * Supabase. A user's credits are `users.points` plus what is left of their live allowances and
 * rollover buckets; they arrive as one opening entry split into grants that keep each bucket's class
 * (BC/RC/Usage) and expiry. One SQL serves both sources (import.source.sqlite.ts rewrites `$n`).
 */
export const SHAPE = 'app-builder';

/** What is left of an allowance: total − used, never below zero (`overused_allowance`). */
const LEFT = 'case when a.total > a.used then a.total - a.used else 0 end';
const live = (src: SourceDb, column: string, param: string) => `(${column} is null or ${src.after(column, param)})`;

const users: TableStep = {
  table: 'users',
  key: 'id',
  columns: (t) => `id, provider, provider_user_id, email, name, avatar_url, is_email_verified, level, points, metadata_json, created_at, last_login_at,
    (select coalesce(sum(p.change), 0) from ${t('point_transactions')} p where p.user_id = ${t('users')}.id) as history_sum`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'users', rows, 'id', tally);
    const buckets = await bucketsOf(ctx, fresh.map((r) => String(r.id)));
    const inserted = await insertUsers(ctx, fresh);
    const maps = [];
    for (const r of fresh) {
      const id = String(r.id);
      if (!inserted.has(id)) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'users', source_id: id, rule: 'Tally already has a user with this id, e-mail or provider login: the user and their rows are not imported (resolve, then import again)', details: { email: str(r.email) } });
        continue;
      }
      const points = int(r.points) ?? 0;
      const opening = netted(points, buckets.get(id) ?? []);
      const entry = await openingBalance(
        ctx,
        id,
        opening.balance,
        SHAPE,
        { source_table: 'users', source_id: id, points, history_sum: int(r.history_sum), paid_from_buckets: opening.paid },
        opening.balance > 0 ? opening.buckets : undefined,
      );
      maps.push({ table: 'users', sourceId: id, targetTable: 'users', targetId: id, facts: { balance: opening.balance, opening_entry: entry } });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

async function insertUsers(ctx: BatchContext, rows: Record<string, unknown>[]): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const inserted = await ctx.trx
    .insertInto('users')
    .values(
      rows.map((r) => ({
        id: String(r.id),
        email: str(r.email),
        name: str(r.name)?.slice(0, 255) ?? null,
        avatar_url: str(r.avatar_url),
        provider: str(r.provider)?.slice(0, 32) ?? 'email',
        provider_user_id: str(r.provider_user_id),
        level: Math.max(0, int(r.level) ?? 1),
        last_login_at: date(r.last_login_at),
        // Tally never trusts an address it did not verify: the source's flag stays a fact.
        metadata: JSON.stringify({ ...(objectOf(json(r.metadata_json)) ?? {}), imported_from: SHAPE, source_email_verified: bool(r.is_email_verified) }),
        created_at: date(r.created_at) ?? ctx.now,
      })),
    )
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .execute();
  return new Set(inserted.map((u) => u.id));
}

const objectOf = (v: unknown): Record<string, unknown> | null => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null);

interface SourceBucket extends OpeningBucket {
  table: 'allowances' | 'rollover_buckets';
  id: string;
}

/** The live allowances and rollover buckets of some users, as of the run's start (source order: id). */
async function bucketsOf(ctx: BatchContext, ids: string[]): Promise<Map<string, SourceBucket[]>> {
  const out = new Map<string, SourceBucket[]>();
  if (ids.length === 0) return out;
  const src = ctx.src;
  const n = ids.length;
  const allowances = await src.rows<Record<string, unknown>>(
    `select a.id, a.user_id, a.type, ${LEFT} as left_, a.expires_at from ${src.t('allowances')} a
      where a.user_id in (${placeholders(n)}) and ${live(src, 'a.expires_at', `$${n + 1}`)} order by a.id`,
    [...ids, ctx.asOf],
  );
  const rollovers = await src.rows<Record<string, unknown>>(
    `select r.id, r.user_id, a.type, r.remain as left_, r.expires_at from ${src.t('rollover_buckets')} r join ${src.t('allowances')} a on a.id = r.allowance_id
      where r.user_id in (${placeholders(n)}) and r.remain > 0 and ${live(src, 'r.expires_at', `$${n + 1}`)} order by r.id`,
    [...ids, ctx.asOf],
  );
  for (const [table, rows] of [['allowances', allowances], ['rollover_buckets', rollovers]] as const) {
    for (const r of rows) {
      const amount = int(r.left_) ?? 0;
      if (amount <= 0) continue;
      const list = out.get(String(r.user_id)) ?? [];
      list.push({ table, id: String(r.id), amount, class: String(r.type), expiresAt: date(r.expires_at), metadata: { source_table: table, source_id: String(r.id) } });
      out.set(String(r.user_id), list);
    }
  }
  return out;
}

/**
 * The opening of one user: points (class `default`, no expiry) and each bucket. Negative points are
 * paid from the buckets first, soonest expiry first — as Tally itself would take new credits on an
 * account in debt — and whatever is still negative is debt. The total is always points + Σ buckets.
 */
export function netted(points: number, buckets: SourceBucket[]): { balance: number; buckets: OpeningBucket[]; paid: number } {
  const balance = points + buckets.reduce((a, k) => a + k.amount, 0);
  const list: OpeningBucket[] = buckets.map((k) => ({ amount: k.amount, class: k.class, expiresAt: k.expiresAt, metadata: k.metadata }));
  if (points > 0) list.unshift({ amount: points, class: 'default', expiresAt: null, metadata: { source_table: 'users', source_part: 'points' } });
  let debt = points < 0 ? -points : 0;
  const paid = Math.min(debt, balance - points);
  const order = [...list].sort((x, y) => (x.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY) - (y.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY));
  for (const k of order) {
    const take = Math.min(debt, k.amount);
    k.amount -= take;
    debt -= take;
  }
  return { balance, buckets: list.filter((k) => k.amount > 0), paid };
}

/** Allowances and rollover buckets were carried in their user's opening: these steps map and count them. */
function bucketStep(table: 'allowances' | 'rollover_buckets'): TableStep {
  return {
    table,
    key: 'id',
    columns: (t) =>
      table === 'allowances'
        ? `id, user_id, ${LEFT.replaceAll('a.', '')} as left_, expires_at, exists (select 1 from ${t('users')} u where u.id = ${t(table)}.user_id) as owner_exists`
        : `id, user_id, remain as left_, expires_at, exists (select 1 from ${t('users')} u where u.id = ${t(table)}.user_id) as owner_exists,
            exists (select 1 from ${t('allowances')} a where a.id = ${t(table)}.allowance_id) as parent_exists`,
    async write(ctx, rows) {
      const tally = new Tally();
      const fresh = await freshRows(ctx, table, rows, 'id', tally);
      const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
      const accounts = [...new Set([...owners.values()].map((o) => `acc_u_${o.target_id}`))];
      const grants = await grantsOf(ctx, table, accounts, fresh.map((r) => String(r.id)));
      const maps = [];
      for (const r of fresh) {
        const owner = ownerOf(owners, r, 'user_id', tally);
        if (!owner) continue;
        if (table === 'rollover_buckets' && !bool(r.parent_exists)) {
          tally.skip('orphan');
          continue;
        }
        const grant = grants.get(String(r.id));
        if (grant) {
          maps.push({ table, sourceId: String(r.id), targetTable: 'credit_grants', targetId: grant });
          tally.imported++;
          continue;
        }
        const expires = date(r.expires_at);
        // Not a grant: expired before the run began, nothing left, or all of it paid the user's negative points.
        tally.skip(expires && expires.getTime() <= ctx.asOf.getTime() ? 'expired' : (int(r.left_) ?? 0) <= 0 ? 'empty' : 'paid_debt');
      }
      await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
      return tally.outcome;
    },
  };
}

/** The grants the users' openings made of these source rows (found through the accounts' index). */
async function grantsOf(ctx: BatchContext, table: string, accounts: string[], ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0 || accounts.length === 0) return new Map();
  const rows = await ctx.trx
    .selectFrom('credit_grants')
    .select(['id', sql<string>`metadata->>'source_id'`.as('source_id')])
    .where('account_id', 'in', accounts)
    .where('source', '=', 'import')
    .where(sql<boolean>`metadata->>'source_table' = ${table}`)
    .where(sql<string>`metadata->>'source_id'`, 'in', ids)
    .execute();
  return new Map(rows.map((r) => [String(r.source_id), r.id]));
}

async function scan(src: SourceDb, limit = 1000): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const out: Anomaly[] = [];
  const mismatch = await src.rows<Record<string, unknown>>(
    `select u.id, u.points, coalesce(h.s, 0) as history from ${t('users')} u left join (select user_id, sum(change) as s from ${t('point_transactions')} group by user_id) h on h.user_id = u.id
      where u.points <> coalesce(h.s, 0) order by u.id limit $1`,
    [limit],
  );
  for (const r of mismatch) {
    const points = int(r.points) ?? 0;
    const history = int(r.history) ?? 0;
    out.push({ kind: 'balance_mismatch', table: 'users', source_id: String(r.id), rule: 'The points win: the opening carries users.points; point_transactions are kept as history as they are', details: { points, transactions_sum: history, difference: points - history } });
  }
  const negative = await src.rows<Record<string, unknown>>(`select id, points from ${t('users')} where points < 0 order by id limit $1`, [limit]);
  for (const r of negative) {
    out.push({ kind: 'negative_balance', table: 'users', source_id: String(r.id), rule: "Paid from the user's live buckets, soonest expiry first; what is still negative is imported as debt", details: { points: int(r.points) } });
  }
  const overused = await src.rows<Record<string, unknown>>(`select id, user_id, total, used from ${t('allowances')} where used > total order by id limit $1`, [limit]);
  for (const r of overused) {
    out.push({ kind: 'overused_allowance', table: 'allowances', source_id: String(r.id), rule: 'Used beyond its total: nothing is left of it (0), the excess is not carried as debt', details: { total: int(r.total), used: int(r.used) } });
  }
  const dupes = await src.rows<Record<string, unknown>>(
    `select g.id, g.user_id, (select min(x.id) from ${t('budget_guards')} x where x.user_id = g.user_id) as first from ${t('budget_guards')} g
      where g.id <> (select min(x.id) from ${t('budget_guards')} x where x.user_id = g.user_id) order by g.id limit $1`,
    [limit],
  );
  for (const r of dupes) {
    out.push({ kind: 'duplicate_guard', table: 'budget_guards', source_id: String(r.id), rule: 'Tally has one budget guard per user: the lowest id is imported, this one is skipped', details: { user_id: str(r.user_id), imported_row: str(r.first) } });
  }
  for (const table of ['user_providers', 'point_transactions', 'allowances', 'rollover_buckets', 'user_subscriptions', 'consumption_events', 'budget_guards', 'payments']) {
    const orphans = await src.rows<Record<string, unknown>>(
      `select c.id, c.user_id from ${t(table)} c left join ${t('users')} u on u.id = c.user_id where u.id is null order by c.id limit $1`,
      [limit],
    );
    for (const r of orphans) out.push({ kind: 'orphan', table, source_id: String(r.id), rule: 'A row whose user is not in users belongs to nobody: it is not imported', details: { user_id: str(r.user_id) } });
  }
  const parentless = [
    ['rollover_buckets', 'allowance_id', 'allowances', 'A rollover bucket whose allowance is gone has no class: it is not imported'],
    ['user_subscriptions', 'plan_id', 'plans', 'A subscription whose plan is gone is not imported'],
  ] as const;
  for (const [table, column, parent, rule] of parentless) {
    const rows = await src.rows<Record<string, unknown>>(
      `select c.id, c.${column} as parent from ${t(table)} c join ${t('users')} u on u.id = c.user_id left join ${t(parent)} p on p.id = c.${column} where p.id is null order by c.id limit $1`,
      [limit],
    );
    for (const r of rows) out.push({ kind: 'orphan', table, source_id: String(r.id), rule, details: { [column]: str(r.parent) } });
  }
  return [...out, ...(await scanIdentities(src, limit))];
}

export const appBuilder: Shape = {
  name: SHAPE,
  signature: ['users', 'point_transactions', 'allowances', 'rollover_buckets', 'consumption_events'],
  steps: [plans, users, userProviders, bucketStep('allowances'), bucketStep('rollover_buckets'), pointTransactions, subscriptions, consumptionEvents, budgetGuards, payments, ...derivedSteps],
  notImported: [],
  ownerless: {
    steps: ownerlessSteps,
    notImported: [
      {
        table: 'service_tokens, projects, sessions, messages, tools_usage, user_requests, commits, env_vars, project_service_connections',
        why: "000 is a single-user app: these rows name no owner, and Tally's belong to a user; pass --owner <user id or e-mail> to import them",
      },
    ],
    findOwner: findSourceOwner,
  },
  scan: async (src, opts) => [...(await scan(src)), ...(await scanDerived(src, 1000)), ...(opts.owned ? await scanWork(src, 1000) : [])],
  review: reviewDerived,
  async sourceCredits(src, asOf) {
    const t = (n: string) => src.t(n);
    const [r] = await src.rows<Record<string, unknown>>(
      `select (select coalesce(sum(points), 0) from ${t('users')})
            + (select coalesce(sum(${LEFT}), 0) from ${t('allowances')} a join ${t('users')} u on u.id = a.user_id where ${live(src, 'a.expires_at', '$1')})
            + (select coalesce(sum(r.remain), 0) from ${t('rollover_buckets')} r join ${t('allowances')} a on a.id = r.allowance_id join ${t('users')} u on u.id = r.user_id
                where r.remain > 0 and ${live(src, 'r.expires_at', '$1')}) as total,
              (select count(*) from ${t('users')}) as accounts`,
      [asOf],
    );
    return { total: int(r?.total) ?? 0, accounts: int(r?.accounts) ?? 0 };
  },
};
