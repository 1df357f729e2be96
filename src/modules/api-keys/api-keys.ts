import { Type } from 'typebox';
import { iso, isoOrNull, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import type { ApiKeyRow } from './api-keys.repository.js';
import { SCOPES } from './api-keys.scopes.js';

export const ScopeSchema = Type.Union(SCOPES.map((s) => Type.Literal(s)));

export const ApiKey = Type.Object(
  {
    id: Type.String(),
    user_id: Type.String(),
    name: Type.String(),
    prefix: Type.String(),
    scopes: Type.Array(Type.String()),
    expires_at: NullableTimestamp,
    last_used_at: NullableTimestamp,
    request_count: Type.Integer(),
    revoked_at: NullableTimestamp,
    created_at: Timestamp,
  },
  { title: 'ApiKey' },
);

/** The one response that carries the key itself. */
export const CreatedApiKey = Type.Object(
  {
    id: Type.String(),
    key: Type.String(),
    prefix: Type.String(),
    name: Type.String(),
    scopes: Type.Array(Type.String()),
    expires_at: NullableTimestamp,
    created_at: Timestamp,
  },
  { title: 'CreatedApiKey' },
);

export const CreateApiKeyBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 255 }),
    scopes: Type.Optional(Type.Array(ScopeSchema, { minItems: 1, maxItems: SCOPES.length, uniqueItems: true })),
    expires_at: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])),
  },
  { additionalProperties: false },
);

export function apiKeyToApi(row: ApiKeyRow) {
  return {
    id: row.id,
    user_id: row.user_id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    expires_at: isoOrNull(row.expires_at),
    last_used_at: isoOrNull(row.last_used_at),
    request_count: row.request_count,
    revoked_at: isoOrNull(row.revoked_at),
    created_at: iso(row.created_at),
  };
}
