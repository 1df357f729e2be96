import { Type } from 'typebox';
import { iso, isoOrNull, ModelGlob, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import type { ApiKeyRow } from './api-keys.repository.js';
import { SCOPES } from './api-keys.scopes.js';

export const ScopeSchema = Type.Union(SCOPES.map((s) => Type.Literal(s)));


/** The gateway limits a key carries (docs/gateway.md, "Key limits"); null is unlimited. */
const limitFields = {
  models: Type.Union([Type.Array(ModelGlob, { minItems: 1, maxItems: 64, uniqueItems: true }), Type.Null()], { description: 'Models (globs) this key may use through the gateway; null: any priced model' }),
  rpm_limit: Type.Union([Type.Integer({ minimum: 1, maximum: 1_000_000 }), Type.Null()], { description: 'Gateway requests per minute (sliding window)' }),
  tpm_limit: Type.Union([Type.Integer({ minimum: 1, maximum: 1_000_000_000_000 }), Type.Null()], { description: 'Gateway tokens per minute: reserved before the call, trued up after' }),
  max_concurrency: Type.Union([Type.Integer({ minimum: 1, maximum: 100_000 }), Type.Null()], { description: 'Gateway requests in flight at once' }),
  credit_budget: Type.Union([Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), Type.Null()], { description: 'Credits this key may spend through the gateway, in all; open holds count' }),
};

export const ApiKey = Type.Object(
  {
    id: Type.String(),
    user_id: Type.String(),
    workspace_id: Type.Union([Type.String(), Type.Null()], { description: "The workspace whose pool the key's gateway requests spend" }),
    name: Type.String(),
    prefix: Type.String(),
    scopes: Type.Array(Type.String()),
    ...limitFields,
    credits_used: Type.Integer({ description: 'Credits charged through the gateway with this key' }),
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
    workspace_id: Type.Union([Type.String(), Type.Null()]),
    ...limitFields,
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
    workspace_id: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()], { description: "Spend this workspace's pool through the gateway (the user must be a member)" })),
    models: Type.Optional(limitFields.models),
    rpm_limit: Type.Optional(limitFields.rpm_limit),
    tpm_limit: Type.Optional(limitFields.tpm_limit),
    max_concurrency: Type.Optional(limitFields.max_concurrency),
    credit_budget: Type.Optional(limitFields.credit_budget),
  },
  { additionalProperties: false },
);

/** The service changes a key's name and limits; null lifts a limit. */
export const UpdateApiKeyBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    models: Type.Optional(limitFields.models),
    rpm_limit: Type.Optional(limitFields.rpm_limit),
    tpm_limit: Type.Optional(limitFields.tpm_limit),
    max_concurrency: Type.Optional(limitFields.max_concurrency),
    credit_budget: Type.Optional(limitFields.credit_budget),
  },
  { additionalProperties: false, minProperties: 1 },
);

export function apiKeyToApi(row: ApiKeyRow) {
  return {
    id: row.id,
    user_id: row.user_id,
    workspace_id: row.workspace_id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    models: row.models,
    rpm_limit: row.rpm_limit,
    tpm_limit: row.tpm_limit,
    max_concurrency: row.max_concurrency,
    credit_budget: row.credit_budget,
    credits_used: row.credits_used,
    expires_at: isoOrNull(row.expires_at),
    last_used_at: isoOrNull(row.last_used_at),
    request_count: row.request_count,
    revoked_at: isoOrNull(row.revoked_at),
    created_at: iso(row.created_at),
  };
}
