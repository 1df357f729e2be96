import { Type } from 'typebox';

/** Shared API shapes. Every string has a maximum length: overlong input is a 400, not a write. */
export const Timestamp = Type.String({ format: 'date-time' });
export const NullableTimestamp = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);
/** A model name or glob (`gpt-4o*`, `claude-*`, `*`): upstreams' model lists and keys' allow-lists. */
export const ModelGlob = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:/*@-]+$' });
/** A free-form JSON object (metadata, settings, preferences), bounded in size. */
export const JsonObject = (maxProperties: number) =>
  // TypeBox drops the key schema of a Record; propertyNames keeps keys bounded.
  Type.Record(Type.String(), Type.Unknown(), { maxProperties, propertyNames: { maxLength: 100 } });
export const Metadata = JsonObject(50);
export const Email = Type.String({ format: 'email', minLength: 3, maxLength: 320 });
export const IdParam = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:@-]+$' });

export const iso = (d: Date | string): string => (d instanceof Date ? d : new Date(d)).toISOString();
export const isoOrNull = (d: Date | string | null): string | null => (d === null ? null : iso(d));

export function listOf<T extends import('typebox').TSchema>(item: T) {
  return Type.Object({ data: Type.Array(item), next_cursor: Type.Union([Type.String(), Type.Null()]) });
}

/** `?limit=1..200&cursor=` on every list (API.md). */
export const ListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);
