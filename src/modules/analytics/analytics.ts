import { type Static, Type } from 'typebox';
import { ANALYTICS_CEILINGS } from '../../config/config.js';
import { iso, JsonObject, Timestamp } from '../../core/schemas.js';

/**
 * Product analytics events an app sends (docs/analytics.md): Segment/PostHog-like `track` calls,
 * batched, idempotent by the sender's own id per caller.
 */
export const ANALYTICS_LIMITS = {
  /** Events per batch at most (Segment allows ~500 KB per batch; Tally counts events instead); TALLY_ANALYTICS_BATCH_MAX may lower it. */
  batch: ANALYTICS_CEILINGS.batchMax,
  /** Serialized size of one event's `context`, in bytes (the table's CHECK too); properties: TALLY_ANALYTICS_PROPERTIES_MAX_BYTES, ≤ ANALYTICS_CEILINGS. */
  contextBytes: 8_192,
  /** How far a client's clock may run ahead (occurred_at). */
  futureSkewMs: 24 * 3600_000,
  /** The widest window the aggregate answers at once. */
  countsDays: 400,
  /** The most (day, event) rows the aggregate answers. */
  countsRows: 10_000,
} as const;

const Nullable = <T extends import('typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Printable = (max: number) => Type.String({ minLength: 1, maxLength: max, pattern: '^[\\x21-\\x7e]+$' });

export const EventIn = Type.Object(
  {
    /** The sender's id for this event (Segment's messageId, PostHog's uuid): a replay with it inserts nothing. */
    id: Printable(128),
    event: Type.String({ minLength: 1, maxLength: 200 }),
    /** Service only: who the event is about. A user's key may omit it or name themself. */
    user_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    anonymous_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    session_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    properties: Type.Optional(JsonObject(100)),
    context: Type.Optional(JsonObject(50)),
    /** When it happened on the client (default: when Tally got it). */
    occurred_at: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type EventIn = Static<typeof EventIn>;

export const EventsBody = Type.Object(
  { events: Type.Array(EventIn, { minItems: 1, maxItems: ANALYTICS_LIMITS.batch }) },
  { additionalProperties: false },
);

export const EventsAnswer = Type.Object({
  inserted: Type.Integer(),
  duplicates: Type.Integer(),
  results: Type.Array(Type.Object({ id: Type.String({ description: "The sender's id" }), event_id: Type.String(), duplicate: Type.Boolean() })),
});

export const AnalyticsEvent = Type.Object({
  id: Type.String(),
  client_id: Type.String(),
  source: Type.String({ description: "Who sent it: 'service' or 'user:<id>'" }),
  event: Type.String(),
  user_id: Nullable(Type.String()),
  anonymous_id: Nullable(Type.String()),
  session_id: Nullable(Type.String()),
  properties: Type.Record(Type.String(), Type.Unknown()),
  context: Type.Record(Type.String(), Type.Unknown()),
  occurred_at: Timestamp,
  api_key_id: Nullable(Type.String()),
  request_id: Nullable(Type.String()),
  created_at: Timestamp,
});
export type AnalyticsEvent = Static<typeof AnalyticsEvent>;

export const EventCount = Type.Object({ day: Type.String({ format: 'date' }), event: Type.String(), count: Type.Integer() });
export const EventCounts = Type.Object({ data: Type.Array(EventCount), truncated: Type.Boolean() });

export interface AnalyticsRow {
  id: string;
  client_id: string;
  source: string;
  event: string;
  user_id: string | null;
  anonymous_id: string | null;
  session_id: string | null;
  properties: unknown;
  context: unknown;
  occurred_at: Date | string;
  api_key_id: string | null;
  request_id: string | null;
  created_at: Date | string;
}

export function analyticsRowToApi(r: AnalyticsRow): AnalyticsEvent {
  return {
    id: r.id,
    client_id: r.client_id,
    source: r.source,
    event: r.event,
    user_id: r.user_id,
    anonymous_id: r.anonymous_id,
    session_id: r.session_id,
    properties: (r.properties ?? {}) as Record<string, unknown>,
    context: (r.context ?? {}) as Record<string, unknown>,
    occurred_at: iso(r.occurred_at),
    api_key_id: r.api_key_id,
    request_id: r.request_id,
    created_at: iso(r.created_at),
  };
}

export interface AnalyticsFilter {
  event?: string;
  userId?: string;
  anonymousId?: string;
  sessionId?: string;
  from?: Date;
  to?: Date;
}
