import { Type } from 'typebox';
import { iso, isoOrNull, JsonObject, NullableTimestamp, Timestamp } from '../../core/schemas.js';

/** A linked login as the API shows it: tokens are never returned, only whether one is stored. */
export const Identity = Type.Object(
  {
    id: Type.String(),
    user_id: Type.String(),
    provider: Type.String(),
    provider_user_id: Type.String(),
    email: Type.Union([Type.String(), Type.Null()]),
    has_access_token: Type.Boolean(),
    has_refresh_token: Type.Boolean(),
    token_expires_at: NullableTimestamp,
    scopes: Type.Array(Type.String()),
    linked_at: Timestamp,
    updated_at: Timestamp,
  },
  { title: 'Identity' },
);

export const LinkIdentityBody = Type.Object(
  {
    provider: Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }),
    provider_user_id: Type.String({ minLength: 1, maxLength: 255 }),
    email: Type.Optional(Type.Union([Type.String({ format: 'email', maxLength: 320 }), Type.Null()])),
    access_token: Type.Optional(Type.String({ minLength: 1, maxLength: 8192 })),
    refresh_token: Type.Optional(Type.String({ minLength: 1, maxLength: 8192 })),
    token_expires_at: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])),
    scopes: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 100 })),
    raw_profile: Type.Optional(JsonObject(200)),
    metadata: Type.Optional(JsonObject(50)),
  },
  { additionalProperties: false },
);

export interface IdentityRow {
  id: string;
  user_id: string;
  provider: string;
  provider_user_id: string;
  email: string | null;
  has_access_token: boolean;
  has_refresh_token: boolean;
  token_expires_at: Date | null;
  scopes: string[];
  linked_at: Date;
  updated_at: Date;
}

export function identityToApi(r: IdentityRow) {
  return {
    id: r.id,
    user_id: r.user_id,
    provider: r.provider,
    provider_user_id: r.provider_user_id,
    email: r.email,
    has_access_token: r.has_access_token,
    has_refresh_token: r.has_refresh_token,
    token_expires_at: isoOrNull(r.token_expires_at),
    scopes: r.scopes,
    linked_at: iso(r.linked_at),
    updated_at: iso(r.updated_at),
  };
}
