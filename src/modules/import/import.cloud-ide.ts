import { newId } from '../../lib/ids.js';
import { type Anomaly, type BatchContext, HISTORY_BATCH_SCALE, type Shape, type TableStep } from './import.js';
import { importMapInsert } from './import.repository.js';
import { bool, date, freshRows, int, json, keepHistory, ownerOf, ownersOf, str, Tally } from './import.rows.js';
import type { SourceDb } from './import.source.js';
import { usersWithEmptyAccounts } from './import.users.js';
import { ideSteps, scanIde } from './import.cloud-ide.ide.js';
import { scanFiles } from './import.cloud-ide.files.js';

/**
 * Seed 002, `cloud-ide` (docs/import.md): a Supabase design of 30 tables. This slice moves its
 * accounts and money: users (empty accounts: the design has no credit balance), workspaces and their
 * members, subscription plans with their Stripe prices, Stripe customers, subscriptions, invoices,
 * and usage records as read-only history; then its projects and IDE tables (import.cloud-ide.ide.ts).
 * The tables Tally has no home for, or cannot take as they are, are named in every report.
 */
const SHAPE = 'cloud-ide';
const exists = (t: (n: string) => string, table: string, column: string, parent = 'users') =>
  `exists (select 1 from ${t(parent)} p where p.id = ${t(table)}.${column})`;

function conflict(ctx: BatchContext, tally: Tally, table: string, sourceId: string, rule: string, details: Record<string, unknown> = {}): void {
  tally.skip('conflict');
  ctx.anomaly({ kind: 'target_conflict', table, source_id: sourceId, rule, details });
}

const users = usersWithEmptyAccounts(
  SHAPE,
  'id::text as id, email, full_name, avatar_url, bio, github_username, twitter_username, website_url, preferences, created_at',
  (r, now) => ({
    id: String(r.id),
    email: str(r.email),
    name: str(r.full_name)?.slice(0, 255) ?? null,
    avatar_url: str(r.avatar_url),
    bio: str(r.bio),
    github_username: str(r.github_username),
    twitter_username: str(r.twitter_username),
    website_url: str(r.website_url),
    preferences: JSON.stringify(json(r.preferences) ?? {}),
    metadata: JSON.stringify({ imported_from: SHAPE }),
    created_at: date(r.created_at) ?? now,
  }),
);

const workspaces: TableStep = {
  table: 'workspaces',
  key: 'id',
  columns: (t) => `id::text as id, name, slug, description, owner_id::text as owner_id, settings, is_active, created_at, ${exists(t, 'workspaces', 'owner_id')} as owner_exists`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'workspaces', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'owner_id');
    const maps = [];
    for (const r of fresh) {
      const id = String(r.id);
      const owner = ownerOf(owners, r, 'owner_id', tally);
      if (!owner) continue;
      const row = await ctx.trx
        .insertInto('workspaces')
        .values({ id, name: String(r.name), slug: String(r.slug), description: str(r.description), owner_id: owner.target_id, settings: JSON.stringify(json(r.settings) ?? {}), is_active: r.is_active === null ? true : bool(r.is_active), created_at: date(r.created_at) ?? ctx.now })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        conflict(ctx, tally, 'workspaces', id, 'Tally already has a workspace with this id or slug: it and its members are not imported', { slug: r.slug });
        continue;
      }
      // Tally's owner is a member with the role owner (one per workspace); the source's owner_id says who.
      await ctx.trx.insertInto('workspace_members').values({ workspace_id: id, user_id: owner.target_id, role: 'owner', joined_at: date(r.created_at) ?? ctx.now }).execute();
      maps.push({ table: 'workspaces', sourceId: id, targetTable: 'workspaces', targetId: id, facts: { owner_id: owner.target_id } });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

const members: TableStep = {
  table: 'workspace_members',
  key: 'id',
  columns: (t) => `id::text as id, workspace_id::text as workspace_id, user_id::text as user_id, role, invited_by::text as invited_by, joined_at,
    ${exists(t, 'workspace_members', 'user_id')} and ${exists(t, 'workspace_members', 'workspace_id', 'workspaces')} as owner_exists`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'workspace_members', rows, 'id', tally);
    const users = await ownersOf(ctx, 'users', fresh, 'user_id');
    const spaces = await ownersOf(ctx, 'workspaces', fresh, 'workspace_id');
    const inviters = await ownersOf(ctx, 'users', fresh, 'invited_by');
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const user = ownerOf(users, r, 'user_id', tally);
      if (!user) continue;
      const space = ownerOf(spaces, r, 'workspace_id', tally);
      if (!space) continue;
      const target = `${space.target_id}/${user.target_id}`;
      // The owner's row was written with the workspace: this one is it.
      if (space.facts.owner_id === user.target_id) {
        maps.push({ table: 'workspace_members', sourceId: sid, targetTable: 'workspace_members', targetId: target });
        tally.imported++;
        continue;
      }
      // One owner per workspace in Tally: a second "owner" (the scan reported it) joins as an admin.
      const role = r.role === 'owner' ? 'admin' : String(r.role);
      const row = await ctx.trx
        .insertInto('workspace_members')
        .values({ workspace_id: space.target_id, user_id: user.target_id, role, invited_by: inviters.get(String(r.invited_by))?.target_id ?? null, joined_at: date(r.joined_at) ?? ctx.now })
        .onConflict((oc) => oc.doNothing())
        .returning('user_id')
        .executeTakeFirst();
      if (!row) {
        conflict(ctx, tally, 'workspace_members', sid, 'Tally already has this membership: not imported twice');
        continue;
      }
      maps.push({ table: 'workspace_members', sourceId: sid, targetTable: 'workspace_members', targetId: target });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

const SLUG = /^[a-z0-9][a-z0-9_-]{0,63}$/;

const plans: TableStep = {
  table: 'subscription_plans',
  key: 'id',
  columns: () => 'id::text as id, name, slug, description, price_monthly, price_yearly, stripe_price_id_monthly, stripe_price_id_yearly, features, limits, is_active, sort_order, created_at',
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'subscription_plans', rows, 'id', tally);
    const maps = [];
    for (const r of fresh) {
      const id = String(r.id);
      const monthly = int(r.price_monthly);
      const yearly = int(r.price_yearly);
      if (!SLUG.test(String(r.slug)) || monthly === null || monthly < 0 || yearly === null || yearly < 0) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'subscription_plans', source_id: id, rule: "A plan whose slug or prices Tally cannot take as they are is not imported (nor its subscriptions)", details: { slug: r.slug, price_monthly: r.price_monthly, price_yearly: r.price_yearly } });
        continue;
      }
      const row = await ctx.trx
        .insertInto('plans')
        .values({
          id,
          slug: String(r.slug),
          name: String(r.name).slice(0, 100),
          description: str(r.description)?.slice(0, 2000) ?? null,
          price_monthly: monthly,
          price_yearly: yearly,
          features: JSON.stringify(json(r.features) ?? []),
          limits: JSON.stringify(json(r.limits) ?? {}),
          is_active: r.is_active === null ? true : bool(r.is_active),
          sort_order: int(r.sort_order) ?? 0,
          metadata: JSON.stringify({ imported_from: SHAPE }),
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        conflict(ctx, tally, 'subscription_plans', id, 'Tally already has a plan with this id, name or slug: not imported (nor its subscriptions)', { slug: r.slug });
        continue;
      }
      const prices = [
        [str(r.stripe_price_id_monthly), 'monthly'],
        [str(r.stripe_price_id_yearly), 'yearly'],
      ].filter((p): p is [string, string] => p[0] !== null);
      if (prices.length > 0) {
        await ctx.trx
          .insertInto('plan_prices')
          .values(prices.map(([price, interval]) => ({ provider: 'stripe', provider_price_id: price, plan_id: id, billing_interval: interval })))
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
      maps.push({ table: 'subscription_plans', sourceId: id, targetTable: 'plans', targetId: id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

const customers: TableStep = {
  table: 'customers',
  key: 'id',
  columns: (t) => `id::text as id, user_id::text as user_id, stripe_customer_id, email, billing_address, metadata, created_at, ${exists(t, 'customers', 'user_id')} as owner_exists`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'customers', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const id = newId('customer');
      const row = await ctx.trx
        .insertInto('payment_customers')
        .values({ id, user_id: owner.target_id, provider: 'stripe', provider_customer_id: String(r.stripe_customer_id), email: str(r.email), billing_address: JSON.stringify(json(r.billing_address)), metadata: JSON.stringify({ ...(objectOf(json(r.metadata)) ?? {}), imported_from: SHAPE }), created_at: date(r.created_at) ?? ctx.now })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        conflict(ctx, tally, 'customers', sid, 'Tally already has this Stripe customer: not imported (nor its subscriptions and invoices)', { stripe_customer_id: r.stripe_customer_id });
        continue;
      }
      maps.push({ table: 'customers', sourceId: sid, targetTable: 'payment_customers', targetId: id, facts: { user_id: owner.target_id, stripe_customer_id: String(r.stripe_customer_id) } });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

const objectOf = (v: unknown): Record<string, unknown> | null => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null);

/** Stripe's statuses as Tally's: `unpaid` (retries exhausted, still not canceled) is past due. */
const STATUS: Record<string, string> = { active: 'active', past_due: 'past_due', unpaid: 'past_due', canceled: 'canceled', trialing: 'trialing' };

const subscriptions: TableStep = {
  table: 'subscriptions',
  key: 'id',
  columns: (t) => `id::text as id, customer_id::text as customer_id, plan_id::text as plan_id, stripe_subscription_id, status, billing_interval, current_period_start, current_period_end,
    cancel_at_period_end, canceled_at, trial_start, trial_end, created_at, updated_at,
    ${exists(t, 'subscriptions', 'customer_id', 'customers')} as owner_exists,
    (select min(x.id::text) from ${t('subscriptions')} x join ${t('customers')} cx on cx.id = x.customer_id
      where cx.user_id = (select c.user_id from ${t('customers')} c where c.id = ${t('subscriptions')}.customer_id) and x.status <> 'canceled') as primary_id`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'subscriptions', rows, 'id', tally);
    const custs = await ownersOf(ctx, 'customers', fresh, 'customer_id');
    const planMaps = await ownersOf(ctx, 'subscription_plans', fresh, 'plan_id');
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const customer = ownerOf(custs, r, 'customer_id', tally);
      if (!customer) continue;
      const plan = planMaps.get(String(r.plan_id));
      if (!plan) {
        tally.skip('orphan');
        continue;
      }
      const status = STATUS[String(r.status)];
      const start = date(r.current_period_start);
      const end = date(r.current_period_end);
      if (!status || !start || !end || end <= start) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'subscriptions', source_id: sid, rule: 'A subscription whose status or period Tally cannot read is not imported', details: { status: r.status } });
        continue;
      }
      const canceled = status === 'canceled';
      const id = newId('subscription');
      const row = await ctx.trx
        .insertInto('subscriptions')
        .values({
          id,
          user_id: String(customer.facts.user_id),
          plan_id: plan.target_id,
          status,
          billing_interval: r.billing_interval === 'yearly' ? 'yearly' : 'monthly',
          // One live primary per user in Tally: the lowest source id of the user's live ones (the scan reported the others).
          is_primary: canceled || str(r.primary_id) === sid,
          current_period_start: start,
          current_period_end: end,
          anchor_at: start,
          trial_start: date(r.trial_start),
          trial_end: date(r.trial_end),
          cancel_at_period_end: bool(r.cancel_at_period_end),
          canceled_at: date(r.canceled_at),
          ended_at: canceled ? (date(r.canceled_at) ?? end) : null,
          cycles_due_at: canceled ? null : end,
          provider: 'stripe',
          provider_subscription_id: String(r.stripe_subscription_id),
          provider_customer_id: str(customer.facts.stripe_customer_id),
          metadata: JSON.stringify({ imported_from: SHAPE, source_id: sid, source_status: str(r.status) }),
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        conflict(ctx, tally, 'subscriptions', sid, 'Tally already has this Stripe subscription, or a live primary subscription for the user: not imported', { stripe_subscription_id: r.stripe_subscription_id });
        continue;
      }
      maps.push({ table: 'subscriptions', sourceId: sid, targetTable: 'subscriptions', targetId: id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

const INVOICE_STATUS = new Set(['draft', 'open', 'paid', 'void', 'uncollectible']);

const invoices: TableStep = {
  table: 'invoices',
  key: 'id',
  columns: (t) => `id::text as id, customer_id::text as customer_id, stripe_invoice_id, amount_due, amount_paid, currency, status, invoice_pdf_url, period_start, period_end, paid_at, created_at,
    ${exists(t, 'invoices', 'customer_id', 'customers')} as owner_exists`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'invoices', rows, 'id', tally);
    const custs = await ownersOf(ctx, 'customers', fresh, 'customer_id');
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const customer = ownerOf(custs, r, 'customer_id', tally);
      if (!customer) continue;
      const due = int(r.amount_due);
      const paid = r.amount_paid === null ? 0 : int(r.amount_paid);
      const currency = (str(r.currency) ?? 'usd').toLowerCase();
      if (due === null || due < 0 || paid === null || paid < 0 || !INVOICE_STATUS.has(String(r.status)) || !/^[a-z]{3}$/.test(currency)) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'invoices', source_id: sid, rule: 'An invoice whose amounts, status or currency Tally cannot take exactly is not imported', details: { amount_due: r.amount_due, amount_paid: r.amount_paid, currency: r.currency } });
        continue;
      }
      const id = newId('invoice');
      const row = await ctx.trx
        .insertInto('invoices')
        .values({
          id,
          user_id: String(customer.facts.user_id),
          customer_id: customer.target_id,
          provider: 'stripe',
          provider_invoice_id: String(r.stripe_invoice_id),
          status: String(r.status),
          amount_due: due,
          amount_paid: paid,
          currency,
          invoice_pdf_url: str(r.invoice_pdf_url),
          period_start: date(r.period_start),
          period_end: date(r.period_end),
          paid_at: date(r.paid_at),
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        conflict(ctx, tally, 'invoices', sid, 'Tally already has this Stripe invoice: not imported twice', { stripe_invoice_id: r.stripe_invoice_id });
        continue;
      }
      maps.push({ table: 'invoices', sourceId: sid, targetTable: 'invoices', targetId: id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

const usage: TableStep = {
  table: 'usage_records',
  key: 'id',
  batchScale: HISTORY_BATCH_SCALE,
  columns: (t) => `id::text as id, user_id::text as user_id, workspace_id::text as workspace_id, resource_type, amount::text as amount, unit, metadata, recorded_at, ${exists(t, 'usage_records', 'user_id')} as owner_exists`,
  async write(ctx, rows) {
    const tally = new Tally();
    const owners = await ownersOf(ctx, 'users', rows, 'user_id');
    const values = [];
    for (const r of rows) {
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      values.push({
        id: newId('importedHistory'),
        source: ctx.source,
        source_table: 'usage_records',
        source_id: String(r.id),
        account_id: `acc_u_${owner.target_id}`,
        user_id: owner.target_id,
        opening_entry_id: null,
        type: `usage:${String(r.resource_type)}`.slice(0, 64),
        // Usage was measured, never priced in credits here: history only, the quantity kept exactly as text.
        amount: 0,
        reason: null,
        metadata: { resource_type: str(r.resource_type), quantity: str(r.amount), unit: str(r.unit), workspace_id: str(r.workspace_id), metadata: json(r.metadata) },
        occurred_at: date(r.recorded_at),
      });
    }
    await keepHistory(ctx, values, tally);
    return tally.outcome;
  },
};

async function scan(src: SourceDb, limit = 1000): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const out: Anomaly[] = [];
  const orphanRule = 'A row whose owner (user, workspace, customer or plan) is not in the source belongs to nobody: it is not imported';
  const checks: [string, string, string][] = [
    ['workspaces', 'owner_id', 'users'],
    ['workspace_members', 'user_id', 'users'],
    ['workspace_members', 'workspace_id', 'workspaces'],
    ['customers', 'user_id', 'users'],
    ['subscriptions', 'customer_id', 'customers'],
    ['subscriptions', 'plan_id', 'subscription_plans'],
    ['invoices', 'customer_id', 'customers'],
    ['usage_records', 'user_id', 'users'],
  ];
  const seen = new Set<string>();
  for (const [table, column, parent] of checks) {
    const rows = await src.rows<{ id: string; parent: string | null }>(
      `select c.id::text as id, c.${column}::text as parent from ${t(table)} c left join ${t(parent)} p on p.id = c.${column} where p.id is null order by c.id limit $1`,
      [limit],
    );
    for (const r of rows) {
      if (seen.has(`${table}/${r.id}`)) continue;
      seen.add(`${table}/${r.id}`);
      out.push({ kind: 'orphan', table, source_id: r.id, rule: orphanRule, details: { [column]: r.parent } });
    }
  }
  const owners = await src.rows<{ id: string; workspace_id: string }>(
    `select m.id::text as id, m.workspace_id::text as workspace_id from ${t('workspace_members')} m join ${t('workspaces')} w on w.id = m.workspace_id
      where m.role = 'owner' and m.user_id <> w.owner_id order by m.id limit $1`,
    [limit],
  );
  for (const r of owners) out.push({ kind: 'second_owner', table: 'workspace_members', source_id: r.id, rule: "Tally has one owner per workspace (the workspace's owner_id): this member joins as an admin", details: { workspace_id: r.workspace_id } });
  const live = await src.rows<{ id: string; user_id: string }>(
    `select s.id::text as id, c.user_id::text as user_id from ${t('subscriptions')} s join ${t('customers')} c on c.id = s.customer_id
      where s.status <> 'canceled' and s.id::text <> (select min(x.id::text) from ${t('subscriptions')} x join ${t('customers')} cx on cx.id = x.customer_id where cx.user_id = c.user_id and x.status <> 'canceled')
      order by s.id limit $1`,
    [limit],
  );
  for (const r of live) out.push({ kind: 'duplicate_subscription', table: 'subscriptions', source_id: r.id, rule: "One live primary subscription per user in Tally: the lowest source id is primary, this one is imported as a secondary (is_primary false)", details: { user_id: r.user_id } });
  return [...out, ...(await scanIde(src, limit)), ...(await scanFiles(src, limit))];
}

export const cloudIde: Shape = {
  name: SHAPE,
  signature: ['users', 'workspaces', 'workspace_members', 'subscription_plans', 'subscriptions', 'usage_records'],
  steps: [users, workspaces, members, plans, customers, subscriptions, invoices, usage, ...ideSteps],
  notImported: [
    { table: 'environment_variables, api_integrations', why: 'their *_encrypted values were sealed by the source (pgcrypto) with a key Tally does not hold: set them again through the secrets API' },
    { table: 'user_sessions_extended', why: 'a session is a sign-in Tally did not make: users sign in again' },
    { table: 'api_logs, error_logs, analytics_events, performance_metrics, webhook_logs', why: 'logs and metrics: not money, and request bodies are never kept (docs/schema.md)' },
  ],
  scan: (src) => scan(src),
  async sourceCredits(src) {
    const [r] = await src.rows<{ accounts: string }>(`select count(*)::text as accounts from ${src.t('users')}`);
    return { total: 0, accounts: Number(r?.accounts ?? 0) };
  },
};
