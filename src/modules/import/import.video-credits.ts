import { sql } from 'kysely';
import { newId } from '../../lib/ids.js';
import { type Anomaly, type BatchContext, HISTORY_BATCH_SCALE, type Shape, type TableStep } from './import.js';
import { importMapInsert } from './import.repository.js';
import { date, freshRows, int, minorUnits, ownerOf, ownersOf, str, Tally } from './import.rows.js';
import type { SourceDb } from './import.source.js';
import { type Opening, openingBalances } from './import.opening.js';
import { apiKeys, scanBilling, usageStats, userSubscriptions } from './import.video-credits.billing.js';

/**
 * Seed 001, `video-credits` (docs/import.md): a Supabase database with `users.credits_balance`,
 * `credit_transactions`, `video_jobs` and `payments`. Balances arrive as one opening entry per
 * account; the transactions are kept read-only beside the ledger (`imported_credit_history`), linked
 * to that entry; jobs become jobs and payments become payments, neither moving credits again.
 */
const SHAPE = 'video-credits';

const users: TableStep = {
  table: 'users',
  key: 'id',
  columns: (t) => `id::text as id, email, full_name, subscription_plan, subscription_status, created_at,
    credits_balance::int8 as balance, credits_total::int8 as credits_total, credits_spent::int8 as credits_spent,
    (select coalesce(sum(c.amount), 0)::int8 from ${t('credit_transactions')} c where c.user_id = ${t('users')}.id) as history_sum`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'users', rows, 'id', tally);
    const inserted = await insertUsers(ctx, fresh);
    const opened: Opening[] = [];
    for (const r of fresh) {
      const id = String(r.id);
      if (!inserted.has(id)) {
        tally.skip('conflict');
        ctx.anomaly({
          kind: 'target_conflict',
          table: 'users',
          source_id: id,
          rule: 'Tally already has a user with this id or e-mail: the user and their rows are not imported (resolve, then import again)',
          details: { email: str(r.email) },
        });
        continue;
      }
      const facts = { source_table: 'users', source_id: id, credits_total: int(r.credits_total), credits_spent: int(r.credits_spent), history_sum: int(r.history_sum) };
      opened.push({ userId: id, balance: int(r.balance) ?? 0, facts });
    }
    // One ledger batch for the whole batch of users (import.opening.ts).
    const entries = await openingBalances(ctx, SHAPE, opened);
    const maps = opened.map((o, i) => ({ table: 'users', sourceId: o.userId, targetTable: 'users', targetId: o.userId, facts: { balance: o.balance, opening_entry: entries[i] ?? null } }));
    tally.imported += opened.length;
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

/** Inserts users that are not in Tally yet (by id or e-mail); answers the ids inserted. */
async function insertUsers(ctx: BatchContext, rows: Record<string, unknown>[]): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const inserted = await ctx.trx
    .insertInto('users')
    .values(
      rows.map((r) => ({
        id: String(r.id),
        email: str(r.email),
        name: str(r.full_name)?.slice(0, 255) ?? null,
        // The source's plan and status stay as facts beside the imported subscriptions (docs/import.md).
        metadata: JSON.stringify({ imported_from: SHAPE, subscription_plan: str(r.subscription_plan), subscription_status: str(r.subscription_status) }),
        created_at: date(r.created_at) ?? ctx.now,
      })),
    )
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .execute();
  return new Set(inserted.map((u) => u.id));
}

const history: TableStep = {
  table: 'credit_transactions',
  key: 'id',
  batchScale: HISTORY_BATCH_SCALE,
  // One insert a batch, owners from the users step's map, keyed by the transaction's own id.
  concurrentBatches: true,
  // No per-row `owner_exists` here: the few rows whose owner is not imported are looked up after.
  columns: () => 'id::text as id, user_id::text as user_id, amount::text as amount, transaction_type, reason, metadata, created_at',
  async write(ctx, rows) {
    const tally = new Tally();
    const found = await keepTransactions(ctx, rows);
    const missing = rows.filter((r) => !found.has(String(r.user_id)));
    const existing = await sourceUsers(ctx.src, missing);
    for (const r of rows) {
      if (!found.has(String(r.user_id))) {
        tally.skip(existing.has(String(r.user_id)) ? 'owner_not_imported' : 'orphan');
        continue;
      }
      if (int(r.amount) === null) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'credit_transactions', source_id: String(r.id), rule: 'An amount that is not a whole number of credits is not kept (balances come from users.credits_balance)', details: { amount: r.amount } });
      }
    }
    const owned = rows.length - missing.length - (tally.skipped.unknown_value ?? 0);
    tally.imported += found.kept;
    tally.skip('already_imported', owned - found.kept);
    return tally.outcome;
  },
};

/**
 * A batch of transactions kept as history in one statement: each row's owner is resolved from the
 * import map inside it (the user's Tally id, account and opening entry), so no lookup travels to
 * node and back. Rows whose owner is not imported are not kept, nor rows whose amount is not a
 * whole number (null here). Answers how many were kept (the others in the batch with an owner were
 * kept before: the history's unique key) and which source users had an owner.
 */
async function keepTransactions(ctx: BatchContext, rows: Record<string, unknown>[]): Promise<{ kept: number; has(userId: string): boolean }> {
  const json = JSON.stringify(
    rows.map((r) => ({
      id: newId('importedHistory'),
      source_id: String(r.id),
      user_id: str(r.user_id),
      type: str(r.transaction_type) ?? 'unknown',
      amount: int(r.amount),
      reason: str(r.reason)?.slice(0, 2000) ?? null,
      // The source's jsonb as the driver parsed it, kept as it is.
      metadata: r.metadata ?? {},
      occurred_at: date(r.created_at),
    })),
  );
  const t = (name: string) => sql.table(`${ctx.schema}.${name}`);
  const result = await sql<{ kept: number; owners: string[] }>`
    with r as (
      select * from jsonb_to_recordset(${json}::jsonb)
        as r(id text, source_id text, user_id text, type text, amount int8, reason text, metadata jsonb, occurred_at timestamptz)
    ), o as (
      select r.*, m.target_id, m.facts->>'opening_entry' as opening_entry_id
      from r join ${t('import_map')} m on m.source = ${ctx.source} and m.source_table = 'users' and m.source_id = r.user_id
    ), ins as (
      insert into ${t('imported_credit_history')} (id, source, source_table, source_id, account_id, user_id, opening_entry_id, type, amount, reason, metadata, occurred_at)
      select o.id, ${ctx.source}, 'credit_transactions', o.source_id, 'acc_u_' || o.target_id, o.target_id, o.opening_entry_id, o.type, o.amount, o.reason, o.metadata, o.occurred_at
      from o where o.amount is not null
      on conflict (source, source_table, source_id) do nothing
      returning 1
    )
    select (select count(*) from ins)::int as kept, coalesce((select jsonb_agg(distinct o.user_id) from o), '[]'::jsonb) as owners`.execute(ctx.trx);
  const row = result.rows[0];
  const owners = new Set(row?.owners ?? []);
  return { kept: Number(row?.kept ?? 0), has: (userId) => owners.has(userId) };
}

/** Which of these rows' users exist in the source (orphans vs users not imported): one query, only for rows without an owner. */
async function sourceUsers(src: SourceDb, rows: Record<string, unknown>[]): Promise<Set<string>> {
  const ids = [...new Set(rows.flatMap((r) => (r.user_id === null || r.user_id === undefined ? [] : [String(r.user_id)])))];
  if (ids.length === 0) return new Set();
  const found = await src.rows<{ id: string }>(`select id::text as id from ${src.t('users')} where id = any($1::uuid[])`, [ids]);
  return new Set(found.map((u) => u.id));
}

const JOB_STATUS: Record<string, string> = { pending: 'pending', queued: 'pending', processing: 'processing', running: 'processing', completed: 'completed', succeeded: 'completed', failed: 'failed', canceled: 'canceled', cancelled: 'canceled' };
const FINAL = new Set(['completed', 'failed', 'canceled', 'timed_out']);

const jobs: TableStep = {
  table: 'video_jobs',
  key: 'id',
  columns: (t) => `id::text as id, user_id::text as user_id, job_id, status, prompt, image_url, result_url, cost_credits::text as cost_credits, model, created_at, updated_at,
    exists (select 1 from ${t('users')} u where u.id = ${t('video_jobs')}.user_id) as owner_exists`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'video_jobs', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const values = [];
    for (const r of fresh) {
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const status = JOB_STATUS[String(r.status ?? '').toLowerCase()];
      if (!status) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'video_jobs', source_id: String(r.id), rule: 'A job status Tally does not know is not guessed: the job is not imported', details: { status: r.status } });
        continue;
      }
      const created = date(r.created_at) ?? ctx.now;
      const updated = date(r.updated_at) ?? created;
      values.push({
        id: newId('job'),
        user_id: owner.target_id,
        kind: 'video',
        model: str(r.model)?.slice(0, 128) ?? null,
        external_id: str(r.job_id),
        status,
        prompt: str(r.prompt),
        image_url: str(r.image_url),
        result_url: str(r.result_url),
        // The source charged the job up front: its credits are inside the opening balance. Tally
        // holds and charges nothing for it (cost 0), and keeps what the source charged as a fact.
        cost: 0,
        metadata: JSON.stringify({ imported_from: SHAPE, source_id: String(r.id), source_cost_credits: int(r.cost_credits), charged_by_source: true }),
        // An unfinished job gets the usual hour to report before the scheduler times it out.
        timeout_at: FINAL.has(status) ? updated : new Date(ctx.now.getTime() + 3600_000),
        completed_at: FINAL.has(status) ? updated : null,
        created_at: created,
      });
    }
    const inserted = values.length === 0 ? [] : await ctx.trx.insertInto('jobs').values(values).onConflict((oc) => oc.doNothing()).returning(['id', 'metadata']).execute();
    const sourceIdOf = (m: unknown) => String((m as { source_id: string }).source_id);
    const done = new Set(inserted.map((j) => sourceIdOf(j.metadata)));
    for (const v of values) {
      const sid = sourceIdOf(JSON.parse(v.metadata));
      if (done.has(sid)) continue;
      tally.skip('conflict');
      ctx.anomaly({ kind: 'target_conflict', table: 'video_jobs', source_id: sid, rule: 'Tally already has a job with this external id: the source job is not imported', details: { job_id: v.external_id } });
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, inserted.map((j) => ({ table: 'video_jobs', sourceId: sourceIdOf(j.metadata), targetTable: 'jobs', targetId: j.id })));
    tally.imported += inserted.length;
    return tally.outcome;
  },
};

const PAYMENT_STATUS: Record<string, string> = { succeeded: 'succeeded', success: 'succeeded', completed: 'succeeded', paid: 'succeeded', pending: 'processing', processing: 'processing', failed: 'failed', refunded: 'refunded', disputed: 'disputed' };

const payments: TableStep = {
  table: 'payments',
  key: 'id',
  columns: (t) => `id::text as id, user_id::text as user_id, payment_id, amount::text as amount, currency, status, created_at,
    exists (select 1 from ${t('users')} u where u.id = ${t('payments')}.user_id) as owner_exists`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'payments', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const status = PAYMENT_STATUS[String(r.status ?? '').toLowerCase()];
      const amount = minorUnits(r.amount);
      const currency = (str(r.currency) ?? 'usd').toLowerCase();
      if (!status || amount === null || amount < 0 || !/^[a-z]{3}$/.test(currency) || !str(r.payment_id)) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'payments', source_id: sid, rule: 'A payment whose status, amount, currency or id Tally cannot read exactly is not imported', details: { status: r.status, amount: r.amount, currency: r.currency, payment_id: r.payment_id } });
        continue;
      }
      // The provider's payment id is unique in Tally forever: a duplicate (in the source, or a
      // payment Tally already has) is not imported; the scan reported the source's duplicates.
      const row = await ctx.trx
        .insertInto('payments')
        .values({
          id: newId('payment'),
          user_id: owner.target_id,
          provider: 'creem',
          provider_payment_id: String(r.payment_id),
          status,
          amount,
          currency,
          // What it bought is inside the opening balance: recording credits here would let a later
          // refund webhook claw back credits this payment never granted in Tally (docs/import.md).
          credits: 0,
          metadata: JSON.stringify({ imported_from: SHAPE, source_id: sid, source_amount: String(r.amount) }),
          processed_at: date(r.created_at),
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        tally.skip('duplicate');
        continue;
      }
      maps.push({ table: 'payments', sourceId: sid, targetTable: 'payments', targetId: row.id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

/**
 * The anomalies, found by aggregate queries on the source before anything is written (so `--strict`
 * refuses with nothing imported). Each lists at most `limit` cases; `count` says how many there are.
 */
async function scan(src: SourceDb, limit = 1000): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const out: Anomaly[] = [];
  const mismatch = await src.rows<{ id: string; balance: string; history: string }>(
    `select u.id::text as id, u.credits_balance::text as balance, coalesce(h.s, 0)::text as history
       from ${t('users')} u left join (select user_id, sum(amount) s from ${t('credit_transactions')} group by user_id) h on h.user_id = u.id
      where u.credits_balance <> coalesce(h.s, 0) order by u.id limit $1`,
    [limit],
  );
  for (const r of mismatch) {
    out.push({ kind: 'balance_mismatch', table: 'users', source_id: r.id, rule: 'The balance wins: the opening entry equals credits_balance; the transactions are kept as history as they are', details: { balance: Number(r.balance), transactions_sum: Number(r.history), difference: Number(r.balance) - Number(r.history) } });
  }
  const negative = await src.rows<{ id: string; balance: string }>(`select id::text as id, credits_balance::text as balance from ${t('users')} where credits_balance < 0 order by id limit $1`, [limit]);
  for (const r of negative) {
    out.push({ kind: 'negative_balance', table: 'users', source_id: r.id, rule: 'Imported as debt: the opening entry is a clawback leaving a debt grant; new credits pay it first and nothing is spendable until then', details: { balance: Number(r.balance) } });
  }
  const dupes = await src.rows<{ payment_id: string; id: string; first: string }>(
    `select payment_id, id::text as id, first_value(id::text) over (partition by payment_id order by id) as first
       from ${t('payments')} where payment_id in (select payment_id from ${t('payments')} group by payment_id having count(*) > 1)
      order by payment_id, id limit $1`,
    [limit],
  );
  for (const r of dupes.filter((d) => d.id !== d.first)) {
    out.push({ kind: 'duplicate_payment', table: 'payments', source_id: r.id, rule: 'One payment per provider id: the first row (lowest source id) is imported, this one is skipped; no credits move either way', details: { payment_id: r.payment_id, imported_row: r.first } });
  }
  for (const table of ['credit_transactions', 'video_jobs', 'payments']) {
    const orphans = await src.rows<{ id: string; user_id: string | null }>(
      `select c.id::text as id, c.user_id::text as user_id from ${t(table)} c left join ${t('users')} u on u.id = c.user_id where u.id is null order by c.id limit $1`,
      [limit],
    );
    for (const r of orphans) {
      out.push({ kind: 'orphan', table, source_id: r.id, rule: 'A row whose user is not in users belongs to nobody: it is not imported', details: { user_id: r.user_id } });
    }
  }
  return out;
}

export const videoCredits: Shape = {
  name: SHAPE,
  signature: ['users', 'credit_transactions', 'video_jobs'],
  steps: [users, history, jobs, payments, userSubscriptions, apiKeys, usageStats],
  // The seed's other optional tables: not read yet (docs/import.md), named so nothing is dropped silently.
  notImported: [
    { table: 'user_email_aliases, unmatched_payment_emails', why: 'payment matching by e-mail: Tally has user_email_aliases and unmatched payments (docs/payments.md); not imported yet — add aliases through the API' },
    { table: 'system_config', why: "the source's settings (the credit price): Tally's are configuration (TALLY_CREDIT_PRICE, docs/payments.md), set them there" },
  ],
  scan: async (src) => [...(await scan(src)), ...(await scanBilling(src, 1000))],
  async sourceCredits(src) {
    const [r] = await src.rows<{ total: string; accounts: string }>(`select coalesce(sum(credits_balance), 0)::text as total, count(*)::text as accounts from ${src.t('users')}`);
    return { total: Number(r?.total ?? 0), accounts: Number(r?.accounts ?? 0) };
  },
};
