import { type Insertable, type Selectable, sql, type Updateable } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { CreditPackages, Invoices, PaymentCustomers, Payments, UserEmailAliases, WebhookEvents } from '../../db/database.types.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';
import type { ProviderName } from './payments.provider.js';
import { must } from '../../lib/must.js';

/**
 * SQL for payments. Functions take the executor first (the caller owns the transaction). Column
 * lists are explicit: end users read these tables under RLS with column grants, and a `select *`
 * would touch columns they may not read (raw payloads).
 */
export const PAYMENT_COLUMNS = [
  'id', 'user_id', 'provider', 'provider_payment_id', 'provider_customer_id', 'customer_id', 'status', 'amount',
  'amount_refunded', 'currency', 'email', 'package_id', 'plan_id', 'provider_price_id', 'credits', 'credits_clawed_back',
  'credit_class', 'credits_expire_days', 'grant_transaction_id', 'match_status', 'unmatched_reason', 'receipt_url', 'description',
  'metadata', 'processed_at', 'refunded_at', 'disputed_at', 'created_at', 'updated_at',
] as const;
const INVOICE_COLUMNS = [
  'id', 'user_id', 'customer_id', 'provider', 'provider_invoice_id', 'provider_subscription_id', 'payment_id', 'status',
  'amount_due', 'amount_paid', 'currency', 'invoice_pdf_url', 'hosted_invoice_url', 'period_start', 'period_end', 'paid_at',
  'created_at', 'updated_at',
] as const;
const CUSTOMER_COLUMNS = ['id', 'user_id', 'provider', 'provider_customer_id', 'email', 'created_at', 'updated_at'] as const;
const ALIAS_COLUMNS = ['id', 'user_id', 'email', 'note', 'created_at'] as const;

/** A whole payments row (raw payload included: internal reads only). */
export type PaymentRow = Selectable<Payments>;
/** The columns a user may read (PAYMENT_COLUMNS): what the mappers and events see. */
export type PaymentView = Pick<PaymentRow, (typeof PAYMENT_COLUMNS)[number]>;
export type InvoiceView = Pick<Selectable<Invoices>, (typeof INVOICE_COLUMNS)[number]>;
export type CustomerView = Pick<Selectable<PaymentCustomers>, (typeof CUSTOMER_COLUMNS)[number]>;
export type AliasView = Pick<Selectable<UserEmailAliases>, (typeof ALIAS_COLUMNS)[number]>;
export type PackageRow = Selectable<CreditPackages>;
export type WebhookEventRow = Selectable<WebhookEvents>;
/** What a one-time payment's plan price is read for (planByPrice / planFind). */
export interface PlanPriceRow {
  id: string;
  price_monthly: number | null;
  price_yearly: number | null;
  currency: string;
  is_active: boolean;
  /** Only from planByPrice: the interval the price id is for (null: either). */
  billing_interval?: string | null;
}

// --- users, customers, aliases (matching) ------------------------------------------------------

export async function userExists(db: Executor, id: string): Promise<boolean> {
  return (await db.selectFrom('users').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
}

/**
 * The user whose verified address this is. An unverified address proves nothing (anyone may sign up
 * with anyone's address), so it never matches a payment (docs/payments.md, "Matching").
 */
export async function userIdByVerifiedEmail(db: Executor, email: string): Promise<string | null> {
  const row = await db
    .selectFrom('users')
    .select('id')
    .where(sql<string>`lower(email)`, '=', email.toLowerCase())
    .where('is_email_verified', '=', true)
    .executeTakeFirst();
  return row?.id ?? null;
}

/** Whether this is the user's own verified address (case-insensitive). */
export async function isVerifiedEmailOf(db: Executor, userId: string, email: string): Promise<boolean> {
  const row = await db
    .selectFrom('users')
    .select('id')
    .where('id', '=', userId)
    .where(sql<string>`lower(email)`, '=', email.trim().toLowerCase())
    .where('is_email_verified', '=', true)
    .executeTakeFirst();
  return row !== undefined;
}

export async function userIdByAlias(db: Executor, email: string): Promise<string | null> {
  const row = await db.selectFrom('user_email_aliases').select('user_id').where(sql<string>`lower(email)`, '=', email.toLowerCase()).executeTakeFirst();
  return row?.user_id ?? null;
}

export async function customerFind(db: Executor, provider: ProviderName, providerCustomerId: string): Promise<Selectable<PaymentCustomers> | undefined> {
  return db.selectFrom('payment_customers').selectAll().where('provider', '=', provider).where('provider_customer_id', '=', providerCustomerId).executeTakeFirst();
}

/** Links a provider customer to a user; an existing link wins (a customer belongs to one user). */
export async function customerLink(
  db: Executor,
  row: { id: string; user_id: string; provider: ProviderName; provider_customer_id: string; email: string | null },
): Promise<Selectable<PaymentCustomers>> {
  await db.insertInto('payment_customers').values(row).onConflict((oc) => oc.columns(['provider', 'provider_customer_id']).doNothing()).execute();
  return must(await customerFind(db, row.provider, row.provider_customer_id), 'a customer just inserted or kept is found');
}

export async function customersOfUser(db: Executor, userId: string, page: PageRequest) {
  let q = db.selectFrom('payment_customers').select([...CUSTOMER_COLUMNS, cursorColumn('payment_customers').as('cursor_us')]).where('user_id', '=', userId);
  if (page.after) q = q.where(cursorBefore('payment_customers', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

export async function aliasInsert(db: Executor, row: { id: string; user_id: string; email: string; note: string | null }): Promise<Selectable<UserEmailAliases> | undefined> {
  return db
    .insertInto('user_email_aliases')
    .values(row)
    .onConflict((oc) => oc.expression(sql`lower(email)`).doNothing())
    .returningAll()
    .executeTakeFirst();
}

export async function aliasesOfUser(db: Executor, userId: string, page: PageRequest) {
  let q = db.selectFrom('user_email_aliases').select([...ALIAS_COLUMNS, cursorColumn('user_email_aliases').as('cursor_us')]).where('user_id', '=', userId);
  if (page.after) q = q.where(cursorBefore('user_email_aliases', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

export async function aliasDelete(db: Executor, id: string): Promise<boolean> {
  const res = await db.deleteFrom('user_email_aliases').where('id', '=', id).executeTakeFirst();
  return Number(res.numDeletedRows) > 0;
}

// --- credit packages ---------------------------------------------------------------------------

export async function packageByPrice(db: Executor, provider: ProviderName, priceIds: string[]): Promise<PackageRow | undefined> {
  if (priceIds.length === 0) return undefined;
  const rows = await db
    .selectFrom('credit_packages')
    .selectAll()
    .where('provider', '=', provider)
    .where('provider_price_id', 'in', priceIds)
    .where('is_active', '=', true)
    .execute();
  // The most specific id the event named wins (price/variant before product).
  for (const id of priceIds) {
    const hit = rows.find((r) => r.provider_price_id === id);
    if (hit) return hit;
  }
  return undefined;
}

export async function packageInsert(db: Executor, row: Insertable<CreditPackages>): Promise<PackageRow> {
  return db.insertInto('credit_packages').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function packageFind(db: Executor, id: string): Promise<PackageRow | undefined> {
  return db.selectFrom('credit_packages').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function packageUpdate(db: Executor, id: string, patch: Updateable<CreditPackages>): Promise<PackageRow | undefined> {
  return db.updateTable('credit_packages').set(patch).where('id', '=', id).returningAll().executeTakeFirst();
}

export async function packageDelete(db: Executor, id: string): Promise<boolean> {
  const res = await db.deleteFrom('credit_packages').where('id', '=', id).executeTakeFirst();
  return Number(res.numDeletedRows) > 0;
}

export async function packagesPage(db: Executor, page: PageRequest) {
  let q = db.selectFrom('credit_packages').selectAll().select(cursorColumn('credit_packages').as('cursor_us'));
  if (page.after) q = q.where(cursorBefore('credit_packages', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

// --- payments ----------------------------------------------------------------------------------

/** Creates the payment row once per provider payment id, then locks it (concurrent events wait). */
export async function paymentClaim(db: Executor, row: Insertable<Payments> & { provider: ProviderName }): Promise<{ row: PaymentRow; created: boolean }> {
  const inserted = await db
    .insertInto('payments')
    .values(row)
    .onConflict((oc) => oc.columns(['provider', 'provider_payment_id']).doNothing())
    .returning('id')
    .executeTakeFirst();
  const locked = await paymentLockByProviderId(db, row.provider, row.provider_payment_id);
  return { row: must(locked, 'a payment just inserted or kept is found'), created: inserted !== undefined };
}

export async function paymentLockByProviderId(db: Executor, provider: ProviderName, providerPaymentId: string): Promise<PaymentRow | undefined> {
  return db
    .selectFrom('payments')
    .selectAll()
    .where('provider', '=', provider)
    .where('provider_payment_id', '=', providerPaymentId)
    .forUpdate()
    .executeTakeFirst();
}

// --- payment refs: every id a provider uses for one payment ----------------------------------

/**
 * The provider payment id (the payments row's key) that one of `ids` names, trying them in order:
 * a payments row keyed by the id itself (also rows from before 0009, which have no refs), then an
 * alias in payment_refs. Undefined when none is known yet.
 */
export async function paymentKeyOf(db: Executor, provider: ProviderName, ids: readonly string[]): Promise<string | undefined> {
  if (ids.length === 0) return undefined;
  const direct = await db.selectFrom('payments').select('provider_payment_id').where('provider', '=', provider).where('provider_payment_id', 'in', [...ids]).execute();
  const aliases = await db.selectFrom('payment_refs').select(['ref', 'provider_payment_id']).where('provider', '=', provider).where('ref', 'in', [...ids]).execute();
  for (const id of ids) {
    if (direct.some((r) => r.provider_payment_id === id)) return id;
    const alias = aliases.find((r) => r.ref === id);
    if (alias) return alias.provider_payment_id;
  }
  return undefined;
}

/**
 * Records `ids` as names of the payment keyed `key`. An id already recorded keeps its first
 * payment (one id never names two payments). Inserted in sorted order, so two transactions
 * recording overlapping ids wait for each other on the primary key instead of deadlocking; the
 * second then reads the first's answer through `paymentKeyOf`.
 */
export async function refsRecord(db: Executor, provider: ProviderName, ids: readonly string[], key: string): Promise<void> {
  const unique = [...new Set(ids)].filter((x) => x.length > 0 && x.length <= 255).sort();
  for (const ref of unique) {
    await db.insertInto('payment_refs').values({ provider, ref, provider_payment_id: key }).onConflict((oc) => oc.columns(['provider', 'ref']).doNothing()).execute();
  }
}

// --- plans (billing's catalogue, read only: what a one-time payment's price buys) -------------

export async function planByPrice(db: Executor, provider: ProviderName, priceIds: readonly string[]): Promise<PlanPriceRow | undefined> {
  if (priceIds.length === 0) return undefined;
  const rows = await db
    .selectFrom('plan_prices')
    .innerJoin('plans', 'plans.id', 'plan_prices.plan_id')
    .select(['plans.id', 'plans.price_monthly', 'plans.price_yearly', 'plans.currency', 'plans.is_active', 'plan_prices.provider_price_id', 'plan_prices.billing_interval'])
    .where('plan_prices.provider', '=', provider)
    .where('plan_prices.provider_price_id', 'in', [...priceIds])
    .execute();
  for (const id of priceIds) {
    const hit = rows.find((r) => r.provider_price_id === id);
    if (hit) return hit;
  }
  return undefined;
}

export async function planFind(db: Executor, id: string): Promise<PlanPriceRow | undefined> {
  return db.selectFrom('plans').select(['id', 'price_monthly', 'price_yearly', 'currency', 'is_active']).where('id', '=', id).executeTakeFirst();
}

export async function paymentLock(db: Executor, id: string): Promise<PaymentRow | undefined> {
  return db.selectFrom('payments').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

export async function paymentUpdate(db: Executor, id: string, patch: Updateable<Payments>): Promise<PaymentView> {
  return db.updateTable('payments').set(patch).where('id', '=', id).returning([...PAYMENT_COLUMNS]).executeTakeFirstOrThrow();
}

export async function paymentFind(db: Executor, id: string): Promise<PaymentView | undefined> {
  return db.selectFrom('payments').select([...PAYMENT_COLUMNS]).where('id', '=', id).executeTakeFirst();
}

export async function paymentsPage(
  db: Executor,
  page: PageRequest,
  filter: { userId?: string; status?: string; matchStatus?: string; provider?: string },
) {
  let q = db.selectFrom('payments').select([...PAYMENT_COLUMNS, cursorColumn('payments').as('cursor_us')]);
  if (filter.userId !== undefined) q = q.where('user_id', '=', filter.userId);
  if (filter.status !== undefined) q = q.where('status', '=', filter.status);
  if (filter.matchStatus !== undefined) q = q.where('match_status', '=', filter.matchStatus);
  if (filter.provider !== undefined) q = q.where('provider', '=', filter.provider);
  if (page.after) q = q.where(cursorBefore('payments', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

// --- invoices ----------------------------------------------------------------------------------

export async function invoiceUpsert(db: Executor, row: Insertable<Invoices>): Promise<void> {
  const { id: _id, provider: _p, provider_invoice_id: _i, created_at: _c, ...update } = row;
  // A late `open` never overwrites `paid` (events arrive out of order).
  await db
    .insertInto('invoices')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['provider', 'provider_invoice_id']).doUpdateSet(update).where(sql<boolean>`invoices.status <> 'paid' or excluded.status = 'paid'`),
    )
    .execute();
}

/** The subscription invoices a payment paid (each names its subscription and, if the provider says, its period). */
export async function subscriptionInvoicesOfPayment(db: Executor, paymentId: string) {
  const rows = await db
    .selectFrom('invoices')
    .select(['provider_invoice_id', 'provider_subscription_id', 'period_start', 'period_end', 'paid_at', 'created_at'])
    .where('payment_id', '=', paymentId)
    .where('provider_subscription_id', 'is not', null)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  return rows.flatMap((r) => (r.provider_subscription_id ? [{ ...r, provider_subscription_id: r.provider_subscription_id }] : []));
}

export async function invoicesOfUser(db: Executor, userId: string, page: PageRequest) {
  let q = db.selectFrom('invoices').select([...INVOICE_COLUMNS, cursorColumn('invoices').as('cursor_us')]).where('user_id', '=', userId);
  if (page.after) q = q.where(cursorBefore('invoices', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

// --- webhook log -------------------------------------------------------------------------------

export async function webhookReceive(db: Executor, row: { id: string; provider: ProviderName; event_id: string; event_type: string; payload: string; signature: string | null }): Promise<void> {
  await db
    .insertInto('webhook_events')
    .values(row)
    .onConflict((oc) => oc.columns(['provider', 'event_id']).where('event_id', 'is not', null).doNothing())
    .execute();
}

/**
 * Counts a delivery that failed verification: one row per (provider, reason), `attempts` deliveries,
 * the latest one's signature header and time (`updated_at`). Strangers cannot grow the table.
 */
export async function webhookReject(db: Executor, row: { id: string; provider: ProviderName; error: string; signature: string | null }): Promise<void> {
  await db
    .insertInto('webhook_events')
    .values({ ...row, status: 'rejected', event_id: null, attempts: 1 })
    .onConflict((oc) =>
      oc
        .columns(['provider', 'error'])
        .where('status', '=', 'rejected')
        .doUpdateSet({ attempts: sql<number>`webhook_events.attempts + 1`, signature: (eb) => eb.ref('excluded.signature') }),
    )
    .execute();
}

export async function webhookLock(db: Executor, provider: ProviderName, eventId: string): Promise<WebhookEventRow | undefined> {
  return db.selectFrom('webhook_events').selectAll().where('provider', '=', provider).where('event_id', '=', eventId).forUpdate().executeTakeFirst();
}

export async function webhookUpdate(db: Executor, provider: ProviderName, eventId: string, patch: Updateable<WebhookEvents>): Promise<void> {
  await db.updateTable('webhook_events').set(patch).where('provider', '=', provider).where('event_id', '=', eventId).execute();
}

/** Records a failed attempt after its transaction rolled back (attempts counts every try). */
export async function webhookFail(db: Executor, provider: ProviderName, eventId: string, error: string): Promise<void> {
  await db
    .updateTable('webhook_events')
    .set({ status: 'failed', error: error.slice(0, 4000), attempts: sql<number>`attempts + 1` })
    .where('provider', '=', provider)
    .where('event_id', '=', eventId)
    .where('status', 'not in', ['processed', 'ignored'])
    .execute();
}

export async function webhookPage(db: Executor, page: PageRequest, filter: { provider?: string; status?: string }) {
  let q = db.selectFrom('webhook_events').selectAll().select(cursorColumn('webhook_events').as('cursor_us'));
  if (filter.provider !== undefined) q = q.where('provider', '=', filter.provider);
  if (filter.status !== undefined) q = q.where('status', '=', filter.status);
  if (page.after) q = q.where(cursorBefore('webhook_events', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}
