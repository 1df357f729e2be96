import { Type } from 'typebox';
import { Email, IdParam, isoOrNull, iso, Metadata, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import type { EventSink } from '../../core/events.js';
import type { Executor } from '../../db/database.js';
import type { JsonValue } from '../../db/database.types.js';
import type { AliasView, CustomerView, InvoiceView, PackageRow, PaymentView, WebhookEventRow } from './payments.repository.js';
import type { ProviderSubscriptionSync } from './payments.ports.js';
import { PROVIDERS, type ProviderName } from './payments.provider.js';

// ---------------------------------------------------------------------------------------------
// Domain: lifecycles, and what a webhook event means once normalised (the providers themselves:
// payments.provider.ts).
// ---------------------------------------------------------------------------------------------

/** created → requires_action → processing → succeeded | failed, then refunded | disputed. */
export const PAYMENT_STATUSES = ['created', 'requires_action', 'processing', 'succeeded', 'failed', 'refunded', 'disputed'] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];
/** A payment that has bought its credits (or is past that point) never goes back to pending. */
export const isSettled = (s: PaymentStatus): boolean => s === 'succeeded' || s === 'refunded' || s === 'disputed';

export const MATCH_STATUSES = ['matched', 'unmatched', 'resolved'] as const;
export const WEBHOOK_STATUSES = ['received', 'processing', 'processed', 'failed', 'ignored', 'rejected'] as const;
export const INVOICE_STATUSES = ['draft', 'open', 'paid', 'void', 'uncollectible'] as const;
export type InvoiceStatus = (typeof INVOICE_STATUSES)[number];

/** A provider payment as the event describes it (amounts in minor units, currency lowercase). */
export interface PaymentFacts {
  providerPaymentId: string;
  providerCustomerId: string | null;
  status: PaymentStatus;
  amount: number;
  currency: string;
  email: string | null;
  /** String-valued metadata the merchant attached (user_id, credits, plan_id …). */
  metadata: Record<string, string>;
  /** Price / variant id, then product id: what credit packages are keyed on. */
  priceIds: string[];
  receiptUrl: string | null;
  description: string | null;
  /**
   * Set when the payment pays a subscription invoice: it then buys credits only from metadata or
   * a package — a plan's allowances come through billing's port, never twice.
   */
  providerSubscriptionId: string | null;
  /** Other ids the provider uses for this same payment (Stripe: its invoice, checkout session, charge). */
  refs?: string[];
  /** Tax included in `amount` (it buys nothing: prices are compared net of tax). */
  tax?: number;
  /**
   * The provider's id of the checkout the payment went through, where the event names it (Stripe's
   * session, Creem's checkout, PayPal's order): a checkout Tally signed must be the one it created.
   */
  checkoutId?: string;
}

export interface InvoiceFacts {
  providerInvoiceId: string;
  providerSubscriptionId: string | null;
  providerCustomerId: string | null;
  providerPaymentId: string | null;
  email: string | null;
  status: InvoiceStatus;
  amountDue: number;
  amountPaid: number;
  currency: string;
  invoicePdfUrl: string | null;
  hostedInvoiceUrl: string | null;
  periodStart: Date | null;
  periodEnd: Date | null;
  paidAt: Date | null;
}

/** A subscription event before matching (billing receives it with the user filled in). */
export type SubscriptionFacts = Omit<ProviderSubscriptionSync, 'provider' | 'eventId' | 'userId'> & {
  email: string | null;
  metadata: Record<string, string>;
};

/**
 * What one provider event asks Tally to do, in order. Each provider file turns its documented
 * payloads into these; the service applies them inside the webhook's transaction.
 */
export type PaymentAction =
  | { kind: 'payment'; payment: PaymentFacts }
  /** `amount` is the total refunded so far (cumulative) or this refund alone (delta). */
  | { kind: 'refund'; providerPaymentId: string; amount: number; cumulative: boolean; refs?: string[] }
  | { kind: 'dispute'; providerPaymentId: string; amount: number; refs?: string[] }
  /** Ids that name one payment (Stripe's invoice_payment.paid: an invoice and its payment intent). */
  | { kind: 'alias'; providerPaymentId: string; refs: string[] }
  | { kind: 'invoice'; invoice: InvoiceFacts }
  | { kind: 'subscription'; subscription: SubscriptionFacts }
  /** A checkout that only links a provider customer to a user (subscription checkouts). */
  | { kind: 'customer'; providerCustomerId: string; email: string | null; metadata: Record<string, string> };

export interface NormalizedEvent {
  eventId: string;
  eventType: string;
  /** Empty: an event type Tally does not act on (answered 200, logged as ignored). */
  actions: PaymentAction[];
  /** Why its actions were dropped, when Tally chose to (the outcome logged instead of "ignored"). */
  ignored?: string;
}

// ---------------------------------------------------------------------------------------------
// Small parsing helpers shared by the provider files (payloads are untrusted shapes even when
// signed: a missing field is an error, not a crash).
// ---------------------------------------------------------------------------------------------

export type Json = Record<string, unknown>;
export const obj = (v: unknown): Json => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
export const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : typeof v === 'number' ? String(v) : null);
export const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : null);
export const bool = (v: unknown): boolean => v === true || v === 'true';
export const unixDate = (v: unknown): Date | null => {
  const n = num(v);
  return n === null ? null : new Date(n * 1000);
};
export const isoDate = (v: unknown): Date | null => {
  if (typeof v !== 'string' || v.length === 0) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
};
export function required<T>(v: T | null | undefined, what: string): T {
  if (v === null || v === undefined) throw new MalformedEvent(`${what} is missing`);
  return v;
}
/** `{ [key]: value }` when the value is there, else nothing (for optional fields under exactOptionalPropertyTypes). */
export const optional = <K extends string, V>(key: K, v: V | null | undefined): { [k in K]?: V } =>
  (v === null || v === undefined ? {} : { [key]: v }) as { [k in K]?: V };

/** Metadata values as strings (providers send strings; numbers are tolerated). */
export function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(obj(v))) {
    const s = str(val);
    if (s !== null) out[k] = s;
  }
  return out;
}

/** A signed payload Tally cannot read: a processing failure (5xx), logged with this message. */
export class MalformedEvent extends Error {
  override name = 'MalformedEvent';
}

/** Currencies without minor units (ISO 4217 exponent 0) among those providers accept. */
const ZERO_DECIMAL = new Set(['bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf', 'huf', 'twd']);

/** "10.50" USD → 1050; "1000" JPY → 1000. PayPal sends decimal strings. */
export function toMinorUnits(value: unknown, currency: string): number {
  const s = typeof value === 'number' ? String(value) : value;
  if (typeof s !== 'string' || !/^\d+(\.\d+)?$/.test(s)) throw new MalformedEvent(`amount "${String(value)}" is not a decimal`);
  const digits = ZERO_DECIMAL.has(currency) ? 0 : 2;
  const [whole, frac = ''] = s.split('.');
  return Number(whole) * 10 ** digits + Number((frac + '00').slice(0, digits) || '0');
}

/** 1050 USD → "10.50"; 1000 JPY → "1000" (PayPal's amounts are decimal strings). */
export function fromMinorUnits(amount: number, currency: string): string {
  const digits = ZERO_DECIMAL.has(currency) ? 0 : 2;
  if (digits === 0) return String(amount);
  const whole = Math.floor(amount / 100);
  return `${whole}.${String(amount % 100).padStart(2, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// API shapes.
// ---------------------------------------------------------------------------------------------

const Nullable = <T extends import('typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Provider = Type.Union(PROVIDERS.map((p) => Type.Literal(p)));

export const Payment = Type.Object(
  {
    id: Type.String(),
    user_id: Nullable(Type.String()),
    provider: Provider,
    provider_payment_id: Type.String(),
    provider_customer_id: Nullable(Type.String()),
    status: Type.Union(PAYMENT_STATUSES.map((s) => Type.Literal(s))),
    amount: Type.Integer(),
    amount_refunded: Type.Integer(),
    currency: Type.String(),
    email: Nullable(Type.String()),
    package_id: Nullable(Type.String()),
    plan_id: Nullable(Type.String()),
    provider_price_id: Nullable(Type.String()),
    credits: Type.Integer(),
    credits_clawed_back: Type.Integer(),
    /** What the credits were priced as when paid (a resolve grants exactly this). */
    credit_class: Nullable(Type.String()),
    credits_expire_days: Nullable(Type.Integer()),
    grant_transaction_id: Nullable(Type.String()),
    match_status: Type.Union(MATCH_STATUSES.map((s) => Type.Literal(s))),
    /** Why the payment waits in the unmatched queue (no user; a price that does not match …). */
    unmatched_reason: Nullable(Type.String()),
    receipt_url: Nullable(Type.String()),
    description: Nullable(Type.String()),
    metadata: Type.Record(Type.String(), Type.Unknown()),
    processed_at: NullableTimestamp,
    refunded_at: NullableTimestamp,
    disputed_at: NullableTimestamp,
    created_at: Timestamp,
  },
  { title: 'Payment' },
);

export const Invoice = Type.Object(
  {
    id: Type.String(),
    user_id: Nullable(Type.String()),
    customer_id: Nullable(Type.String()),
    provider: Provider,
    provider_invoice_id: Type.String(),
    provider_subscription_id: Nullable(Type.String()),
    payment_id: Nullable(Type.String()),
    status: Type.Union(INVOICE_STATUSES.map((s) => Type.Literal(s))),
    amount_due: Type.Integer(),
    amount_paid: Type.Integer(),
    currency: Type.String(),
    invoice_pdf_url: Nullable(Type.String()),
    hosted_invoice_url: Nullable(Type.String()),
    period_start: NullableTimestamp,
    period_end: NullableTimestamp,
    paid_at: NullableTimestamp,
    created_at: Timestamp,
  },
  { title: 'Invoice' },
);

export const Customer = Type.Object(
  {
    id: Type.String(),
    user_id: Type.String(),
    provider: Provider,
    provider_customer_id: Type.String(),
    email: Nullable(Type.String()),
    created_at: Timestamp,
  },
  { title: 'PaymentCustomer' },
);

export const WebhookEvent = Type.Object(
  {
    id: Type.String(),
    provider: Provider,
    event_id: Nullable(Type.String()),
    event_type: Nullable(Type.String()),
    status: Type.Union(WEBHOOK_STATUSES.map((s) => Type.Literal(s))),
    attempts: Type.Integer(),
    outcome: Nullable(Type.String()),
    error: Nullable(Type.String()),
    payload: Type.Unknown(),
    processed_at: NullableTimestamp,
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { title: 'WebhookEvent' },
);

export const WebhookAck = Type.Object(
  {
    received: Type.Boolean(),
    event_id: Type.String(),
    status: Type.Union([Type.Literal('processed'), Type.Literal('ignored')]),
    outcome: Type.String(),
    replayed: Type.Boolean(),
  },
  { title: 'WebhookAck' },
);

const PackageClass = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,32}$' });
export const CreditPackage = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    provider: Provider,
    provider_price_id: Type.String(),
    credits: Type.Integer(),
    class: Type.String(),
    expires_in_days: Nullable(Type.Integer()),
    price_amount: Nullable(Type.Integer()),
    currency: Nullable(Type.String()),
    is_active: Type.Boolean(),
    metadata: Type.Record(Type.String(), Type.Unknown()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { title: 'CreditPackage' },
);

const PackageFields = {
  name: Type.String({ minLength: 1, maxLength: 255 }),
  credits: Type.Integer({ minimum: 1, maximum: 1_000_000_000 }),
  class: Type.Optional(PackageClass),
  expires_in_days: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 36_500 }))),
  price_amount: Type.Optional(Nullable(Type.Integer({ minimum: 0, maximum: 1_000_000_000_000 }))),
  currency: Type.Optional(Nullable(Type.String({ pattern: '^[a-z]{3}$' }))),
  is_active: Type.Optional(Type.Boolean()),
  metadata: Type.Optional(Metadata),
};

export const CreditPackageCreate = Type.Object(
  { ...PackageFields, provider: Provider, provider_price_id: Type.String({ minLength: 1, maxLength: 255 }) },
  { additionalProperties: false },
);
export const CreditPackagePatch = Type.Object(
  {
    name: Type.Optional(PackageFields.name),
    credits: Type.Optional(PackageFields.credits),
    class: PackageFields.class,
    expires_in_days: PackageFields.expires_in_days,
    price_amount: PackageFields.price_amount,
    currency: PackageFields.currency,
    is_active: PackageFields.is_active,
    metadata: PackageFields.metadata,
  },
  { additionalProperties: false, minProperties: 1 },
);

export const EmailAlias = Type.Object(
  { id: Type.String(), user_id: Type.String(), email: Type.String(), note: Nullable(Type.String()), created_at: Timestamp },
  { title: 'EmailAlias' },
);
export const EmailAliasCreate = Type.Object(
  { email: Email, note: Type.Optional(Type.String({ maxLength: 500 })) },
  { additionalProperties: false },
);

export const ResolveBody = Type.Object(
  {
    user_id: IdParam,
    /** Also remember the payment's e-mail as the user's alias, so the next payment matches. */
    add_alias: Type.Optional(Type.Boolean()),
    /**
     * The credits to grant instead of what the payment was priced at (an admin's decision for a
     * payment whose price did not match); class and expiry stay the payment's.
     */
    credits: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000 })),
  },
  { additionalProperties: false },
);

export const CheckoutReferenceCreate = Type.Object(
  {
    user_id: IdParam,
    package_id: Type.Optional(IdParam),
    plan_id: Type.Optional(IdParam),
    /** 60 s – 30 days; default one day. Async payment methods settle days later: size it for them. */
    expires_in_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 2_592_000 })),
  },
  { additionalProperties: false },
);
export const CheckoutReferenceBody = Type.Object(
  {
    reference: Type.String(),
    user_id: Type.String(),
    package_id: Nullable(Type.String()),
    plan_id: Nullable(Type.String()),
    expires_at: Timestamp,
  },
  { title: 'CheckoutReference' },
);

export const ProviderParam = Type.Object({ provider: Provider }, { additionalProperties: false });

// ---------------------------------------------------------------------------------------------
// Mappers: row → API body (explicit fields; raw payloads never leave through user routes).
// ---------------------------------------------------------------------------------------------

const meta = (v: JsonValue): Record<string, unknown> => (v ?? {}) as Record<string, unknown>;

export const paymentBody = (r: PaymentView) => ({
  id: r.id,
  user_id: r.user_id,
  provider: r.provider as ProviderName,
  provider_payment_id: r.provider_payment_id,
  provider_customer_id: r.provider_customer_id,
  status: r.status as PaymentStatus,
  amount: r.amount,
  amount_refunded: r.amount_refunded,
  currency: r.currency,
  email: r.email,
  package_id: r.package_id,
  plan_id: r.plan_id,
  provider_price_id: r.provider_price_id,
  credits: r.credits,
  credits_clawed_back: r.credits_clawed_back,
  credit_class: r.credit_class,
  credits_expire_days: r.credits_expire_days,
  grant_transaction_id: r.grant_transaction_id,
  match_status: r.match_status as (typeof MATCH_STATUSES)[number],
  unmatched_reason: r.unmatched_reason,
  receipt_url: r.receipt_url,
  description: r.description,
  metadata: meta(r.metadata),
  processed_at: isoOrNull(r.processed_at),
  refunded_at: isoOrNull(r.refunded_at),
  disputed_at: isoOrNull(r.disputed_at),
  created_at: iso(r.created_at),
});

export const invoiceBody = (r: InvoiceView) => ({
  id: r.id,
  user_id: r.user_id,
  customer_id: r.customer_id,
  provider: r.provider as ProviderName,
  provider_invoice_id: r.provider_invoice_id,
  provider_subscription_id: r.provider_subscription_id,
  payment_id: r.payment_id,
  status: r.status as InvoiceStatus,
  amount_due: r.amount_due,
  amount_paid: r.amount_paid,
  currency: r.currency,
  invoice_pdf_url: r.invoice_pdf_url,
  hosted_invoice_url: r.hosted_invoice_url,
  period_start: isoOrNull(r.period_start),
  period_end: isoOrNull(r.period_end),
  paid_at: isoOrNull(r.paid_at),
  created_at: iso(r.created_at),
});

export const customerBody = (r: CustomerView) => ({
  id: r.id,
  user_id: r.user_id,
  provider: r.provider as ProviderName,
  provider_customer_id: r.provider_customer_id,
  email: r.email,
  created_at: iso(r.created_at),
});

export const webhookEventBody = (r: WebhookEventRow) => ({
  id: r.id,
  provider: r.provider as ProviderName,
  event_id: r.event_id,
  event_type: r.event_type,
  status: r.status as (typeof WEBHOOK_STATUSES)[number],
  attempts: r.attempts,
  outcome: r.outcome,
  error: r.error,
  payload: r.payload ?? null,
  processed_at: isoOrNull(r.processed_at),
  created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
});

export const creditPackageBody = (r: PackageRow) => ({
  id: r.id,
  name: r.name,
  provider: r.provider as ProviderName,
  provider_price_id: r.provider_price_id,
  credits: r.credits,
  class: r.class,
  expires_in_days: r.expires_in_days,
  price_amount: r.price_amount,
  currency: r.currency,
  is_active: r.is_active,
  metadata: meta(r.metadata),
  created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
});

export const emailAliasBody = (r: AliasView) => ({
  id: r.id,
  user_id: r.user_id,
  email: r.email,
  note: r.note,
  created_at: iso(r.created_at),
});

/**
 * A payment event (docs/webhooks-out.md): its body is the payment as `GET /v1/payments/:id`
 * shows it, told in the transaction that changed it.
 */
export function tellPayment(events: EventSink, trx: Executor, type: 'payment.succeeded' | 'payment.refunded' | 'payment.disputed' | 'payment.unmatched', row: PaymentView): Promise<void> {
  return events.emit(trx, { type, data: paymentBody(row), userId: row.user_id });
}
