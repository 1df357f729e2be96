import { Type } from 'typebox';
import { EVENT_TYPES } from '../../core/events.js';
import { iso, isoOrNull, NullableTimestamp, Timestamp } from '../../core/schemas.js';

/** Outgoing webhooks (docs/webhooks-out.md): endpoints, the messages sent, their deliveries. */

export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed', 'canceled'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** The body every event is sent as; `id` is also the `webhook-id` header (the receiver's dedupe key). */
export const PAYLOAD_VERSION = 1;

/** The associated data an endpoint's secrets are sealed with (a sealed value cannot be moved to another row or slot). */
export const endpointAad = (endpointId: string, which: 'current' | 'previous') => `webhook_endpoint:${endpointId}:${which}`;

export interface EndpointRow {
  id: string;
  workspace_id: string | null;
  url: string;
  description: string | null;
  event_types: string[];
  secret_enc: string;
  previous_secret_enc: string | null;
  previous_secret_expires_at: Date | null;
  key_id: string;
  is_active: boolean;
  disabled_reason: string | null;
  failing_since: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface DeliveryRow {
  id: string;
  message_id: string;
  endpoint_id: string;
  status: string;
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  last_response: string | null;
  last_attempt_at: Date | null;
  delivered_at: Date | null;
  created_at: Date;
}

export const EventTypeName = Type.Union([...EVENT_TYPES.map((t) => Type.Literal(t)), Type.Literal('*')]);

export const WebhookEndpoint = Type.Object(
  {
    id: Type.String(),
    workspace_id: Type.Union([Type.String(), Type.Null()]),
    url: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    event_types: Type.Array(Type.String()),
    is_active: Type.Boolean(),
    disabled_reason: Type.Union([Type.String(), Type.Null()]),
    failing_since: NullableTimestamp,
    previous_secret_expires_at: NullableTimestamp,
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { title: 'WebhookEndpoint' },
);

export const WebhookDelivery = Type.Object(
  {
    id: Type.String(),
    message_id: Type.String(),
    endpoint_id: Type.String(),
    event_type: Type.String(),
    status: Type.Union(DELIVERY_STATUSES.map((s) => Type.Literal(s))),
    attempts: Type.Integer(),
    last_status_code: Type.Union([Type.Integer(), Type.Null()]),
    last_error: Type.Union([Type.String(), Type.Null()]),
    last_response: Type.Union([Type.String(), Type.Null()]),
    last_attempt_at: NullableTimestamp,
    delivered_at: NullableTimestamp,
    created_at: Timestamp,
    payload: Type.Record(Type.String(), Type.Unknown()),
  },
  { title: 'WebhookDelivery' },
);

export const endpointToApi = (r: EndpointRow) => ({
  id: r.id,
  workspace_id: r.workspace_id,
  url: r.url,
  description: r.description,
  event_types: r.event_types,
  is_active: r.is_active,
  disabled_reason: r.disabled_reason,
  failing_since: isoOrNull(r.failing_since),
  previous_secret_expires_at: isoOrNull(r.previous_secret_expires_at),
  created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
});

export const deliveryToApi = (r: DeliveryRow & { type: string; payload: unknown }) => ({
  id: r.id,
  message_id: r.message_id,
  endpoint_id: r.endpoint_id,
  event_type: r.type,
  status: r.status as DeliveryStatus,
  attempts: r.attempts,
  last_status_code: r.last_status_code,
  last_error: r.last_error,
  last_response: r.last_response,
  last_attempt_at: isoOrNull(r.last_attempt_at),
  delivered_at: isoOrNull(r.delivered_at),
  created_at: iso(r.created_at),
  payload: r.payload as Record<string, unknown>,
});
