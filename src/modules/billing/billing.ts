import { type Static, type TLiteral, type TSchema, type TUnion, Type } from 'typebox';
import { iso, isoOrNull, Metadata, NullableTimestamp, Timestamp } from '../../core/schemas.js';

// ---------------------------------------------------------------------------------------------
// Closed vocabularies.
// ---------------------------------------------------------------------------------------------

export const POOL_MODES = ['shared_pool', 'hybrid'] as const;
export const WINDOWS = ['daily', 'monthly', 'yearly'] as const;
export const ROLLOVER_POLICIES = ['none', '1_cycle', 'annual'] as const;
export const INTERVALS = ['monthly', 'yearly'] as const;
export const SUBSCRIPTION_STATUSES = ['trialing', 'active', 'past_due', 'canceled'] as const;
export const PROVIDERS = ['stripe', 'paypal', 'creem', 'lemonsqueezy'] as const;
export const OVERAGE_STATUSES = ['pending', 'invoiced', 'paid', 'waived'] as const;
export const GUARD_BEHAVIORS = ['suspend', 'throttle'] as const;

export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];
export type Provider = (typeof PROVIDERS)[number];

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const literals = <T extends readonly string[]>(xs: T) =>
  Type.Union(xs.map((x) => Type.Literal(x))) as unknown as TUnion<TLiteral<T[number]>[]>;

export const ClassName = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,32}$' });
export const MetricName = Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' });
/** A decimal with up to 6 places, as a string (money rates; never a float in storage). */
export const Decimal = Type.String({ pattern: '^(0|[1-9][0-9]{0,11})(\\.[0-9]{1,6})?$' });
const Currency = Type.String({ pattern: '^[a-z]{3}$' });
const Money = Type.Integer({ minimum: 0, maximum: 1e13 });

// ---------------------------------------------------------------------------------------------
// Plans.
// ---------------------------------------------------------------------------------------------

export const Allowance = Type.Object(
  {
    class: ClassName,
    amount: Type.Integer({ minimum: 1, maximum: 1e9 }),
    window: Type.Optional(literals(WINDOWS)),
    rollover_policy: Type.Optional(literals(ROLLOVER_POLICIES)),
  },
  { additionalProperties: false },
);
export const PlanPrice = Type.Object(
  {
    provider: literals(PROVIDERS),
    provider_price_id: Type.String({ minLength: 1, maxLength: 255 }),
    billing_interval: literals(INTERVALS),
  },
  { additionalProperties: false },
);

const planFields = {
  name: Type.String({ minLength: 1, maxLength: 100 }),
  description: Type.Optional(Nullable(Type.String({ maxLength: 2000 }))),
  pool_mode: Type.Optional(literals(POOL_MODES)),
  pay_as_you_go: Type.Optional(Type.Boolean()),
  overage_unit_amount: Type.Optional(Decimal),
  usage_bonus_rate: Type.Optional(Type.Number({ minimum: 0, maximum: 10 })),
  trial_days: Type.Optional(Type.Integer({ minimum: 0, maximum: 365 })),
  /** null: the plan does not offer the interval; 0: free on it (docs/billing.md). */
  price_monthly: Type.Optional(Nullable(Money)),
  price_yearly: Type.Optional(Nullable(Money)),
  currency: Type.Optional(Currency),
  features: Type.Optional(Type.Union([Type.Array(Type.Unknown(), { maxItems: 200 }), Type.Record(Type.String(), Type.Unknown())])),
  limits: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  metadata: Type.Optional(Metadata),
  is_active: Type.Optional(Type.Boolean()),
  sort_order: Type.Optional(Type.Integer({ minimum: -1e6, maximum: 1e6 })),
  allowances: Type.Optional(Type.Array(Allowance, { maxItems: 50 })),
  prices: Type.Optional(Type.Array(PlanPrice, { maxItems: 20 })),
};

export const PlanCreateBody = Type.Object(
  { id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })), slug: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,63}$' }), ...planFields },
  { additionalProperties: false },
);
export const PlanUpdateBody = Type.Partial(Type.Object(planFields, { additionalProperties: false }), { additionalProperties: false });

export const Plan = Type.Object({
  id: Type.String(),
  slug: Type.String(),
  name: Type.String(),
  description: Nullable(Type.String()),
  pool_mode: literals(POOL_MODES),
  pay_as_you_go: Type.Boolean(),
  overage_unit_amount: Type.String(),
  usage_bonus_rate: Type.Number(),
  trial_days: Type.Integer(),
  price_monthly: Nullable(Type.Integer()),
  price_yearly: Nullable(Type.Integer()),
  currency: Type.String(),
  features: Type.Unknown(),
  limits: Type.Record(Type.String(), Type.Unknown()),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  is_active: Type.Boolean(),
  sort_order: Type.Integer(),
  allowances: Type.Array(
    Type.Object({ class: Type.String(), amount: Type.Integer(), window: literals(WINDOWS), rollover_policy: literals(ROLLOVER_POLICIES) }),
  ),
  prices: Type.Array(PlanPrice),
  created_at: Timestamp,
  updated_at: Timestamp,
});

// ---------------------------------------------------------------------------------------------
// Cost models.
// ---------------------------------------------------------------------------------------------

const costModelFields = {
  unit: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  formula: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
  base_rate: Type.Optional(Decimal),
  class: Type.Optional(ClassName),
  daily_free_quota: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e9 })),
  currency: Type.Optional(Currency),
  metadata: Type.Optional(Metadata),
  is_active: Type.Optional(Type.Boolean()),
};
export const CostModelBody = Type.Object({ metric: MetricName, ...costModelFields }, { additionalProperties: false });
export const CostModelUpdateBody = Type.Object(costModelFields, { additionalProperties: false });
export const CostModel = Type.Object({
  metric: Type.String(),
  unit: Type.String(),
  formula: Type.String(),
  base_rate: Type.String(),
  class: Type.String(),
  daily_free_quota: Type.Integer(),
  currency: Type.String(),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  is_active: Type.Boolean(),
  created_at: Timestamp,
  updated_at: Timestamp,
});

// ---------------------------------------------------------------------------------------------
// Subscriptions.
// ---------------------------------------------------------------------------------------------

export const SubscriptionCreateBody = Type.Object(
  {
    user_id: Type.String({ minLength: 1, maxLength: 128 }),
    plan_id: Type.String({ minLength: 1, maxLength: 64 }),
    billing_interval: Type.Optional(literals(INTERVALS)),
    trial_days: Type.Optional(Type.Integer({ minimum: 0, maximum: 365 })),
    pay_as_you_go: Type.Optional(Nullable(Type.Boolean())),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);
export const SubscriptionCancelBody = Type.Object(
  { at_period_end: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);
export const SubscriptionChangeBody = Type.Object(
  { plan_id: Type.String({ minLength: 1, maxLength: 64 }), billing_interval: Type.Optional(literals(INTERVALS)) },
  { additionalProperties: false },
);
export const SubscriptionUpdateBody = Type.Object(
  { pay_as_you_go: Type.Optional(Nullable(Type.Boolean())), metadata: Type.Optional(Metadata) },
  { additionalProperties: false },
);

export const Subscription = Type.Object({
  id: Type.String(),
  user_id: Type.String(),
  plan_id: Type.String(),
  status: literals(SUBSCRIPTION_STATUSES),
  billing_interval: literals(INTERVALS),
  is_primary: Type.Boolean(),
  pay_as_you_go: Type.Boolean(),
  current_period_start: Timestamp,
  current_period_end: Timestamp,
  trial_start: NullableTimestamp,
  trial_end: NullableTimestamp,
  cancel_at_period_end: Type.Boolean(),
  canceled_at: NullableTimestamp,
  ended_at: NullableTimestamp,
  provider: Nullable(Type.String()),
  provider_subscription_id: Nullable(Type.String()),
  provider_customer_id: Nullable(Type.String()),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  created_at: Timestamp,
  updated_at: Timestamp,
});

// ---------------------------------------------------------------------------------------------
// Usage events and checks.
// ---------------------------------------------------------------------------------------------

export const EventBody = Type.Object(
  {
    user_id: Type.String({ minLength: 1, maxLength: 128 }),
    metric: MetricName,
    quantity: Type.Number({ exclusiveMinimum: 0, maximum: 1e12 }),
    action_hash: Type.String({ minLength: 1, maxLength: 255 }),
    complexity_score: Type.Optional(Type.Number({ minimum: 0, maximum: 1e6 })),
    occurred_at: Type.Optional(Timestamp),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);
export const EventBatchBody = Type.Object(
  { events: Type.Array(EventBody, { minItems: 1, maxItems: 1000 }) },
  { additionalProperties: false },
);
export const CheckBody = Type.Object(
  {
    user_id: Type.String({ minLength: 1, maxLength: 128 }),
    metric: MetricName,
    quantity: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1e12 })),
    complexity_score: Type.Optional(Type.Number({ minimum: 0, maximum: 1e6 })),
  },
  { additionalProperties: false },
);

export const BREAKDOWN_SOURCES = ['free_quota', 'allowance', 'rollover', 'credits', 'overage'] as const;
export const Breakdown = Type.Array(Type.Object({ source: literals(BREAKDOWN_SOURCES), amount: Type.Integer() }));

export const EventResult = Type.Object({
  event_id: Type.String(),
  user_id: Type.String(),
  metric: Type.String(),
  quantity: Type.Number(),
  action_hash: Type.String(),
  cost: Type.Integer(),
  charged: Type.Integer(),
  free_units: Type.Number(),
  breakdown: Breakdown,
  overage: Type.Integer(),
  overage_amount: Type.Integer(),
  currency: Nullable(Type.String()),
  transaction_id: Nullable(Type.String()),
  subscription_id: Nullable(Type.String()),
  balance: Type.Integer(),
  available: Type.Integer(),
  occurred_at: Timestamp,
});

/** The part of an event's answer its row's columns do not hold: what `usage_events.result` keeps. */
export const EVENT_ANSWER_EXTRAS = ['breakdown', 'overage_amount', 'currency', 'balance', 'available', 'occurred_at'] as const;

/**
 * An event's answer (EventResult) from its `usage_events` row: the columns, plus the few fields
 * only the answer has, stored compactly in `result` (rows written before that kept the whole
 * answer there; its extras are the same). Replays and lists rebuild the answer the same way.
 */
export function eventAnswer(r: Record<string, unknown>): Static<typeof EventResult> {
  const x = (r['result'] ?? {}) as Record<string, unknown>;
  return {
    event_id: String(r['id']),
    user_id: String(r['user_id']),
    metric: String(r['metric']),
    quantity: Number(r['quantity']),
    action_hash: String(r['action_hash']),
    cost: Number(r['cost']),
    charged: Number(r['charged']),
    free_units: Number(r['free_units']),
    breakdown: x['breakdown'] as Static<typeof Breakdown>,
    overage: Number(r['overage']),
    overage_amount: Number(x['overage_amount']),
    currency: (x['currency'] as string | null | undefined) ?? null,
    transaction_id: (r['transaction_id'] as string | null | undefined) ?? null,
    subscription_id: (r['subscription_id'] as string | null | undefined) ?? null,
    balance: Number(x['balance']),
    available: Number(x['available']),
    occurred_at: String(x['occurred_at']),
  };
}

export const BatchResult = Type.Object({
  results: Type.Array(
    Type.Object({ status: Type.Integer(), event: Type.Optional(EventResult), error: Type.Optional(Type.Unknown()) }),
  ),
});
export const CheckResult = Type.Object({
  allowed: Type.Boolean(),
  remaining: Type.Integer(),
  reason: Type.Optional(Type.String()),
  cost: Type.Integer(),
  free_units_remaining: Nullable(Type.Number()),
  breakdown: Breakdown,
  overage: Type.Integer(),
  overage_amount: Type.Integer(),
});

// ---------------------------------------------------------------------------------------------
// Budget guards, overage charges, counters.
// ---------------------------------------------------------------------------------------------

export const GuardBody = Type.Object(
  {
    monthly_cap: Money,
    currency: Type.Optional(Currency),
    behavior: Type.Optional(literals(GUARD_BEHAVIORS)),
    notify: Type.Optional(Type.Boolean()),
    /** The zone the guard's months follow, fixed here (default: the user's zone when the guard is first set). */
    time_zone: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 64 }))),
  },
  { additionalProperties: false },
);
export const Guard = Type.Object({
  id: Type.String(),
  user_id: Type.String(),
  monthly_cap: Type.Integer(),
  currency: Type.String(),
  behavior: literals(GUARD_BEHAVIORS),
  notify: Type.Boolean(),
  time_zone: Nullable(Type.String()),
  window_start: Timestamp,
  window_end: NullableTimestamp,
  current_window_spend: Type.Integer(),
  alerted_80_at: NullableTimestamp,
  alerted_100_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const OverageCharge = Type.Object({
  id: Type.String(),
  user_id: Type.String(),
  subscription_id: Type.String(),
  metric: Type.String(),
  period_start: Timestamp,
  period_end: Timestamp,
  credits: Type.Integer(),
  amount: Type.Integer(),
  unit_amount: Type.String(),
  currency: Type.String(),
  status: literals(OVERAGE_STATUSES),
  invoiced_at: NullableTimestamp,
  settled_at: NullableTimestamp,
  created_at: Timestamp,
});
export const OverageStatusBody = Type.Object(
  { status: Type.Union([Type.Literal('paid'), Type.Literal('waived'), Type.Literal('invoiced')]) },
  { additionalProperties: false },
);
export const UsageCounter = Type.Object({
  metric: Type.String(),
  window: Type.String(),
  window_start: Timestamp,
  window_end: Timestamp,
  quantity: Type.Number(),
  credits: Type.Integer(),
  overage: Type.Integer(),
  events: Type.Integer(),
});

// ---------------------------------------------------------------------------------------------
// Row → API mappers.
// ---------------------------------------------------------------------------------------------

type Row = Record<string, unknown>;
const num = (v: unknown): number => Number(v);
const json = (v: unknown): Record<string, unknown> => (typeof v === 'string' ? JSON.parse(v) : (v as Record<string, unknown>)) ?? {};
/** numeric columns arrive as strings; print them without trailing zeros. */
export const decimalText = (v: unknown): string => {
  const s = String(v);
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
};

export function planBody(p: Row, allowances: Row[], prices: Row[]) {
  return {
    id: p['id'] as string,
    slug: p['slug'] as string,
    name: p['name'] as string,
    description: (p['description'] as string | null) ?? null,
    pool_mode: p['pool_mode'] as (typeof POOL_MODES)[number],
    pay_as_you_go: Boolean(p['pay_as_you_go']),
    overage_unit_amount: decimalText(p['overage_unit_amount']),
    usage_bonus_rate: num(p['usage_bonus_rate']),
    trial_days: num(p['trial_days']),
    price_monthly: p['price_monthly'] === null || p['price_monthly'] === undefined ? null : num(p['price_monthly']),
    price_yearly: p['price_yearly'] === null || p['price_yearly'] === undefined ? null : num(p['price_yearly']),
    currency: p['currency'] as string,
    features: typeof p['features'] === 'string' ? JSON.parse(p['features']) : p['features'],
    limits: json(p['limits']),
    metadata: json(p['metadata']),
    is_active: Boolean(p['is_active']),
    sort_order: num(p['sort_order']),
    allowances: allowances.map((a) => ({
      class: a['class'] as string,
      amount: num(a['amount']),
      window: a['window'] as (typeof WINDOWS)[number],
      rollover_policy: a['rollover_policy'] as (typeof ROLLOVER_POLICIES)[number],
    })),
    prices: prices.map((x) => ({
      provider: x['provider'] as Provider,
      provider_price_id: x['provider_price_id'] as string,
      billing_interval: x['billing_interval'] as (typeof INTERVALS)[number],
    })),
    created_at: iso(p['created_at'] as Date),
    updated_at: iso(p['updated_at'] as Date),
  };
}

export function costModelBody(c: Row) {
  return {
    metric: c['metric'] as string,
    unit: c['unit'] as string,
    formula: c['formula'] as string,
    base_rate: decimalText(c['base_rate']),
    class: c['class'] as string,
    daily_free_quota: num(c['daily_free_quota']),
    currency: c['currency'] as string,
    metadata: json(c['metadata']),
    is_active: Boolean(c['is_active']),
    created_at: iso(c['created_at'] as Date),
    updated_at: iso(c['updated_at'] as Date),
  };
}

export function subscriptionBody(s: Row, planPayg: boolean) {
  return {
    id: s['id'] as string,
    user_id: s['user_id'] as string,
    plan_id: s['plan_id'] as string,
    status: s['status'] as SubscriptionStatus,
    billing_interval: s['billing_interval'] as (typeof INTERVALS)[number],
    is_primary: Boolean(s['is_primary']),
    pay_as_you_go: s['pay_as_you_go'] === null || s['pay_as_you_go'] === undefined ? planPayg : Boolean(s['pay_as_you_go']),
    current_period_start: iso(s['current_period_start'] as Date),
    current_period_end: iso(s['current_period_end'] as Date),
    trial_start: isoOrNull(s['trial_start'] as Date | null),
    trial_end: isoOrNull(s['trial_end'] as Date | null),
    cancel_at_period_end: Boolean(s['cancel_at_period_end']),
    canceled_at: isoOrNull(s['canceled_at'] as Date | null),
    ended_at: isoOrNull(s['ended_at'] as Date | null),
    provider: (s['provider'] as string | null) ?? null,
    provider_subscription_id: (s['provider_subscription_id'] as string | null) ?? null,
    provider_customer_id: (s['provider_customer_id'] as string | null) ?? null,
    metadata: json(s['metadata']),
    created_at: iso(s['created_at'] as Date),
    updated_at: iso(s['updated_at'] as Date),
  };
}

export function guardBody(g: Row) {
  return {
    id: g['id'] as string,
    user_id: g['user_id'] as string,
    monthly_cap: num(g['monthly_cap']),
    currency: g['currency'] as string,
    behavior: g['behavior'] as (typeof GUARD_BEHAVIORS)[number],
    notify: Boolean(g['notify']),
    time_zone: (g['time_zone'] as string | null | undefined) ?? null,
    window_start: iso(g['window_start'] as Date),
    window_end: isoOrNull((g['window_end'] as Date | null | undefined) ?? null),
    // Stored in micro minor units (exact); shown in minor units, rounded up.
    current_window_spend: Math.ceil(num(g['current_window_spend']) / 1e6),
    alerted_80_at: isoOrNull(g['alerted_80_at'] as Date | null),
    alerted_100_at: isoOrNull(g['alerted_100_at'] as Date | null),
    created_at: iso(g['created_at'] as Date),
    updated_at: iso(g['updated_at'] as Date),
  };
}

export function overageBody(o: Row) {
  return {
    id: o['id'] as string,
    user_id: o['user_id'] as string,
    subscription_id: o['subscription_id'] as string,
    metric: o['metric'] as string,
    period_start: iso(o['period_start'] as Date),
    period_end: iso(o['period_end'] as Date),
    credits: num(o['credits']),
    amount: num(o['amount']),
    unit_amount: decimalText(o['unit_amount']),
    currency: o['currency'] as string,
    status: o['status'] as (typeof OVERAGE_STATUSES)[number],
    invoiced_at: isoOrNull(o['invoiced_at'] as Date | null),
    settled_at: isoOrNull(o['settled_at'] as Date | null),
    created_at: iso(o['created_at'] as Date),
  };
}

/** A decimal string → integer millionths (exact for ≤ 6 places). */
export function toMicros(decimal: string | number): number {
  const [whole, frac = ''] = String(decimal).split('.');
  return Number(whole) * 1e6 + Number((frac + '000000').slice(0, 6));
}

/** What a plan charges for an interval: null when it does not offer it. */
export function priceOf(plan: { price_monthly: number | null; price_yearly: number | null }, interval: (typeof INTERVALS)[number]): number | null {
  return interval === 'yearly' ? plan.price_yearly : plan.price_monthly;
}

/** Free on every interval it offers (a plan a user may subscribe to themselves). */
export function isFreePlan(plan: { price_monthly: number | null; price_yearly: number | null }): boolean {
  return (plan.price_monthly ?? 0) === 0 && (plan.price_yearly ?? 0) === 0;
}
