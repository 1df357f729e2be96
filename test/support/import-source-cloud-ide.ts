import { randomUUID } from 'node:crypto';
import { createSource, type Source } from './import-source.js';

/**
 * Seed 002 (`cloud-ide`) as an import source: every SQL block of the seed (import-sources/cloud-ide.sql)
 * in a fixture schema. Changes, and only these: `public.` qualifies nothing (the fixture's schema is
 * first on the search path); `users.id` does not reference `auth.users`, and the four policies that
 * call `auth.uid()` and the trigger on `auth.users` are left out — Supabase's auth schema is not part
 * of the source the import reads.
 */
export function createCloudIdePostgres(): Promise<Source> {
  return createSource('cloud-ide', (sql) =>
    sql
      .replaceAll('public.', '')
      .replace('REFERENCES auth.users(id) ON DELETE CASCADE', '')
      .replace(/CREATE POLICY [\s\S]*?;\n/g, '')
      .replace(/CREATE TRIGGER on_auth_user_created[\s\S]*?;\n/, ''),
  );
}

export interface CloudIdeFixture {
  users: number;
  workspaces: number;
  members: number;
  customers: number;
  subscriptions: number;
  byStatus: Record<string, number>;
  invoices: number;
  amountPaid: number;
  usage: number;
  /** The user with two live subscriptions, and the workspace member who claimed to be a second owner. */
  twoLive: string;
  secondOwner: { workspace: string; user: string };
}

/**
 * `users` users; six own a workspace with members of every role; two plans (one with Stripe prices);
 * nine Stripe customers with subscriptions in every status, invoices and usage records; then each
 * anomaly: a second "owner" in a workspace, a user with two live subscriptions, and orphans of every
 * owner relation (workspace, member, customer, subscription without customer or plan, invoice, usage).
 */
export async function fillCloudIde(src: Source, users: number): Promise<CloudIdeFixture> {
  await src.query('set session_replication_role = replica');
  const f: CloudIdeFixture = { users: 0, workspaces: 0, members: 0, customers: 0, subscriptions: 0, byStatus: {}, invoices: 0, amountPaid: 0, usage: 0, twoLive: '', secondOwner: { workspace: '', user: '' } };
  const ids: string[] = [];
  for (let u = 0; u < users; u++) {
    const id = randomUUID();
    ids.push(id);
    await src.query('insert into users (id, email, full_name, github_username, preferences) values ($1, $2, $3, $4, $5)', [id, `c${u}@example.com`, `Coder ${u}`, `gh${u}`, JSON.stringify({ theme: 'dark' })]);
    f.users++;
    for (let k = 0; k < 2; k++) {
      await src.query("insert into usage_records (user_id, resource_type, amount, unit) values ($1, $2, $3, 'tokens')", [id, k ? 'ai_tokens' : 'executions', `${1234 + u}.5678`]);
      f.usage++;
    }
  }
  const user = (i: number) => ids[i] as string;
  const roles = ['admin', 'member', 'viewer'];
  for (let w = 0; w < 6; w++) {
    const [ws] = await src.query<{ id: string }>('insert into workspaces (name, slug, owner_id) values ($1, $2, $3) returning id::text as id', [`Space ${w}`, `space-${w}`, user(w)]);
    f.workspaces++;
    await src.query("insert into workspace_members (workspace_id, user_id, role) values ($1, $2, 'owner')", [ws?.id, user(w)]);
    f.members++;
    for (let m = 1; m <= 2; m++) {
      const member = (w + m + 5) % users;
      await src.query('insert into workspace_members (workspace_id, user_id, role, invited_by) values ($1, $2, $3, $4)', [ws?.id, user(member), roles[(w + m) % 3], user(w)]);
      f.members++;
    }
    if (w === 0) {
      f.secondOwner = { workspace: String(ws?.id), user: user(11) };
      await src.query("insert into workspace_members (workspace_id, user_id, role) values ($1, $2, 'owner')", [ws?.id, user(11)]);
      f.members++;
    }
  }
  const [free] = await src.query<{ id: string }>("insert into subscription_plans (name, slug, price_monthly, price_yearly) values ('Free', 'free', 0, 0) returning id::text as id");
  const [pro] = await src.query<{ id: string }>(
    `insert into subscription_plans (name, slug, price_monthly, price_yearly, stripe_price_id_monthly, stripe_price_id_yearly, features, limits, sort_order)
     values ('Pro', 'pro', 1900, 19000, 'price_pro_m', 'price_pro_y', '["ai"]', '{"projects": 10}', 1) returning id::text as id`,
  );
  const statuses = ['active', 'trialing', 'past_due', 'unpaid', 'canceled'];
  const tallyStatus = (s: string) => (s === 'unpaid' ? 'past_due' : s);
  const sub = async (customer: string | undefined, plan: string | undefined, status: string, n: string) => {
    await src.query(
      `insert into subscriptions (customer_id, plan_id, stripe_subscription_id, status, billing_interval, current_period_start, current_period_end, canceled_at)
       values ($1, $2, $3, $4, $5, now() - interval '3 days', now() + interval '27 days', $6)`,
      [customer, plan, `sub_${n}`, status, Number(n.replace(/\D/g, '') || 0) % 2 ? 'yearly' : 'monthly', status === 'canceled' ? new Date() : null],
    );
  };
  const customerIds: string[] = [];
  for (let c = 0; c < 9; c++) {
    const [cust] = await src.query<{ id: string }>('insert into customers (user_id, stripe_customer_id, email) values ($1, $2, $3) returning id::text as id', [user(c), `cus_${c}`, `c${c}@example.com`]);
    customerIds.push(String(cust?.id));
    f.customers++;
    if (c === 8) {
      // A live subscription whose plan is gone: an orphan, on a customer with no other subscription.
      await sub(cust?.id, randomUUID(), 'active', 'noplan');
      continue;
    }
    const status = statuses[c % 5] as string;
    await sub(cust?.id, c % 2 ? free?.id : pro?.id, status, String(c));
    f.subscriptions++;
    f.byStatus[tallyStatus(status)] = (f.byStatus[tallyStatus(status)] ?? 0) + 1;
    for (let i = 0; i < (c % 3) + 1; i++) {
      const paid = i === 0 ? 1900 : null;
      await src.query("insert into invoices (customer_id, stripe_invoice_id, amount_due, amount_paid, status) values ($1, $2, 1900, $3, $4)", [cust?.id, `in_${c}_${i}`, paid, paid ? 'paid' : 'open']);
      f.invoices++;
      f.amountPaid += paid ?? 0;
    }
  }
  // Two live subscriptions for one user: the lower source id is primary.
  await sub(customerIds[0], pro?.id, 'active', 'second');
  f.subscriptions++;
  f.byStatus.active = (f.byStatus.active ?? 0) + 1;
  f.twoLive = user(0);
  // Orphans.
  const ghost = randomUUID();
  await src.query("insert into workspaces (name, slug, owner_id) values ('Ghost', 'ghost', $1)", [ghost]);
  const [ws0] = await src.query<{ id: string }>("select id::text as id from workspaces where slug = 'space-0'");
  await src.query("insert into workspace_members (workspace_id, user_id, role) values ($1, $2, 'member')", [ws0?.id, ghost]);
  await src.query("insert into customers (user_id, stripe_customer_id) values ($1, 'cus_ghost')", [ghost]);
  await sub(randomUUID(), pro?.id, 'active', 'nocustomer');
  await src.query("insert into invoices (customer_id, stripe_invoice_id, amount_due, status) values ($1, 'in_ghost', 100, 'open')", [randomUUID()]);
  await src.query("insert into usage_records (user_id, resource_type, amount, unit) values ($1, 'api_calls', 1, 'calls')", [ghost]);
  return f;
}
