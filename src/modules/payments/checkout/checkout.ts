import { Type } from 'typebox';
import { IdParam, iso, isoOrNull, NullableTimestamp, Timestamp } from '../../../core/schemas.js';
import { PROVIDERS, type ProviderName } from '../payments.provider.js';
import type { CheckoutView } from './checkout.repository.js';

/** creating → open | failed; open → completed when its payment succeeds. */
export const CHECKOUT_STATUSES = ['creating', 'open', 'failed', 'completed'] as const;
export type CheckoutStatus = (typeof CHECKOUT_STATUSES)[number];
export const INTERVALS = ['monthly', 'yearly'] as const;

const Nullable = <T extends import('typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Provider = Type.Union(PROVIDERS.map((p) => Type.Literal(p)));
const HttpUrl = Type.String({ minLength: 8, maxLength: 2048, pattern: '^https?://' });

export const CheckoutCreate = Type.Object(
  {
    /** The buyer; a signed-in user may leave it out (and may name only themself). */
    user_id: Type.Optional(IdParam),
    /** A credit package (sold through its own provider) or a plan (one period, one-time). */
    package_id: Type.Optional(IdParam),
    plan_id: Type.Optional(IdParam),
    /** A plan's period; default monthly when the plan has a monthly price, else yearly. */
    interval: Type.Optional(Type.Union(INTERVALS.map((i) => Type.Literal(i)))),
    /** Required for a plan; for a package it must be the package's provider if given. */
    provider: Type.Optional(Provider),
    success_url: HttpUrl,
    cancel_url: Type.Optional(HttpUrl),
    /** How long the signature holds: 30 min – 30 days, default one day. Asynchronous payment methods settle days later. */
    expires_in_seconds: Type.Optional(Type.Integer({ minimum: 1800, maximum: 2_592_000 })),
  },
  { additionalProperties: false },
);

export const Checkout = Type.Object(
  {
    id: Type.String(),
    user_id: Type.String(),
    provider: Provider,
    package_id: Nullable(Type.String()),
    plan_id: Nullable(Type.String()),
    interval: Nullable(Type.Union(INTERVALS.map((i) => Type.Literal(i)))),
    /** The signed price (minor units) and what it buys (credits: a package's). */
    amount: Type.Integer(),
    currency: Type.String(),
    credits: Type.Integer(),
    status: Type.Union(CHECKOUT_STATUSES.map((s) => Type.Literal(s))),
    /** Where to send the buyer. */
    url: Nullable(Type.String()),
    provider_checkout_id: Nullable(Type.String()),
    /** The payment that used it (one at most). */
    payment_id: Nullable(Type.String()),
    expires_at: Timestamp,
    completed_at: NullableTimestamp,
    created_at: Timestamp,
  },
  { title: 'Checkout' },
);

export const checkoutBody = (r: CheckoutView) => ({
  id: r.id,
  user_id: r.user_id,
  provider: r.provider as ProviderName,
  package_id: r.package_id,
  plan_id: r.plan_id,
  interval: r.billing_interval as (typeof INTERVALS)[number] | null,
  amount: Number(r.amount),
  currency: r.currency,
  credits: Number(r.credits),
  status: r.status as CheckoutStatus,
  url: r.url,
  provider_checkout_id: r.provider_checkout_id,
  payment_id: r.payment_id,
  expires_at: iso(r.expires_at as Date),
  completed_at: isoOrNull((r.completed_at as Date | null) ?? null),
  created_at: iso(r.created_at as Date),
});

/** A capture's answer: the checkout, and what the provider said of the capture (PayPal: COMPLETED, PENDING …). */
export const CheckoutCapture = Type.Object({ ...Checkout.properties, provider_status: Type.String() }, { title: 'CheckoutCapture' });
