import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import { type RunStatement, statement } from '../../db/statements.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import type { PageRequest } from '../../core/paging.js';
import type { BucketRow, ObjectRow } from './storage.js';

/** Storage's SQL. Callers own the transaction (and the role it runs as). */

const BUCKET_COLUMNS = ['id', 'public', 'file_size_limit', 'allowed_mime_types', 'owner_rule', 'user_quota_bytes', 'created_at', 'updated_at'] as const;
const OBJECT_COLUMNS = [
  'id', 'bucket_id', 'path', 'owner_id', 'uploaded_by', 'storage_key', 'size', 'declared_type', 'sniffed_type', 'sha256', 'metadata', 'created_at', 'updated_at',
] as const;

export async function bucketInsert(db: Executor, values: Omit<BucketRow, 'created_at' | 'updated_at'>): Promise<BucketRow> {
  return (await db.insertInto('storage_buckets').values(values).returning(BUCKET_COLUMNS).executeTakeFirstOrThrow()) as BucketRow;
}

export async function bucketFind(db: Executor, id: string): Promise<BucketRow | undefined> {
  return (await db.selectFrom('storage_buckets').select(BUCKET_COLUMNS).where('id', '=', id).executeTakeFirst()) as BucketRow | undefined;
}

export async function bucketList(db: Executor): Promise<BucketRow[]> {
  return (await db.selectFrom('storage_buckets').select(BUCKET_COLUMNS).orderBy('id').execute()) as BucketRow[];
}

/**
 * One bucket's storage_usage rows (bytes used and reserved per owner), newest owner first, cursor-paged
 * on (created_at, owner_id) — unique within a bucket. `id` is the owner, for the page's cursor.
 */
export async function usageList(db: Executor, bucketId: string, page: PageRequest, ownerId?: string) {
  let q = db
    .selectFrom('storage_usage')
    .select(['bucket_id', 'owner_id', 'owner_id as id', 'used_bytes', 'reserved_bytes', 'updated_at'])
    .select(cursorColumn('storage_usage').as('cursor_us'))
    .where('bucket_id', '=', bucketId);
  if (ownerId !== undefined) q = q.where('owner_id', '=', ownerId);
  if (page.after) q = q.where(cursorBefore('storage_usage', page.after, 'owner_id'));
  return q.orderBy('created_at', 'desc').orderBy('owner_id', 'desc').limit(page.limit + 1).execute();
}

export async function bucketUpdate(db: Executor, id: string, patch: Partial<Omit<BucketRow, 'id' | 'created_at' | 'updated_at'>>): Promise<BucketRow | undefined> {
  return (await db.updateTable('storage_buckets').set(patch).where('id', '=', id).returning(BUCKET_COLUMNS).executeTakeFirst()) as BucketRow | undefined;
}

export async function bucketDelete(db: Executor, id: string): Promise<boolean> {
  const res = await db.deleteFrom('storage_buckets').where('id', '=', id).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

export async function bucketHasObjects(db: Executor, id: string): Promise<boolean> {
  return (await db.selectFrom('storage_objects').select('id').where('bucket_id', '=', id).limit(1).executeTakeFirst()) !== undefined;
}

/**
 * The object at a path as a user sees it through row-level security, in one statement outside any
 * transaction (`storage_object_get`, migration 0054: the role and claims are set inside it). A
 * fixed text: a named prepared statement on PostgreSQL's pool (src/db/statements.ts).
 */
export async function objectFindAs(run: RunStatement, schema: string, claims: string, bucketId: string, path: string): Promise<ObjectRow | undefined> {
  const [row] = await run<ObjectRow>(statement('storage_object_get', `select * from "${schema}".storage_object_get($1, $2, $3)`, [claims, bucketId, path]));
  return row;
}

/**
 * Writes an uploaded object's row in one statement outside any transaction (`storage_object_put`,
 * migration 0054): inserted, or replacing the row at its path when `upsert`, as the user the claims
 * name (null: the service) under row-level security, and the upload's reservation released.
 * Undefined: an object exists at the path and `upsert` is false (nothing written).
 */
export async function objectPutAs(
  run: RunStatement,
  schema: string,
  claims: string | null,
  v: ObjectValues,
  options: { upsert: boolean; reservation: string | null },
): Promise<ObjectRow | undefined> {
  const text = `select * from "${schema}".storage_object_put($1, $2, $3, $4, $5, $6, $7, $8::bigint, $9, $10, $11, $12::jsonb, $13, $14)`;
  const [row] = await run<ObjectRow>(
    statement('storage_object_put', text, [
      claims, v.id, v.bucket_id, v.path, v.owner_id, v.uploaded_by, v.storage_key, v.size, v.declared_type, v.sniffed_type, v.sha256,
      JSON.stringify(v.metadata), options.upsert, options.reservation,
    ]),
  );
  return row;
}

export async function objectFind(db: Executor, bucketId: string, path: string): Promise<ObjectRow | undefined> {
  return (await db.selectFrom('storage_objects').select(OBJECT_COLUMNS).where('bucket_id', '=', bucketId).where('path', '=', path).executeTakeFirst()) as
    | ObjectRow
    | undefined;
}

/** Locks the row for the rest of the transaction (an overwrite or a move decides on it). */
export async function objectFindForUpdate(db: Executor, bucketId: string, path: string): Promise<ObjectRow | undefined> {
  return (await db
    .selectFrom('storage_objects')
    .select(OBJECT_COLUMNS)
    .where('bucket_id', '=', bucketId)
    .where('path', '=', path)
    .forUpdate()
    .executeTakeFirst()) as ObjectRow | undefined;
}

export type ObjectValues = Omit<ObjectRow, 'created_at' | 'updated_at' | 'metadata'> & { metadata: Record<string, unknown> };

export async function objectInsert(db: Executor, values: ObjectValues): Promise<ObjectRow> {
  return (await db
    .insertInto('storage_objects')
    .values({ ...values, metadata: JSON.stringify(values.metadata) })
    .returning(OBJECT_COLUMNS)
    .executeTakeFirstOrThrow()) as ObjectRow;
}

export async function objectDelete(db: Executor, id: string): Promise<boolean> {
  const res = await db.deleteFrom('storage_objects').where('id', '=', id).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

/** Objects under a path prefix in path order, after `after` (exclusive); visible rows only (RLS). */
export async function objectList(db: Executor, bucketId: string, prefix: string, after: string | null, limit: number): Promise<ObjectRow[]> {
  let q = db.selectFrom('storage_objects').select(OBJECT_COLUMNS).where('bucket_id', '=', bucketId);
  if (prefix) q = q.where(sql<boolean>`left(path, ${prefix.length}) = ${prefix}`);
  if (after !== null) q = q.where('path', '>', after);
  return (await q.orderBy('path').limit(limit + 1).execute()) as ObjectRow[];
}

/** Every storage key the rows hold (objects and project file versions), and those queued for deletion. */
export async function storageKeysAll(db: Executor): Promise<{ referenced: Set<string>; pending: Set<string> }> {
  const objects = await db.selectFrom('storage_objects').select('storage_key').execute();
  const versions = await db.selectFrom('project_file_versions').select('storage_key').where('storage_key', 'is not', null).execute();
  const pending = await db.selectFrom('storage_deletions').select('storage_key').execute();
  return {
    referenced: new Set([...objects.map((r) => r.storage_key), ...versions.map((r) => String(r.storage_key))]),
    pending: new Set(pending.map((r) => r.storage_key)),
  };
}

// ---------------------------------------------------------------------------------------------
// Quotas: bytes used (kept by a trigger) and reserved (by uploads in flight), per (bucket, owner).
// ---------------------------------------------------------------------------------------------

/**
 * Reserves `bytes` for an upload if used + reserved + bytes stays within `quota`; the row lock on
 * storage_usage orders concurrent reservations, so together they can never pass the quota.
 * Returns false (nothing reserved) when it would.
 */
export async function reservationCreate(
  db: Executor,
  r: { id: string; bucketId: string; ownerId: string; bytes: number; quota: number; expiresAt: Date },
): Promise<boolean> {
  await db.insertInto('storage_usage').values({ bucket_id: r.bucketId, owner_id: r.ownerId }).onConflict((oc) => oc.doNothing()).execute();
  const held = await db
    .updateTable('storage_usage')
    .set({ reserved_bytes: sql`reserved_bytes + ${r.bytes}` })
    .where('bucket_id', '=', r.bucketId)
    .where('owner_id', '=', r.ownerId)
    .where(sql<boolean>`used_bytes + reserved_bytes + ${r.bytes} <= ${r.quota}`)
    .returning('owner_id')
    .executeTakeFirst();
  if (!held) return false;
  await db.insertInto('storage_reservations').values({ id: r.id, bucket_id: r.bucketId, owner_id: r.ownerId, bytes: r.bytes, expires_at: r.expiresAt }).execute();
  return true;
}

/**
 * Room for `bytes` more in an owner's quota, checked by the statement that locks their usage row:
 * the lock is held until the caller's transaction ends, so whatever it adds meanwhile (the object
 * row's trigger moves its size into used_bytes) is seen by the next claim. Nothing is reserved.
 */
export async function usageClaim(db: Executor, r: { bucketId: string; ownerId: string; bytes: number; quota: number }): Promise<{ ok: boolean; free: number }> {
  await db.insertInto('storage_usage').values({ bucket_id: r.bucketId, owner_id: r.ownerId }).onConflict((oc) => oc.doNothing()).execute();
  const row = await db
    .updateTable('storage_usage')
    .set({ used_bytes: sql`used_bytes` })
    .where('bucket_id', '=', r.bucketId)
    .where('owner_id', '=', r.ownerId)
    .where(sql<boolean>`used_bytes + reserved_bytes + ${r.bytes} <= ${r.quota}`)
    .returning(['used_bytes', 'reserved_bytes'])
    .executeTakeFirst();
  if (row) return { ok: true, free: r.quota - Number(row.used_bytes) - Number(row.reserved_bytes) };
  const usage = await usageFind(db, r.bucketId, r.ownerId);
  return { ok: false, free: r.quota - Number(usage?.used_bytes ?? 0) - Number(usage?.reserved_bytes ?? 0) };
}

/** Ends a reservation (the upload committed or failed); false when it was already gone (expired and swept). */
export async function reservationRelease(db: Executor, id: string): Promise<boolean> {
  const gone = await db.deleteFrom('storage_reservations').where('id', '=', id).returning(['bucket_id', 'owner_id', 'bytes']).executeTakeFirst();
  if (!gone) return false;
  await db
    .updateTable('storage_usage')
    .set({ reserved_bytes: sql`reserved_bytes - ${gone.bytes}` })
    .where('bucket_id', '=', gone.bucket_id)
    .where('owner_id', '=', gone.owner_id)
    .execute();
  return true;
}

/** Reservations of uploads that never settled (a crashed process): their bytes are free again. */
export async function reservationsExpired(db: Executor, now: Date, limit: number): Promise<string[]> {
  const rows = await db.selectFrom('storage_reservations').select('id').where('expires_at', '<', now).limit(limit).execute();
  return rows.map((r) => r.id);
}

/** Resumable uploads an owner has open (their reservations are named by the upload's `tus_` id), across buckets. */
/** Serialises the opening of resumable uploads per owner until the transaction ends. */
export async function lockOwnerUploads(db: Executor, ownerId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext(${`tally.open_uploads:${ownerId}`}))`.execute(db);
}

export async function uploadsOpenCount(db: Executor, ownerId: string): Promise<number> {
  const row = await db
    .selectFrom('storage_reservations')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('owner_id', '=', ownerId)
    .where('id', 'like', 'tus\\_%')
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/**
 * Moves the bytes-used changes pending in storage_usage_pending (buckets without a quota: the
 * upload trigger appends them there instead of locking the owner's usage row) into storage_usage,
 * for one bucket, one owner, or all (null). Every reader of used_bytes runs it first.
 */
export async function usageFold(db: Executor, schema: string, bucketId: string | null, ownerId: string | null): Promise<void> {
  await sql`select ${sql.table(`${schema}.storage_usage_fold`)}(${bucketId}, ${ownerId})`.execute(db);
}

export async function usageFind(db: Executor, bucketId: string, ownerId: string) {
  return db.selectFrom('storage_usage').select(['used_bytes', 'reserved_bytes']).where('bucket_id', '=', bucketId).where('owner_id', '=', ownerId).executeTakeFirst();
}

/** Bytes stored per owner across buckets (objects), for metering and the dashboard. */
export async function usageByOwner(db: Executor, schema: string, ownerId?: string) {
  await usageFold(db, schema, null, ownerId ?? null);
  let q = db.selectFrom('storage_usage').select(['owner_id', sql<number>`sum(used_bytes)::bigint`.as('used_bytes')]).groupBy('owner_id');
  if (ownerId) q = q.where('owner_id', '=', ownerId);
  return q.execute();
}

// ---------------------------------------------------------------------------------------------
// The delete outbox.
// ---------------------------------------------------------------------------------------------

export async function deletionsDue(db: Executor, now: Date, limit: number) {
  return db
    .selectFrom('storage_deletions')
    .select(['id', 'storage_key', 'attempts'])
    .where('next_attempt_at', '<=', now)
    .orderBy('id')
    .limit(limit)
    .execute();
}

export async function deletionDone(db: Executor, id: number): Promise<void> {
  await db.deleteFrom('storage_deletions').where('id', '=', id).execute();
}

export async function deletionFailed(db: Executor, id: number, nextAttemptAt: Date, error: string): Promise<void> {
  await db
    .updateTable('storage_deletions')
    .set({ attempts: sql`attempts + 1`, next_attempt_at: nextAttemptAt, last_error: error.slice(0, 2000) })
    .where('id', '=', id)
    .execute();
}

/** Whether some row still points at the key (a re-used key must never lose its bytes). */
export async function keyReferenced(db: Executor, key: string): Promise<boolean> {
  const o = await db.selectFrom('storage_objects').select('id').where('storage_key', '=', key).executeTakeFirst();
  if (o) return true;
  const v = await db.selectFrom('project_file_versions').select('id').where('storage_key', '=', key).executeTakeFirst();
  return v !== undefined;
}

/** Records a one-use link's use; false when it was used before. */
export async function linkUse(db: Executor, id: string, expiresAt: Date): Promise<boolean> {
  const res = await db.insertInto('storage_link_uses').values({ id, expires_at: expiresAt }).onConflict((oc) => oc.doNothing()).executeTakeFirst();
  return Number(res.numInsertedOrUpdatedRows ?? 0n) > 0;
}
