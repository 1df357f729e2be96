import { Type } from 'typebox';
import type { Selectable } from 'kysely';
import type { Users } from '../../db/database.types.js';
import { Email, iso, JsonObject, isoOrNull, Metadata, NullableTimestamp, Timestamp } from '../../core/schemas.js';

export type UserRow = Omit<Selectable<Users>, 'password_hash'>;

const nullableString = (maxLength: number) => Type.Union([Type.String({ maxLength }), Type.Null()]);

/** The user as the API shows it. The password hash never leaves the repository. */
export const User = Type.Object(
  {
    id: Type.String(),
    email: Type.Union([Type.String(), Type.Null()]),
    is_email_verified: Type.Boolean(),
    email_verified_at: NullableTimestamp,
    name: Type.Union([Type.String(), Type.Null()]),
    username: Type.Union([Type.String(), Type.Null()]),
    avatar_url: Type.Union([Type.String(), Type.Null()]),
    bio: Type.Union([Type.String(), Type.Null()]),
    github_username: Type.Union([Type.String(), Type.Null()]),
    twitter_username: Type.Union([Type.String(), Type.Null()]),
    website_url: Type.Union([Type.String(), Type.Null()]),
    time_zone: Type.Union([Type.String(), Type.Null()]),
    provider: Type.String(),
    provider_user_id: Type.Union([Type.String(), Type.Null()]),
    role: Type.Union([Type.Literal('user'), Type.Literal('admin')]),
    level: Type.Integer(),
    is_active: Type.Boolean(),
    preferences: Type.Object({}, { additionalProperties: true }),
    metadata: Type.Object({}, { additionalProperties: true }),
    last_login_at: NullableTimestamp,
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { title: 'User' },
);

/**
 * A user as the service's list shows it: the user plus their account's `balance` (credits, holds
 * included) and `held` (reserved by open holds); available = balance − held. Both are 0 for a user
 * whose account has not been opened by a first money movement. Read in the list's own query.
 */
export const UserListItem = Type.Object(
  {
    ...User.properties,
    balance: Type.Integer({ description: "The user's credits, holds included (0 before any money movement)" }),
    held: Type.Integer({ description: 'Credits reserved by open holds; available = balance − held' }),
  },
  { title: 'UserListItem' },
);

/** Profile fields a user may edit on themselves (the same list the database grants). */
export const ProfileFields = {
  name: Type.Optional(nullableString(255)),
  username: Type.Optional(
    Type.Union([Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }), Type.Null()]),
  ),
  avatar_url: Type.Optional(Type.Union([Type.String({ format: 'uri', maxLength: 2048 }), Type.Null()])),
  bio: Type.Optional(nullableString(5000)),
  github_username: Type.Optional(nullableString(64)),
  twitter_username: Type.Optional(nullableString(64)),
  website_url: Type.Optional(Type.Union([Type.String({ format: 'uri', maxLength: 2048 }), Type.Null()])),
  preferences: Type.Optional(JsonObject(100)),
  /** IANA zone for the daily free quota; null = the deployment's (checked by the service). */
  time_zone: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()])),
};

export const CreateUserBody = Type.Object(
  {
    id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:@-]+$' })),
    email: Email,
    ...ProfileFields,
    is_email_verified: Type.Optional(Type.Boolean()),
    provider: Type.Optional(Type.String({ minLength: 1, maxLength: 32, pattern: '^[a-z0-9_-]+$' })),
    provider_user_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    level: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

export const UpdateUserBody = Type.Object(
  {
    ...ProfileFields,
    // Service-only fields; the service layer refuses them from end users, the database too.
    email: Type.Optional(Email),
    is_email_verified: Type.Optional(Type.Boolean()),
    role: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('admin')])),
    level: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    is_active: Type.Optional(Type.Boolean()),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const SERVICE_ONLY_FIELDS = ['email', 'is_email_verified', 'role', 'level', 'is_active', 'metadata'] as const;

export function userToApi(row: UserRow) {
  return {
    id: row.id,
    email: row.email,
    is_email_verified: row.is_email_verified,
    email_verified_at: isoOrNull(row.email_verified_at),
    name: row.name,
    username: row.username,
    avatar_url: row.avatar_url,
    bio: row.bio,
    github_username: row.github_username,
    twitter_username: row.twitter_username,
    website_url: row.website_url,
    time_zone: row.time_zone,
    provider: row.provider,
    provider_user_id: row.provider_user_id,
    role: row.role as 'user' | 'admin',
    level: row.level,
    is_active: row.is_active,
    preferences: row.preferences as Record<string, unknown>,
    metadata: row.metadata as Record<string, unknown>,
    last_login_at: isoOrNull(row.last_login_at),
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}

export function userListItemToApi(row: UserRow & { balance: number; held: number }) {
  return { ...userToApi(row), balance: Number(row.balance), held: Number(row.held) };
}
