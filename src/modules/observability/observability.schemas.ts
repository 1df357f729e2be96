import { Type } from 'typebox';
import { listOf, Timestamp } from '../../core/schemas.js';

const Nullable = <T extends import('typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const RouteTemplate = Type.String({ minLength: 1, maxLength: 512 });
const Method = Type.String({ pattern: '^[A-Z]{1,16}$' });

export const ApiLogSchema = Type.Object({
  request_id: Type.String(),
  created_at: Timestamp,
  method: Type.String(),
  route: Nullable(Type.String()),
  path: Type.String(),
  status: Type.Integer(),
  duration_ms: Type.Number(),
  caller_kind: Type.String(),
  caller_id: Nullable(Type.String()),
  api_key_id: Nullable(Type.String()),
  request_bytes: Nullable(Type.Integer()),
  response_bytes: Nullable(Type.Integer()),
  ip: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
});

export const ApiLogList = listOf(ApiLogSchema);

export const RequestLogQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    status: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })),
    /** 2 … 5: 2xx … 5xx. */
    status_class: Type.Optional(Type.Integer({ minimum: 1, maximum: 5 })),
    route: Type.Optional(RouteTemplate),
    method: Type.Optional(Method),
    user_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    request_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    from: Type.Optional(Timestamp),
    to: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);

export const ErrorGroupSchema = Type.Object({
  fingerprint: Type.String(),
  error_class: Type.String(),
  message: Type.String(),
  route: Nullable(Type.String()),
  method: Type.String(),
  count: Type.Integer(),
  first_seen: Timestamp,
  last_seen: Timestamp,
  last_request_id: Type.String(),
  last_stack: Nullable(Type.String()),
});

export const ErrorGroupList = Type.Object({ data: Type.Array(ErrorGroupSchema) });

export const ErrorQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    route: Type.Optional(RouteTemplate),
    from: Type.Optional(Timestamp),
    to: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);

const LatencyFields = {
  method: Type.String(),
  route: Type.String(),
  requests: Type.Integer(),
  errors: Type.Integer(),
  p50_ms: Type.Number(),
  p95_ms: Type.Number(),
  p99_ms: Type.Number(),
  max_ms: Type.Number(),
};

export const LatencyReport = Type.Object({ from: Timestamp, to: Timestamp, data: Type.Array(Type.Object(LatencyFields)) });

/** Up to 31 days back. */
const WindowMinutes = Type.Integer({ minimum: 1, maximum: 44_640, default: 60 });

export const LatencyQuery = Type.Object({ minutes: Type.Optional(WindowMinutes) }, { additionalProperties: false });

export const LatencyMinutesQuery = Type.Object(
  { minutes: Type.Optional(WindowMinutes), route: Type.Optional(RouteTemplate), method: Type.Optional(Method) },
  { additionalProperties: false },
);

export const LatencyMinutesReport = Type.Object({ data: Type.Array(Type.Object({ minute: Timestamp, ...LatencyFields })) });
