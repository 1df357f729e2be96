import type { Selectable } from 'kysely';
import { PROVIDERS, type ProviderName } from '../../core/providers.js';
import { type Static, type TSchema, Type } from 'typebox';
import { iso, isoOrNull, Metadata, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import type {
  BudgetGuards,
  CostModels,
  JsonObject,
  JsonValue,
  OverageCharges,
  PlanAllowances,
  PlanPrices,
  Plans,
  Subscriptions,
  UsageCounters,
} from '../../db/database.types.js';
import type { RowOf, WireRow } from '../../db/rows.js';

// ---------------------------------------------------------------------------------------------
// Closed vocabularies.
// ---------------------------------------------------------------------------------------------

export const POOL_MODES = ['shared_pool', 'hybrid'] as const;
export const WINDOWS = ['daily', 'monthly', 'yearly'] as const;
export const ROLLOVER_POLICIES = ['none', '1_cycle', 'annual'] as const;
export const INTERVALS = ['monthly', 'yearly'] as const;
export const SUBSCRIPTION_STATUSES = ['trialing', 'active', 'past_due', 'canceled'] as const;
export { PROVIDERS } from '../../core/providers.js';
export const OVERAGE_STATUSES = ['pending', 'invoiced', 'paid', 'waived'] as const;
export const GUARD_BEHAVIORS = ['suspend', 'throttle'] as const;

export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];
export type Provider = ProviderName;
export type PoolMode = (typeof POOL_MODES)[number];
export type AllowanceWindowName = (typeof WINDOWS)[number];
export type RolloverPolicy = (typeof ROLLOVER_POLICIES)[number];
export type BillingInterval = (typeof INTERVALS)[number];
export type OverageStatus = (typeof OVERAGE_STATUSES)[number];
export type GuardBehavior = (typeof GUARD_BEHAVIORS)[number];

/**
 * A text column that a check constraint holds to a closed vocabulary (migration 0003), as its
 * union. The constraint makes the error unreachable; it is here so that no cast is.
 */
export function oneOf<T extends string>(vocabulary: readonly T[], value: string): T {
  const found = vocabulary.find((v) => v === value);
  if (found === undefined) throw new Error(`"${value}" is not one of ${vocabulary.join(', ')}`);
  return found;
}

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/**
 * A closed vocabulary as a union of literals. TypeBox's Static of a union built from an array (not
 * a tuple) is never, so the static type is given (Unsafe adds no JSON Schema keyword: the schema,
 * its validation and /openapi.json are those of the plain union).
 */
const literals = <T extends readonly string[]>(xs: T) => Type.Unsafe<T[number]>(Type.Union(xs.map((x) => Type.Literal(x))));

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
  /**
   * Below 1: the bonus is itself spent and earns bonus in turn, so a rate of 1 or more grows
   * without bound. 0.9999 is the most the column (numeric(6,4)) keeps below 1: 0.99995 would round to 1.
   */
  usage_bonus_rate: Type.Optional(Type.Number({ minimum: 0, maximum: 0.9999 })),
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
    workspace_id: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description: "Bill this workspace's pool: user_id is then the acting member (owner, admin or member; never a viewer), within their spend cap",
      }),
    ),
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
  workspace_id: Nullable(Type.String({ description: 'The workspace pool that paid (user_id is the member who spent); null: the user paid' })),
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
export function eventAnswer(r: EventAnswerRow): Static<typeof EventResult> {
  const x = (r.result ?? {}) as Record<string, unknown>;
  return {
    event_id: r.id,
    user_id: r.user_id,
    workspace_id: r.workspace_id,
    metric: r.metric,
    quantity: Number(r.quantity),
    action_hash: r.action_hash,
    cost: r.cost,
    charged: r.charged,
    free_units: Number(r.free_units),
    breakdown: x['breakdown'] as Static<typeof Breakdown>,
    overage: r.overage,
    overage_amount: Number(x['overage_amount']),
    currency: (x['currency'] as string | null | undefined) ?? null,
    transaction_id: r.transaction_id,
    subscription_id: r.subscription_id,
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
// Rows (the generated types of src/db/database.types.ts) and one mapper per entity to its API shape.
// Both drivers return the same JS types for these columns (src/db: int8 → number, numeric → string,
// timestamptz → Date, jsonb → parsed), so the mappers convert for the API only.
// ---------------------------------------------------------------------------------------------

/**
 * The usage_events columns an answer is rebuilt from, read by a query or through json (usage-sql's
 * `seen`): `quantity` and `free_units` are numeric, a string or a number (src/db/rows.ts); Number() reads both.
 */
export type EventAnswerRow = WireRow<
  Pick<
    RowOf<'usage_events'>,
    'id' | 'user_id' | 'workspace_id' | 'metric' | 'action_hash' | 'quantity' | 'free_units' | 'cost' | 'charged' | 'overage' | 'transaction_id' | 'subscription_id' | 'result'
  >,
  'quantity' | 'free_units'
>;
export type PlanRow = Selectable<Plans>;
export type PlanAllowanceRow = Selectable<PlanAllowances>;
export type PlanPriceRow = Selectable<PlanPrices>;
export type CostModelRow = Selectable<CostModels>;
export type SubscriptionRow = Selectable<Subscriptions>;
/** A subscription with its plan's pay_as_you_go, which a null in its own column inherits. */
export type SubscriptionWithPlanRow = SubscriptionRow & { plan_payg: boolean };
export type BudgetGuardRow = Selectable<BudgetGuards>;
export type OverageChargeRow = Selectable<OverageCharges>;
export type UsageCounterRow = Selectable<UsageCounters>;

/** A jsonb column the API only ever fills with an object (metadata, limits); anything else reads as {}. */
const objectOf = (v: JsonValue): JsonObject => (v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {});
/** numeric columns arrive as strings; print them without trailing zeros. */
export const decimalText = (v: unknown): string => {
  const s = String(v);
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
};

export type PlanView = Static<typeof Plan>;

export function planOf(p: PlanRow, allowances: PlanAllowanceRow[], prices: PlanPriceRow[]): PlanView {
  return {
    id: p.id,
    slug: p.slug,
    name: p.name,
    description: p.description,
    pool_mode: oneOf(POOL_MODES, p.pool_mode),
    pay_as_you_go: p.pay_as_you_go,
    overage_unit_amount: decimalText(p.overage_unit_amount),
    usage_bonus_rate: Number(p.usage_bonus_rate),
    trial_days: p.trial_days,
    price_monthly: p.price_monthly,
    price_yearly: p.price_yearly,
    currency: p.currency,
    features: p.features,
    limits: objectOf(p.limits),
    metadata: objectOf(p.metadata),
    is_active: p.is_active,
    sort_order: p.sort_order,
    allowances: allowances.map((a) => ({
      class: a.class,
      amount: a.amount,
      window: oneOf(WINDOWS, a.window),
      rollover_policy: oneOf(ROLLOVER_POLICIES, a.rollover_policy),
    })),
    prices: prices.map((x) => ({
      provider: oneOf(PROVIDERS, x.provider),
      provider_price_id: x.provider_price_id,
      billing_interval: oneOf(INTERVALS, x.billing_interval),
    })),
    created_at: iso(p.created_at),
    updated_at: iso(p.updated_at),
  };
}

export function costModelOf(c: CostModelRow): Static<typeof CostModel> {
  return {
    metric: c.metric,
    unit: c.unit,
    formula: c.formula,
    base_rate: decimalText(c.base_rate),
    class: c.class,
    daily_free_quota: c.daily_free_quota,
    currency: c.currency,
    metadata: objectOf(c.metadata),
    is_active: c.is_active,
    created_at: iso(c.created_at),
    updated_at: iso(c.updated_at),
  };
}

export function subscriptionOf(s: SubscriptionWithPlanRow): Static<typeof Subscription> {
  return {
    id: s.id,
    user_id: s.user_id,
    plan_id: s.plan_id,
    status: oneOf(SUBSCRIPTION_STATUSES, s.status),
    billing_interval: oneOf(INTERVALS, s.billing_interval),
    is_primary: s.is_primary,
    pay_as_you_go: s.pay_as_you_go ?? s.plan_payg,
    current_period_start: iso(s.current_period_start),
    current_period_end: iso(s.current_period_end),
    trial_start: isoOrNull(s.trial_start),
    trial_end: isoOrNull(s.trial_end),
    cancel_at_period_end: s.cancel_at_period_end,
    canceled_at: isoOrNull(s.canceled_at),
    ended_at: isoOrNull(s.ended_at),
    provider: s.provider,
    provider_subscription_id: s.provider_subscription_id,
    provider_customer_id: s.provider_customer_id,
    metadata: objectOf(s.metadata),
    created_at: iso(s.created_at),
    updated_at: iso(s.updated_at),
  };
}

export function guardOf(g: BudgetGuardRow): Static<typeof Guard> {
  return {
    id: g.id,
    user_id: g.user_id,
    monthly_cap: g.monthly_cap,
    currency: g.currency,
    behavior: oneOf(GUARD_BEHAVIORS, g.behavior),
    notify: g.notify,
    time_zone: g.time_zone,
    window_start: iso(g.window_start),
    window_end: isoOrNull(g.window_end),
    // Stored in micro minor units (exact); shown in minor units, rounded up.
    current_window_spend: Math.ceil(g.current_window_spend / 1e6),
    alerted_80_at: isoOrNull(g.alerted_80_at),
    alerted_100_at: isoOrNull(g.alerted_100_at),
    created_at: iso(g.created_at),
    updated_at: iso(g.updated_at),
  };
}

export function overageChargeOf(o: OverageChargeRow): Static<typeof OverageCharge> {
  return {
    id: o.id,
    user_id: o.user_id,
    subscription_id: o.subscription_id,
    metric: o.metric,
    period_start: iso(o.period_start),
    period_end: iso(o.period_end),
    credits: o.credits,
    amount: o.amount,
    unit_amount: decimalText(o.unit_amount),
    currency: o.currency,
    status: oneOf(OVERAGE_STATUSES, o.status),
    invoiced_at: isoOrNull(o.invoiced_at),
    settled_at: isoOrNull(o.settled_at),
    created_at: iso(o.created_at),
  };
}

export function usageCounterOf(r: UsageCounterRow): Static<typeof UsageCounter> {
  return {
    metric: r.metric,
    window: r.window,
    window_start: iso(r.window_start),
    window_end: iso(r.window_end),
    quantity: Number(r.quantity),
    credits: r.credits,
    overage: r.overage,
    events: r.events,
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
