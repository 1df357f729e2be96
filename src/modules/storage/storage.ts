import { type Static, Type } from 'typebox';
import { iso, Metadata, Timestamp } from '../../core/schemas.js';

/** Storage's API shapes (../shared/spec/API.md, "Storage") and the row → API mappers. */

const MimePattern = Type.String({ minLength: 3, maxLength: 255, pattern: '^[a-z0-9][a-z0-9!#$&^_.+-]*/(\\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$' });

export const OwnerRule = Type.Union([Type.Literal('owner_folder'), Type.Literal('none')], {
  description: 'owner_folder: the first path segment must be the caller\'s user id or one of their workspaces\' ids; none: service only',
});

export const Bucket = Type.Object({
  id: Type.String(),
  public: Type.Boolean(),
  file_size_limit: Type.Union([Type.Integer(), Type.Null()]),
  allowed_mime_types: Type.Union([Type.Array(Type.String()), Type.Null()]),
  owner_rule: OwnerRule,
  user_quota_bytes: Type.Union([Type.Integer(), Type.Null()]),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const BucketId = Type.String({ minLength: 2, maxLength: 63, pattern: '^[a-z0-9][a-z0-9._-]{1,62}$' });

const BucketFields = {
  public: Type.Boolean(),
  file_size_limit: Type.Union([Type.Integer({ minimum: 1, maximum: 1_099_511_627_776 }), Type.Null()]),
  allowed_mime_types: Type.Union([Type.Array(MimePattern, { maxItems: 100, uniqueItems: true }), Type.Null()]),
  owner_rule: OwnerRule,
  user_quota_bytes: Type.Union([Type.Integer({ minimum: 0, maximum: 1_125_899_906_842_624 }), Type.Null()]),
};

export const CreateBucketBody = Type.Object(
  {
    id: BucketId,
    public: Type.Optional(BucketFields.public),
    file_size_limit: Type.Optional(BucketFields.file_size_limit),
    allowed_mime_types: Type.Optional(BucketFields.allowed_mime_types),
    owner_rule: Type.Optional(BucketFields.owner_rule),
    user_quota_bytes: Type.Optional(BucketFields.user_quota_bytes),
  },
  { additionalProperties: false },
);
export type CreateBucketBody = Static<typeof CreateBucketBody>;

export const UpdateBucketBody = Type.Object(
  {
    public: Type.Optional(BucketFields.public),
    file_size_limit: Type.Optional(BucketFields.file_size_limit),
    allowed_mime_types: Type.Optional(BucketFields.allowed_mime_types),
    owner_rule: Type.Optional(BucketFields.owner_rule),
    user_quota_bytes: Type.Optional(BucketFields.user_quota_bytes),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateBucketBody = Static<typeof UpdateBucketBody>;

export const StorageObject = Type.Object({
  id: Type.String(),
  bucket_id: Type.String(),
  path: Type.String(),
  owner_id: Type.Union([Type.String(), Type.Null()]),
  uploaded_by: Type.Union([Type.String(), Type.Null()]),
  size: Type.Integer(),
  declared_type: Type.Union([Type.String(), Type.Null()]),
  sniffed_type: Type.Union([Type.String(), Type.Null()]),
  sha256: Type.String(),
  etag: Type.String(),
  metadata: Metadata,
  created_at: Timestamp,
  updated_at: Timestamp,
});

export interface BucketRow {
  id: string;
  public: boolean;
  file_size_limit: number | null;
  allowed_mime_types: string[] | null;
  owner_rule: string;
  user_quota_bytes: number | null;
  created_at: Date | string;
  updated_at: Date | string;
}

export interface ObjectRow {
  id: string;
  bucket_id: string;
  path: string;
  owner_id: string | null;
  uploaded_by: string | null;
  storage_key: string;
  size: number;
  declared_type: string | null;
  sniffed_type: string | null;
  sha256: string;
  metadata: unknown;
  created_at: Date | string;
  updated_at: Date | string;
}

export const bucketToApi = (b: BucketRow) => ({
  id: b.id,
  public: b.public,
  file_size_limit: b.file_size_limit === null ? null : Number(b.file_size_limit),
  allowed_mime_types: b.allowed_mime_types,
  owner_rule: b.owner_rule === 'none' ? ('none' as const) : ('owner_folder' as const),
  user_quota_bytes: b.user_quota_bytes === null ? null : Number(b.user_quota_bytes),
  created_at: iso(b.created_at),
  updated_at: iso(b.updated_at),
});

/** The strong validator of an object's bytes: its SHA-256 (the same bytes have the same ETag everywhere). */
export const etagOf = (o: { sha256: string }) => `"${o.sha256}"`;

export const objectToApi = (o: ObjectRow) => ({
  id: o.id,
  bucket_id: o.bucket_id,
  path: o.path,
  owner_id: o.owner_id,
  uploaded_by: o.uploaded_by,
  size: Number(o.size),
  declared_type: o.declared_type,
  sniffed_type: o.sniffed_type,
  sha256: o.sha256,
  etag: etagOf(o),
  metadata: (o.metadata ?? {}) as Record<string, unknown>,
  created_at: iso(o.created_at),
  updated_at: iso(o.updated_at),
});

/**
 * An object path: 1–1024 characters, `/`-separated non-empty segments, no `.`/`..`, no control
 * characters or backslashes. Returns the segments, or null when the path is not one.
 */
export function pathSegments(path: string): string[] | null {
  if (path.length < 1 || path.length > 1024) return null;
  if (/[\x00-\x1f\x7f\\]/.test(path)) return null;
  const segments = path.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return null;
  return segments;
}
