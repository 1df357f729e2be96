import { Readable } from 'node:stream';
import type { Db, Executor } from '../../db/database.js';
import { elevate, inRequestTransaction, setRequestRole } from '../../db/request-role.js';
import { kyselyRunner, type RunStatement } from '../../db/statements.js';
import { DomainError, errors } from '../../core/errors.js';
import { claimsOf, type Principal } from '../../core/principal.js';
import type { PageRequest } from '../../core/paging.js';
import { newId } from '../../lib/ids.js';
import type { Invalidations } from '../../lib/invalidations.js';
import { SnapshotCache } from '../../lib/snapshot-cache.js';
import { userAuthState } from '../users/users.repository.js';
import { memberRole } from '../workspaces/workspaces.repository.js';
import type { StorageDriver } from './storage.driver.js';
import { guardUpload, mediaType, sniffable, typeAllowed } from './storage.upload.js';
import { type RangeOutcome, parseRange } from './storage.range.js';
import type { LinkSigner, SignedLink } from './storage.links.js';
import {
  bucketDelete,
  bucketFind,
  usageList,
  bucketHasObjects,
  bucketInsert,
  bucketList,
  bucketUpdate,
  deletionDone,
  deletionFailed,
  deletionsDue,
  keyReferenced,
  linkUse,
  objectDelete,
  objectFind,
  objectFindAs,
  objectFindForUpdate,
  objectInsert,
  objectPutAs,
  objectList,
  reservationCreate,
  reservationRelease,
  reservationsExpired,
  storageKeysAll,
  lockOwnerUploads,
  uploadsOpenCount,
  usageClaim,
  usageFind,
  usageFold,
} from './storage.repository.js';
import { RESUMABLE_TTL_MS, type StagedUploads } from './storage.staging.js';
import { type BucketRow, type CreateBucketBody, etagOf, type ObjectRow, pathSegments, type UpdateBucketBody } from './storage.js';

/** How long an upload's reservation holds before the sweeper frees it (a crashed process's upload). */
const RESERVATION_TTL_MS = 6 * 3600_000;
/** Unfinished resumable uploads one owner (a user's or a workspace's folder) may have at once. */
export const MAX_OPEN_UPLOADS = 20;
/** How often the sweeper scans the resumable uploads' datastore for expired pieces. */
const STAGED_SWEEP_EVERY_MS = 10 * 60_000;
/** Buckets kept in process (their rules are read by every upload and read; docs/storage.md, "Speed"). */
const BUCKET_CACHE_ENTRIES = 1000;
/**
 * A body declared at most this long is not checked against an existing path before it is stored:
 * the row's statement refuses it (409) and the bytes are deleted at once (docs/storage.md, "Speed").
 */
const SMALL_BODY_BYTES = 64 * 1024;
/** The longest a server serves a cached bucket that no Tally process announced a change of (SQL by hand). */
export const BUCKET_CACHE_MS = 30_000;

export interface StorageServiceOptions {
  /** Tally's schema: storage's SQL functions (migration 0054) are called by their qualified name. */
  schema: string;
  /**
   * Runs the hot path's fixed statements outside a transaction: named prepared statements on
   * PostgreSQL's pool (src/db/statements.ts `poolRunner`). Default: through Kysely on `db`.
   */
  run?: RunStatement;
  /**
   * Where settled writes are announced (locally and, through the bus, by other processes): any
   * notice empties the bucket cache; while `trusted` is false every bucket is read from the database.
   */
  invalidations?: Invalidations;
  /** How long a cached bucket may serve at most (writes no Tally process announced); 0 = no cache. */
  bucketCacheMs?: number;
}

export interface UploadInput {
  bucket: string;
  path: string;
  body: Readable;
  /** The declared Content-Type. */
  contentType: string | undefined;
  /** Content-Length, when the client sent one. */
  contentLength: number | null;
  upsert: boolean;
  metadata?: Record<string, unknown>;
  /** A signed upload link's own limits (on top of the bucket's). */
  link?: { maxSize: number | null; contentType: string | null };
  /** The reservation a resumable upload took at its creation: handed over to this one. */
  heldReservation?: string;
}

export type Download =
  | { kind: 'not_modified'; object: ObjectRow }
  | { kind: 'unsatisfiable'; object: ObjectRow }
  | { kind: 'head'; object: ObjectRow }
  | { kind: 'body'; object: ObjectRow; stream: Readable; range: { start: number; end: number } | null };

/**
 * Buckets and objects (docs/storage.md). The rules — owner folder, declared and sniffed type, size
 * limit, per-owner byte quota — are checked here, before a byte is stored; row-level security
 * checks the owner again on every row a user's request touches.
 */
export class StorageService {
  /** When the sweeper last asked the datastore for expired uploads (ms). */
  private stagedSweptAt = 0;
  private readonly schema: string;
  private readonly run: RunStatement;
  /** Bucket rules by id (null: no such bucket), emptied by every settled write (see StorageServiceOptions). */
  private readonly buckets: SnapshotCache<BucketRow | null>;

  constructor(
    /** The database itself, for housekeeping (the sweeper, `tally storage check`). */
    private readonly db: Db,
    readonly driver: StorageDriver,
    private readonly links: LinkSigner,
    private readonly now: () => Date,
    /** Resumable uploads' pieces, for the sweeper (absent: nothing is staged). */
    private readonly staging: StagedUploads | undefined,
    options: StorageServiceOptions,
  ) {
    this.schema = options.schema;
    this.run = options.run ?? kyselyRunner(db);
    const invalidations = options.invalidations;
    this.buckets = new SnapshotCache(options.bucketCacheMs ?? 0, BUCKET_CACHE_ENTRIES, () => this.now().getTime(), () => invalidations?.trusted ?? true);
    invalidations?.onAny(() => this.buckets.clear());
  }

  /**
   * A bucket's rules, from the process's cache when it can vouch for them: bucket writes are write
   * routes, and every write route announces "anything changed" once it has settled (here, and in
   * other processes through the invalidation bus), which empties the cache.
   */
  private bucketOf(id: string): Promise<BucketRow | null> {
    return this.buckets.get('buckets', id, async () => (await bucketFind(this.db, id)) ?? null);
  }

  // -------------------------------------------------------------------------------------------
  // Buckets (service only)
  // -------------------------------------------------------------------------------------------

  async createBucket(db: Executor, body: CreateBucketBody): Promise<BucketRow> {
    if (await bucketFind(db, body.id)) throw errors.conflict(`Bucket ${body.id} already exists`, { id: body.id });
    return bucketInsert(db, {
      id: body.id,
      public: body.public ?? false,
      file_size_limit: body.file_size_limit ?? null,
      allowed_mime_types: body.allowed_mime_types ?? null,
      owner_rule: body.owner_rule ?? 'owner_folder',
      user_quota_bytes: body.user_quota_bytes ?? null,
    });
  }

  listBuckets(db: Executor): Promise<BucketRow[]> {
    return bucketList(db);
  }

  /** A bucket's usage per owner (404 for an unknown bucket), with the bucket for its quota. */
  async usage(db: Executor, bucketId: string, page: PageRequest, ownerId?: string) {
    const bucket = await this.getBucket(db, bucketId);
    await usageFold(db, this.schema, bucketId, ownerId ?? null);
    return { bucket, rows: await usageList(db, bucketId, page, ownerId) };
  }

  async getBucket(db: Executor, id: string): Promise<BucketRow> {
    const bucket = await bucketFind(db, id);
    if (!bucket) throw errors.notFound('Bucket', id);
    return bucket;
  }

  async updateBucket(db: Executor, id: string, patch: UpdateBucketBody): Promise<BucketRow> {
    const row = await bucketUpdate(db, id, patch);
    if (!row) throw errors.notFound('Bucket', id);
    // From now on the bucket's uploads are decided on used_bytes: what is pending goes in first.
    if (row.user_quota_bytes !== null) await usageFold(db, this.schema, id, null);
    return row;
  }

  /** Only an empty bucket goes (its objects' bytes would otherwise be orphaned). */
  async deleteBucket(db: Executor, id: string): Promise<void> {
    await this.getBucket(db, id);
    if (await bucketHasObjects(db, id)) throw errors.invalidState(`Bucket ${id} is not empty; delete its objects first`, { id });
    await bucketDelete(db, id);
  }

  // -------------------------------------------------------------------------------------------
  // Objects
  // -------------------------------------------------------------------------------------------

  /**
   * The owner an object at `path` belongs to, if the caller may touch it: in an owner_folder
   * bucket the first segment must be the user's id or one of their workspaces' (a writer's role
   * to write); the service may use any path. `none` buckets are the service's alone.
   */
  private async ownerOf(db: Executor, bucket: BucketRow, principal: Principal, segments: string[], write: boolean): Promise<string | null> {
    const first = segments[0] ?? '';
    const owner = bucket.owner_rule === 'owner_folder' ? first : null;
    if (principal.kind === 'service') return owner;
    if (principal.kind !== 'user') throw errors.unauthenticated();
    if (owner === null) throw errors.forbidden(`Bucket ${bucket.id} is written and read by the service only`);
    if (owner === principal.userId) return owner;
    const role = await memberRole(db, owner, principal.userId);
    if (role && (!write || role === 'owner' || role === 'admin' || role === 'member')) return owner;
    throw errors.forbidden(`Objects under "${first}/" belong to someone else; your own start with "${principal.userId}/"`);
  }

  private segmentsOf(path: string): string[] {
    const segments = pathSegments(path);
    if (!segments) throw errors.invalidRequest('The object path must be 1–1024 characters of non-empty segments, without "." or ".." segments or control characters', { field: 'path' });
    return segments;
  }

  /**
   * Stores one object. `db` is the database itself: the body streams outside any transaction.
   * Before a byte is written: the bucket's rules (cached), the owner rule, the declared type and
   * length; where a quota applies (or a resumable upload hands its reservation over), a short
   * transaction as the caller that refuses an existing path and reserves the bytes. Without one, the
   * existing-path check runs while the bytes go to the driver's temporary file, and a 409 stops the
   * stream (nothing is kept). Then one statement records the row as the caller and settles the
   * reservation (docs/storage.md, "Speed").
   */
  async upload(db: Db, principal: Principal, input: UploadInput): Promise<{ object: ObjectRow; created: boolean }> {
    const segments = this.segmentsOf(input.path);
    const declared = mediaType(input.contentType);
    const bucket = await this.bucketOf(input.bucket);
    if (!bucket) throw errors.notFound('Bucket', input.bucket);
    const owner = await this.ownerOf(db, bucket, principal, segments, true);
    const allowed = bucket.allowed_mime_types;
    if (!typeAllowed(allowed, declared) || (input.link?.contentType && input.link.contentType !== declared)) {
      throw new DomainError('unsupported_media_type', `Content-Type ${declared ?? '(none)'} is not allowed in bucket ${bucket.id}`, {
        reason: 'declared_type',
        allowed: input.link?.contentType ? [input.link.contentType] : allowed,
      });
    }
    const sizeLimit = minOf(bucket.file_size_limit === null ? null : Number(bucket.file_size_limit), input.link?.maxSize ?? null);
    if (sizeLimit !== null && input.contentLength !== null && input.contentLength > sizeLimit) throw tooLarge('size', sizeLimit);
    const quota = bucket.user_quota_bytes === null ? null : Number(bucket.user_quota_bytes);
    let limit = sizeLimit ?? Number.MAX_SAFE_INTEGER;
    let reservation: { id: string; bytes: number } | null = null;
    const conflict = () => errors.conflict(`An object already exists at ${input.path}; send x-upsert: true to overwrite it`, { path: input.path });
    const holds = owner !== null && (quota !== null || input.heldReservation !== undefined);
    if (holds && owner !== null) {
      reservation = await inRequestTransaction(db, principal, async (trx) => {
        if (!input.upsert && (await objectFind(trx, bucket.id, input.path))) throw conflict();
        // A finished resumable upload swaps the reservation it held since its creation for this one,
        // under the same row lock: its bytes stay counted throughout.
        if (input.heldReservation !== undefined) {
          await elevate(trx);
          await reservationRelease(trx, input.heldReservation);
        }
        if (quota === null) return null;
        // The quota holds the bytes before the first one is written: the declared length, or all
        // that the limits leave when the length is not known yet.
        await elevate(trx);
        await usageFold(trx, this.schema, bucket.id, owner);
        const usage = await usageFind(trx, bucket.id, owner);
        const free = quota - Number(usage?.used_bytes ?? 0) - Number(usage?.reserved_bytes ?? 0);
        const bytes = input.contentLength ?? Math.max(0, Math.min(free, limit));
        const id = newId('storageReservation');
        const held = await reservationCreate(trx, { id, bucketId: bucket.id, ownerId: owner, bytes, quota, expiresAt: new Date(this.now().getTime() + RESERVATION_TTL_MS) });
        if (!held) throw quotaExceeded(quota, bytes, free);
        return { id, bytes };
      });
      if (reservation) limit = Math.min(limit, reservation.bytes);
    }
    // No quota to reserve under: whether the path is taken is asked while the bytes arrive, so a
    // large body is not read to the end for nothing. The record below decides it atomically in any
    // case: an upsert, or a small declared body (written and dropped in no time), is not asked first.
    const small = input.contentLength !== null && input.contentLength <= SMALL_BODY_BYTES;
    const existing = holds || input.upsert || small ? null : this.objectAt(db, principal, bucket.id, input.path).then((o) => {
      if (o) throw conflict();
    });

    const held = reservation;
    const release = async () => {
      if (held) await db.transaction().execute((trx) => reservationRelease(trx, held.id));
    };
    const objectId = newId('storageObject');
    const key = `o/${bucket.id}/${objectId}`;
    const guard = guardUpload(input.body, {
      limit,
      tooLarge: () => (sizeLimit !== null && limit === sizeLimit ? tooLarge('size', sizeLimit) : quotaExceeded(quota ?? 0, limit + 1, limit)),
      checkType: (sniffed) => {
        if (allowed === null) return null;
        if (sniffed !== null && !typeAllowed(allowed, sniffed)) {
          return new DomainError('unsupported_media_type', `The content is ${sniffed}, which bucket ${bucket.id} does not allow`, { reason: 'sniffed_type', sniffed, allowed });
        }
        // A claim of a type file-type can recognise must be what the content is.
        if (declared !== null && sniffable(declared) && sniffed !== declared) {
          return new DomainError('unsupported_media_type', `The content is ${sniffed ?? 'not recognisable'}, not the declared ${declared}`, { reason: 'sniffed_type', sniffed, declared });
        }
        return null;
      },
    });
    const putting = this.driver.put(key, guard.stream, { contentType: declared });
    // A taken path stops the stream at once: the driver drops its temporary file.
    existing?.catch((err: unknown) => guard.stream.destroy(err instanceof Error ? err : new Error(String(err))));
    const [put, check] = await Promise.allSettled([putting, existing ?? Promise.resolve()]);
    if (put.status === 'rejected' || check.status === 'rejected') {
      // The bytes may have been stored before the check failed: they go (a delete is idempotent).
      if (put.status === 'fulfilled') await this.driver.delete(key).catch(() => undefined);
      await release();
      if (check.status === 'rejected') throw check.reason;
      const failure: unknown = put.status === 'rejected' ? put.reason : null;
      throw failure instanceof DomainError ? failure : streamFailure(failure);
    }
    const stored = guard.result();
    let object: ObjectRow | undefined;
    try {
      object = await objectPutAs(
        this.run,
        this.schema,
        principal.kind === 'user' ? claimsOf(principal) : null,
        {
          id: objectId,
          bucket_id: bucket.id,
          path: input.path,
          owner_id: owner,
          uploaded_by: principal.kind === 'user' ? principal.userId : null,
          storage_key: key,
          size: stored.size,
          declared_type: declared,
          sniffed_type: stored.sniffed,
          sha256: stored.sha256,
          metadata: input.metadata ?? {},
        },
        { upsert: input.upsert, reservation: reservation?.id ?? null },
      );
    } catch (err) {
      await this.driver.delete(key).catch(() => undefined);
      await release().catch(() => undefined);
      throw err;
    }
    if (!object) {
      await this.driver.delete(key).catch(() => undefined);
      await release().catch(() => undefined);
      throw conflict();
    }
    return { object, created: object.id === objectId };
  }

  /**
   * The object at a path as the caller may see it, outside a transaction: a user's read goes
   * through row-level security in one statement (objectFindAs); the service reads as the owner.
   */
  private objectAt(db: Executor, principal: Principal, bucketId: string, path: string): Promise<ObjectRow | undefined> {
    if (principal.kind === 'user') return objectFindAs(this.run, this.schema, claimsOf(principal), bucketId, path);
    return objectFind(db, bucketId, path);
  }

  /**
   * Opens a resumable upload (`id`, a `tus_` id): the checks an upload passes before its first
   * byte — bucket, owner rule, declared type, declared size, an existing path without upsert — and
   * then a reservation of the declared size, held (and counted in the owner's reserved bytes) until
   * the upload finishes, is deleted, or expires unfinished. The length must be declared: a deferred
   * one would let pieces gather on disk unchecked by the size limit and the quota. An owner has at
   * most MAX_OPEN_UPLOADS open at once. The whole pipeline runs again when it completes.
   */
  async openResumable(
    db: Db,
    principal: Principal,
    input: { id: string; bucket: string; path: string; contentType: string | undefined; size: number | null; upsert: boolean },
  ): Promise<void> {
    const segments = this.segmentsOf(input.path);
    const declared = mediaType(input.contentType);
    const size = input.size;
    if (size === null) throw errors.invalidRequest('Declare the length when creating an upload (Upload-Length); a deferred length is not accepted', { header: 'Upload-Defer-Length' });
    await inRequestTransaction(db, principal, async (trx) => {
      const bucket = await bucketFind(trx, input.bucket);
      if (!bucket) throw errors.notFound('Bucket', input.bucket);
      const owner = await this.ownerOf(trx, bucket, principal, segments, true);
      if (!typeAllowed(bucket.allowed_mime_types, declared)) {
        throw new DomainError('unsupported_media_type', `Content-Type ${declared ?? '(none)'} is not allowed in bucket ${bucket.id}`, { reason: 'declared_type', allowed: bucket.allowed_mime_types });
      }
      if (bucket.file_size_limit !== null && size > Number(bucket.file_size_limit)) throw tooLarge('size', Number(bucket.file_size_limit));
      if (!input.upsert && (await objectFind(trx, bucket.id, input.path))) throw errors.conflict(`An object already exists at ${input.path}`, { path: input.path });
      // A `none` bucket's uploads are the service's (no owner to count them against); the datastore's expiry still removes them.
      if (owner === null) return;
      await elevate(trx);
      // Count under the owner's lock: without it, creations that arrive together each count the
      // same open uploads and all pass (30 at once opened 30). Reservations of one owner may sit in
      // several buckets, so no single usage row can serve as the lock.
      await lockOwnerUploads(trx, owner);
      const open = await uploadsOpenCount(trx, owner);
      if (open >= MAX_OPEN_UPLOADS) {
        throw errors.rateLimited(`${owner} already has ${open} unfinished resumable uploads; finish or delete one first`, { reason: 'open_uploads', limit: MAX_OPEN_UPLOADS });
      }
      // Without a quota the reservation only counts the bytes in flight (the bound is Number.MAX_SAFE_INTEGER).
      const quota = bucket.user_quota_bytes === null ? Number.MAX_SAFE_INTEGER : Number(bucket.user_quota_bytes);
      if (bucket.user_quota_bytes !== null) await usageFold(trx, this.schema, bucket.id, owner);
      const held = await reservationCreate(trx, { id: input.id, bucketId: bucket.id, ownerId: owner, bytes: size, quota, expiresAt: new Date(this.now().getTime() + RESUMABLE_TTL_MS) });
      if (!held) {
        const usage = await usageFind(trx, bucket.id, owner);
        throw quotaExceeded(quota, size, quota - Number(usage?.used_bytes ?? 0) - Number(usage?.reserved_bytes ?? 0));
      }
    });
  }

  /** Frees a resumable upload's reservation (it was deleted, or failed when it completed); idempotent. */
  async closeResumable(db: Db, id: string): Promise<void> {
    await db.transaction().execute((trx) => reservationRelease(trx, id));
  }

  /**
   * An object the caller may read (the owner rule for users; public buckets for anyone), in the
   * caller's request transaction (its role and claims already set: row-level security applies).
   */
  find(db: Executor, principal: Principal, bucketId: string, path: string): Promise<{ bucket: BucketRow; object: ObjectRow }> {
    // The bucket is read in the transaction too: the cache loads on the database itself, which on
    // PGlite (one connection, held by this transaction) would wait forever.
    return this.locate(db, principal, bucketId, path, async () => (await bucketFind(db, bucketId)) ?? null, () => objectFind(db, bucketId, path));
  }

  /**
   * The same outside any transaction (reads: GET, signed links): a user's object is read through
   * row-level security in one statement (objectAt), so a read opens no transaction of its own.
   */
  findOutside(db: Db, principal: Principal, bucketId: string, path: string): Promise<{ bucket: BucketRow; object: ObjectRow }> {
    return this.locate(db, principal, bucketId, path, () => this.bucketOf(bucketId), () => this.objectAt(db, principal, bucketId, path));
  }

  /** The owner rule is checked before the object is read. */
  private async locate(
    db: Executor,
    principal: Principal,
    bucketId: string,
    path: string,
    bucketOf: () => Promise<BucketRow | null>,
    read: () => Promise<ObjectRow | undefined>,
  ): Promise<{ bucket: BucketRow; object: ObjectRow }> {
    const segments = this.segmentsOf(path);
    const bucket = await bucketOf();
    if (!bucket) throw errors.notFound('Bucket', bucketId);
    if (principal.kind === 'anon') {
      if (!bucket.public) throw errors.notFound('Bucket', bucketId);
    } else {
      await this.ownerOf(db, bucket, principal, segments, false);
    }
    const object = await read();
    if (!object) throw errors.notFound('Object', `${bucketId}/${path}`);
    return { bucket, object };
  }

  /** Reads an object: conditional (If-None-Match), ranged (one `bytes=` range), or only its head. */
  async open(
    db: Db,
    principal: Principal,
    bucketId: string,
    path: string,
    options: { range?: string | undefined; ifNoneMatch?: string | undefined; headOnly?: boolean },
  ): Promise<Download> {
    const { object } = await this.findOutside(db, principal, bucketId, path);
    return this.openObject(object, options);
  }

  async openObject(object: ObjectRow, options: { range?: string | undefined; ifNoneMatch?: string | undefined; headOnly?: boolean }): Promise<Download> {
    if (options.ifNoneMatch !== undefined && etagMatches(options.ifNoneMatch, etagOf(object))) return { kind: 'not_modified', object };
    const size = Number(object.size);
    const range: RangeOutcome = options.range === undefined ? { kind: 'none' } : parseRange(options.range, size);
    if (range.kind === 'unsatisfiable') return { kind: 'unsatisfiable', object };
    if (options.headOnly) return { kind: 'head', object };
    const part = range.kind === 'range' ? { start: range.start, end: range.end } : null;
    // An empty object has no byte to read: its body is empty.
    const stream = size === 0 ? null : await this.driver.get(object.storage_key, part ?? undefined);
    if (size !== 0 && !stream) throw errors.unavailable('The object\'s bytes are missing from storage; run `tally storage check`', { reason: 'storage_missing' });
    return { kind: 'body', object, stream: stream ?? Readable.from([]), range: part };
  }

  async remove(db: Executor, principal: Principal, bucketId: string, path: string): Promise<ObjectRow> {
    const segments = this.segmentsOf(path);
    const bucket = await bucketFind(db, bucketId);
    if (!bucket) throw errors.notFound('Bucket', bucketId);
    await this.ownerOf(db, bucket, principal, segments, true);
    const object = await objectFindForUpdate(db, bucketId, path);
    if (!object) throw errors.notFound('Object', `${bucketId}/${path}`);
    // The row goes now; the trigger queues its bytes for the sweeper (no orphan, whatever happens next).
    await objectDelete(db, object.id);
    return object;
  }

  /** Objects under `prefix`, in path order. A user lists inside their own folders only. */
  async list(db: Executor, principal: Principal, bucketId: string, prefix: string, cursor: string | undefined, limit: number) {
    const bucket = await bucketFind(db, bucketId);
    if (!bucket) throw errors.notFound('Bucket', bucketId);
    if (principal.kind === 'user') {
      const first = prefix.split('/')[0] ?? '';
      if (!prefix.includes('/') && first !== principal.userId) {
        throw errors.forbidden(`List under your own folder: prefix must start with "${principal.userId}/"`);
      }
      await this.ownerOf(db, bucket, principal, [first], false);
    }
    let after: string | null = null;
    if (cursor !== undefined) {
      after = Buffer.from(cursor, 'base64url').toString('utf8');
      if (!pathSegments(after)) throw errors.invalidRequest('cursor is not a cursor this API returned', { field: 'cursor' });
    }
    const rows = await objectList(db, bucketId, prefix, after, limit);
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    const last = page[page.length - 1];
    return { rows: page, nextCursor: more && last ? Buffer.from(last.path, 'utf8').toString('base64url') : null };
  }

  /**
   * Copies or moves an object (to another path, or another bucket) under the destination's rules:
   * the caller must read the source and write the destination; its type, size limit and quota
   * apply. A copy duplicates the bytes in the driver under a new key; a move only changes the row
   * (its bytes stay under their key). An existing destination → 409 unless `upsert`.
   */
  async transfer(
    db: Executor,
    principal: Principal,
    input: { mode: 'copy' | 'move'; bucket: string; from: string; to: string; toBucket?: string | undefined; upsert: boolean },
  ): Promise<ObjectRow> {
    const { object: source } = await this.find(db, principal, input.bucket, input.from);
    const destBucketId = input.toBucket ?? input.bucket;
    const destSegments = this.segmentsOf(input.to);
    const dest = await bucketFind(db, destBucketId);
    if (!dest) throw errors.notFound('Bucket', destBucketId);
    const owner = await this.ownerOf(db, dest, principal, destSegments, true);
    if (input.mode === 'move') await this.ownerOf(db, (await bucketFind(db, input.bucket)) as BucketRow, principal, this.segmentsOf(input.from), true);
    if (destBucketId === input.bucket && input.to === input.from) throw errors.invalidRequest('The destination is the source', { field: 'body.to' });
    const type = source.declared_type ?? source.sniffed_type;
    if (!typeAllowed(dest.allowed_mime_types, type) || (source.sniffed_type !== null && !typeAllowed(dest.allowed_mime_types, source.sniffed_type))) {
      throw new DomainError('unsupported_media_type', `Bucket ${dest.id} does not allow ${type ?? '(no type)'}`, { reason: 'declared_type', allowed: dest.allowed_mime_types });
    }
    const size = Number(source.size);
    if (dest.file_size_limit !== null && size > Number(dest.file_size_limit)) throw tooLarge('size', Number(dest.file_size_limit));
    const existing = await objectFindForUpdate(db, destBucketId, input.to);
    if (existing && !input.upsert) throw errors.conflict(`An object already exists at ${input.to}; set upsert to overwrite it`, { path: input.to });
    // The destination owner's quota, when the bytes are new to them (a copy, or a move to another owner or bucket).
    const newToOwner = input.mode === 'copy' || owner !== source.owner_id || destBucketId !== source.bucket_id;
    if (dest.user_quota_bytes !== null && owner !== null && newToOwner) {
      // Checked and held in one statement that locks the owner's usage row until this transaction
      // ends (the new row's trigger adds its bytes under that lock), so parallel copies are ordered
      // and together never pass the quota. storage_usage is Tally's own: no end-user grant, hence
      // the owner's role for that one statement, then the caller's again.
      const quota = Number(dest.user_quota_bytes);
      const replaced = existing ? Number(existing.size) : 0;
      await elevate(db);
      await usageFold(db, this.schema, dest.id, owner);
      const room = await usageClaim(db, { bucketId: dest.id, ownerId: owner, bytes: size - replaced, quota });
      await setRequestRole(db, principal);
      if (!room.ok) throw quotaExceeded(quota, size, room.free + replaced);
    }
    if (existing) await objectDelete(db, existing.id);
    if (input.mode === 'move') {
      // The row is replaced by one at the new place that keeps the bytes' key: the delete queues
      // the key, and the sweeper leaves a key some row still points at (keyReferenced).
      await objectDelete(db, source.id);
      return objectInsert(db, {
        id: source.id, bucket_id: dest.id, path: input.to, owner_id: owner, uploaded_by: principal.kind === 'user' ? principal.userId : source.uploaded_by,
        storage_key: source.storage_key, size, declared_type: source.declared_type, sniffed_type: source.sniffed_type, sha256: source.sha256,
        metadata: (source.metadata ?? {}) as Record<string, unknown>,
      });
    }
    const id = newId('storageObject');
    const key = `o/${dest.id}/${id}`;
    const copy = await objectInsert(db, {
      id, bucket_id: dest.id, path: input.to, owner_id: owner, uploaded_by: principal.kind === 'user' ? principal.userId : null, storage_key: key,
      size, declared_type: source.declared_type, sniffed_type: source.sniffed_type, sha256: source.sha256, metadata: (source.metadata ?? {}) as Record<string, unknown>,
    });
    // Bytes last: a failed copy rolls the row back with the request.
    await this.driver.copy(source.storage_key, key);
    return copy;
  }

  // -------------------------------------------------------------------------------------------
  // Signed links
  // -------------------------------------------------------------------------------------------

  /** A link to download or upload one path, made by a caller who may do that now. */
  async sign(
    db: Executor,
    principal: Principal,
    bucketId: string,
    path: string,
    input: { action: 'download' | 'upload'; expiresIn: number; maxSize?: number | undefined; contentType?: string | undefined },
  ): Promise<{ token: string; expiresAt: Date }> {
    const segments = this.segmentsOf(path);
    const bucket = await bucketFind(db, bucketId);
    if (!bucket) throw errors.notFound('Bucket', bucketId);
    await this.ownerOf(db, bucket, principal, segments, input.action === 'upload');
    const object = input.action === 'download' ? await objectFind(db, bucketId, path) : undefined;
    if (input.action === 'download' && !object) throw errors.notFound('Object', `${bucketId}/${path}`);
    const expiresAt = new Date(this.now().getTime() + input.expiresIn * 1000);
    const link: SignedLink = {
      action: input.action,
      bucket: bucketId,
      path,
      exp: Math.floor(expiresAt.getTime() / 1000),
      signer: principal.kind === 'user' ? principal.userId : 'service',
      // A download link is for the object as it is now: not for what a later upload puts at the path.
      ...(object ? { obj: object.id, sha: object.sha256 } : {}),
      ...(input.action === 'upload' ? { id: newId('storageLink'), max: input.maxSize ?? null, type: input.contentType ? mediaType(input.contentType) : null } : {}),
    };
    return { token: this.links.sign(link), expiresAt };
  }

  /**
   * The link a request carries, if it is genuine, unexpired and made for this action and path.
   * Tampered, expired or mismatched → 403 `forbidden`.
   */
  verifyLink(token: string, action: 'download' | 'upload', bucketId: string, path: string): SignedLink {
    const link = this.links.verify(token);
    if (!link || link.action !== action || link.bucket !== bucketId || link.path !== path) throw errors.forbidden('This link is not valid');
    if (link.exp * 1000 <= this.now().getTime()) throw errors.forbidden('This link has expired');
    return link;
  }

  /**
   * Reads through a signed download link: the link must be genuine and unexpired, its signer must
   * still be allowed to read the path (a member removed from a workspace loses their links), and
   * the object must still be the version it was signed for (an overwrite or a new object at the
   * path is not theirs to hand out). Anything else → 403 `forbidden`; a deleted object → 404.
   */
  async openSigned(db: Db, token: string, bucketId: string, path: string, options: { range?: string | undefined; ifNoneMatch?: string | undefined; headOnly?: boolean }): Promise<Download> {
    const link = this.verifyLink(token, 'download', bucketId, path);
    const { object } = await this.findOutside(db, await this.signerOf(db, link, 'storage:read'), bucketId, path);
    if (link.obj !== object.id || link.sha !== object.sha256) throw errors.forbidden('This link was made for an earlier version of the object');
    return this.openObject(object, options);
  }

  /**
   * The principal a signed link acts as: the service, or its signer with only the scope the link
   * needs — if the signer is still an active user. A link is the signer's authority handed on, so
   * it ends with theirs: a deactivated or deleted signer's links → 403 `forbidden` (attacker review
   * S1). Access to the path is checked after this, on every use, as for the signer's own requests.
   */
  async signerOf(db: Executor, link: SignedLink, scope: 'storage:read' | 'storage:write'): Promise<Principal> {
    if (link.signer === 'service') return { kind: 'service' };
    const state = await userAuthState(db, link.signer, null);
    if (!state?.is_active) throw errors.forbidden("This link's signer can no longer use it");
    return { kind: 'user', userId: link.signer, email: null, via: 'jwt', keyId: null, scopes: [scope], sessionId: null };
  }

  /** Claims a one-use upload link (in its own transaction, before any byte is read). */
  async claimUploadLink(db: Db, link: SignedLink): Promise<void> {
    if (!link.id) throw errors.forbidden('This link is not valid');
    const id = link.id;
    const fresh = await db.transaction().execute((trx) => linkUse(trx, id, new Date(link.exp * 1000)));
    if (!fresh) throw errors.forbidden('This upload link was already used');
  }

  // -------------------------------------------------------------------------------------------
  // Housekeeping
  // -------------------------------------------------------------------------------------------

  /** Compares what the rows say with what the driver holds, both ways. */
  async check(db: Executor): Promise<StorageCheckReport> {
    const { referenced, pending } = await storageKeysAll(db);
    const held = (await this.driver.list('', { limit: Number.MAX_SAFE_INTEGER })).filter((k) => k.startsWith('o/') || k.startsWith('f/'));
    const heldSet = new Set(held);
    const missing = [...referenced].filter((k) => !heldSet.has(k)).sort();
    const orphans = held.filter((k) => !referenced.has(k) && !pending.has(k)).sort();
    return {
      referenced: referenced.size,
      held: held.length,
      pending: pending.size,
      missing: missing.slice(0, 100),
      orphans: orphans.slice(0, 100),
      missing_count: missing.length,
      orphan_count: orphans.length,
      ok: missing.length === 0 && orphans.length === 0,
    };
  }

  /**
   * Folds pending bytes-used changes into storage_usage, drains the delete outbox (bytes whose rows
   * are gone; a failed delete is retried later, with back-off) and frees reservations of uploads that
   * never settled. Safe in several processes.
   */
  async sweep(batch = 100): Promise<{ deleted: number; failed: number; released: number; staged: number }> {
    const db = this.db;
    // Bytes-used changes of buckets without a quota, gathered since the last pass (migration 0054).
    await usageFold(db, this.schema, null, null);
    let deleted = 0;
    let failed = 0;
    const now = this.now();
    // No transaction is held while the driver works (a slow S3 must not pin PGlite's one
    // connection): deletes are idempotent, so two sweepers racing on a key do no harm.
    for (const d of await deletionsDue(db, now, batch)) {
      try {
        if (!(await keyReferenced(db, d.storage_key))) await this.driver.delete(d.storage_key);
        await deletionDone(db, Number(d.id));
        deleted++;
      } catch (err) {
        const backoff = Math.min(3600, 5 * 2 ** Math.min(d.attempts, 10)) * 1000;
        await deletionFailed(db, Number(d.id), new Date(now.getTime() + backoff), err instanceof Error ? err.message : String(err));
        failed++;
      }
    }
    let released = 0;
    for (const id of await reservationsExpired(db, now, batch)) {
      if (await db.transaction().execute((trx) => reservationRelease(trx, id))) released++;
      // An abandoned resumable upload: its pieces go with its reservation.
      if (id.startsWith('tus_')) await this.staging?.remove(id).catch(() => undefined);
    }
    // Uploads with no reservation (the service's, in `none` buckets) expire by the datastore's clock.
    // That pass reads every upload's record, so it runs every 10 minutes rather than every tick.
    let staged = 0;
    if (this.staging && now.getTime() - this.stagedSweptAt >= STAGED_SWEEP_EVERY_MS) {
      this.stagedSweptAt = now.getTime();
      staged = await this.staging.deleteExpired().catch(() => 0);
    }
    return { deleted, failed, released, staged };
  }
}

/** `tally storage check`: the rows and the driver agree (POST /v1/storage/check runs the same in a server). */
export interface StorageCheckReport {
  /** Keys the rows point at (objects and project file versions). */
  referenced: number;
  /** Keys the driver holds under Tally's prefixes. */
  held: number;
  /** Keys queued for deletion (not orphans: the sweeper will delete them). */
  pending: number;
  /** Rows whose bytes are gone (at most 100 listed). */
  missing: string[];
  /** Bytes no row points at and nothing will delete (at most 100 listed; an upload in flight shows here for a moment). */
  orphans: string[];
  missing_count: number;
  orphan_count: number;
  ok: boolean;
}

function minOf(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}

function tooLarge(reason: 'size', limit: number): DomainError {
  return new DomainError('payload_too_large', `The object exceeds the bucket's limit of ${limit} bytes`, { reason, limit });
}

function quotaExceeded(quota: number, needed: number, free: number): DomainError {
  return new DomainError('payload_too_large', `The upload would pass the byte quota of ${quota} (${Math.max(0, free)} bytes free)`, {
    reason: 'quota',
    quota,
    needed,
    free: Math.max(0, free),
  });
}

/** A body that broke off (the client went away) is the client's fault, not a server error. */
function streamFailure(err: unknown): DomainError {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err instanceof Error && err.message === 'aborted')) {
    return errors.invalidRequest('The request body ended before it was complete');
  }
  throw err;
}

function etagMatches(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

