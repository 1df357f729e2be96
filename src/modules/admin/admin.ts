import { Type } from 'typebox';
import { Timestamp } from '../../core/schemas.js';

/** The widths a stats bucket may have, and how far back each looks by default. */
export const BUCKETS = ['minute', 'hour', 'day'] as const;
export type Bucket = (typeof BUCKETS)[number];
export const BUCKET_SECONDS: Record<Bucket, number> = { minute: 60, hour: 3600, day: 86_400 };
export const DEFAULT_SPAN_BUCKETS: Record<Bucket, number> = { minute: 120, hour: 48, day: 30 };
/** More buckets than this in one answer is a mistake (a year of minutes), not a chart. */
export const MAX_BUCKETS = 1000;

const BucketSchema = Type.Union([Type.Literal('minute'), Type.Literal('hour'), Type.Literal('day')]);

export const StatsQuery = Type.Object(
  {
    bucket: Type.Optional(BucketSchema),
    from: Type.Optional(Timestamp),
    to: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);

const Money = Type.Record(Type.String(), Type.Integer());

export const StatsPoint = Type.Object({
  at: Timestamp,
  users: Type.Integer(),
  granted: Type.Integer(),
  spent: Type.Integer(),
  held: Type.Integer(),
  expired: Type.Integer(),
  events: Type.Integer(),
  /** Net revenue (amount − refunded) of succeeded/refunded payments, minor units per currency. */
  revenue: Money,
});

export const Stats = Type.Object({
  bucket: BucketSchema,
  from: Timestamp,
  to: Timestamp,
  totals: Type.Object({
    users: Type.Integer(),
    balance: Type.Integer(),
    held: Type.Integer(),
    credited: Type.Integer(),
    spent: Type.Integer(),
    expired: Type.Integer(),
    events: Type.Integer(),
    revenue: Money,
    jobs: Type.Record(Type.String(), Type.Integer()),
    unmatched_payments: Type.Integer(),
    /** Deliveries whose processing failed (the webhook log's `failed` rows). */
    failed_webhooks: Type.Integer(),
    /**
     * The webhook log's `rejected` rows: deliveries that failed verification, one row per provider and
     * reason (its `attempts` counts the deliveries), so this equals what `?status=rejected` lists.
     */
    rejected_webhooks: Type.Integer(),
  }),
  series: Type.Array(StatsPoint),
});

export const ReconcileReport = Type.Object({
  ok: Type.Boolean(),
  accounts: Type.Integer(),
  entries: Type.Integer(),
  open_holds: Type.Integer(),
  checked_at: Timestamp,
  drift: Type.Array(
    Type.Object({
      account_id: Type.String(),
      check: Type.String(),
      expected: Type.Union([Type.Number(), Type.String()]),
      actual: Type.Union([Type.Number(), Type.String()]),
    }),
  ),
});
