import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { errors } from '../../core/errors.js';
import { hasScope } from '../../core/principal.js';
import { created, defineRoute, ok, type Reply, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { iso, ListQuery, listOf } from '../../core/schemas.js';
import { pageRequest, toPage } from '../../core/paging.js';
import type { Download, StorageService } from './storage.service.js';
import { Bucket, BucketId, bucketToApi, CreateBucketBody, objectToApi, StorageObject, UpdateBucketBody } from './storage.js';

const tags = ['storage'];
const BucketParam = Type.Object({ id: BucketId });
const ObjectParams = Type.Object({ bucket: BucketId, '*': Type.String({ minLength: 1, maxLength: 1024 }) });
const Bytes = Type.Unknown({ description: 'The object\'s bytes' });
const Deleted = Type.Object({ id: Type.String(), deleted: Type.Literal(true) });
const StorageUsage = Type.Object(
  {
    bucket_id: Type.String(),
    owner_id: Type.String({ description: "The owner: the first path segment of the owner's objects (a user id, or a workspace id)" }),
    used_bytes: Type.Integer({ description: 'Bytes of the stored objects' }),
    reserved_bytes: Type.Integer({ description: 'Bytes reserved by uploads in flight (freed when they settle or their reservation expires)' }),
    quota_bytes: Type.Union([Type.Integer(), Type.Null()], { description: "The bucket's per-owner quota (user_quota_bytes); null = none" }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { title: 'StorageUsage' },
);
const TokenQuery = Type.Object({ token: Type.String({ minLength: 10, maxLength: 8192 }) }, { additionalProperties: false });

/** What Tally tells a caller about the URL it would sign: configured, or the request's own origin. */
export interface StorageRouteOptions {
  publicUrl?: string | undefined;
}

/** Buckets (service), objects (owners), public and signed reads, signed uploads (docs/storage.md). */
export function registerStorageRoutes(app: FastifyInstance, deps: RouteDeps, storage: StorageService, options: StorageRouteOptions = {}): void {
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/storage/buckets', summary: 'Create a bucket (size limit, allowed types, owner rule, per-owner byte quota)', tags,
    auth: 'service', body: CreateBucketBody,
    response: { 201: Bucket, 409: ErrorResponse },
    handler: async (ctx, { body }) => created(bucketToApi(await storage.createBucket(ctx.db, body))),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/storage/buckets', summary: 'List buckets', tags, auth: 'service',
    response: { 200: Type.Object({ data: Type.Array(Bucket), next_cursor: Type.Null() }) },
    handler: async (ctx) => ok({ data: (await storage.listBuckets(ctx.db)).map(bucketToApi), next_cursor: null }),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/storage/buckets/:id', summary: 'Get a bucket', tags, auth: 'service', params: BucketParam,
    response: { 200: Bucket, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(bucketToApi(await storage.getBucket(ctx.db, params.id))),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/storage/buckets/:id/usage',
    summary: "A bucket's bytes used and reserved per owner, against its per-owner quota (newest owner first; owner_id = one owner)", tags, auth: 'service',
    params: BucketParam,
    query: Type.Object({ ...ListQuery.properties, owner_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) }, { additionalProperties: false }),
    response: { 200: listOf(StorageUsage), 404: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      const page = pageRequest(query);
      const { bucket, rows } = await storage.usage(ctx.db, params.id, page, query.owner_id);
      return ok(
        toPage(rows, page.limit, (r) => ({
          bucket_id: r.bucket_id,
          owner_id: r.owner_id,
          used_bytes: Number(r.used_bytes),
          reserved_bytes: Number(r.reserved_bytes),
          quota_bytes: bucket.user_quota_bytes === null ? null : Number(bucket.user_quota_bytes),
          updated_at: iso(r.updated_at),
        })),
      );
    },
  });
  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/storage/buckets/:id', summary: "Change a bucket's rules (new uploads follow them)", tags, auth: 'service',
    params: BucketParam, body: UpdateBucketBody,
    response: { 200: Bucket, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(bucketToApi(await storage.updateBucket(ctx.db, params.id, body))),
  });
  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/storage/buckets/:id', summary: 'Delete an empty bucket', tags, auth: 'service', params: BucketParam,
    response: { 200: Deleted, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params }) => {
      await storage.deleteBucket(ctx.db, params.id);
      return ok({ id: params.id, deleted: true as const });
    },
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/storage/check', summary: 'Compare the object rows with what the driver holds (missing bytes, orphaned bytes)', tags,
    auth: 'service', optionalBody: true, body: Type.Object({}, { additionalProperties: false }),
    response: {
      200: Type.Object({
        referenced: Type.Integer(), held: Type.Integer(), pending: Type.Integer(), missing: Type.Array(Type.String()), orphans: Type.Array(Type.String()),
        missing_count: Type.Integer(), orphan_count: Type.Integer(), ok: Type.Boolean(),
      }),
    },
    handler: async (ctx) => ok(await storage.check(ctx.db)),
  });

  // Uploads read the raw body themselves: in this scope every content type streams to the handler
  // unparsed (and unbounded by bodyLimit: the bucket's limit and the quota bound it instead).
  app.register(async (raw) => {
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', (_request, _payload, done) => done(null));

    defineRoute(raw, deps, {
      method: 'PUT', url: '/v1/storage/objects/:bucket/*', summary: 'Upload an object (raw body; x-upsert: true overwrites)', tags,
      auth: 'any', scope: 'storage:write', params: ObjectParams, transaction: 'none', streamed: true,
      response: { 200: StorageObject, 201: StorageObject, 404: ErrorResponse, 409: ErrorResponse, 413: ErrorResponse, 415: ErrorResponse },
      handler: async (ctx, { params, request }) => {
        const result = await storage.upload(ctx.db, ctx.principal, uploadInput(request, params.bucket, params['*']));
        return { status: result.created ? 201 : 200, body: objectToApi(result.object) };
      },
    });

    defineRoute(raw, deps, {
      method: 'PUT', url: '/storage/signed/:bucket/*', summary: 'Upload with a signed upload link (once, before it expires)', tags,
      auth: 'none', params: ObjectParams, query: TokenQuery, transaction: 'none', streamed: true,
      response: { 201: StorageObject, 403: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 413: ErrorResponse, 415: ErrorResponse },
      handler: async (ctx, { params, query, request }) => {
        const link = storage.verifyLink(query.token, 'upload', params.bucket, params['*']);
        const signer = await storage.signerOf(ctx.db, link, 'storage:write');
        await storage.claimUploadLink(ctx.db, link);
        const input = { ...uploadInput(request, params.bucket, params['*']), upsert: false, link: { maxSize: link.max ?? null, contentType: link.type ?? null } };
        const result = await storage.upload(ctx.db, signer, input);
        return created(objectToApi(result.object));
      },
    });
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/storage/objects/:bucket/*', summary: 'Download an object (Range → 206, If-None-Match → 304); HEAD for its headers', tags,
    // No request transaction: the bucket is cached and a user's object is read through row-level
    // security in one statement (StorageService.find; docs/storage.md, "Speed").
    auth: 'any', scope: 'storage:read', params: ObjectParams, transaction: 'none',
    response: { 200: Bytes, 206: Bytes, 404: ErrorResponse },
    handler: async (ctx, { params, request }) =>
      answer(await storage.open(ctx.db, ctx.principal, params.bucket, params['*'], readOptions(request)), false),
  });

  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/storage/objects/:bucket/*', summary: 'Delete an object (its bytes follow through the delete outbox)', tags,
    auth: 'any', scope: 'storage:write', params: ObjectParams,
    response: { 200: Deleted, 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      const object = await storage.remove(ctx.db, ctx.principal, params.bucket, params['*']);
      return ok({ id: object.id, deleted: true as const });
    },
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/storage/objects/:bucket', summary: "List objects under a prefix, in path order (a user's: under their own folders)", tags,
    auth: 'any', scope: 'storage:read', params: Type.Object({ bucket: BucketId }),
    query: Type.Object(
      {
        prefix: Type.Optional(Type.String({ maxLength: 1024 })),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
        cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
      },
      { additionalProperties: false },
    ),
    response: { 200: Type.Object({ data: Type.Array(StorageObject), next_cursor: Type.Union([Type.String(), Type.Null()]) }), 404: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      const page = await storage.list(ctx.db, ctx.principal, params.bucket, query.prefix ?? '', query.cursor, query.limit ?? 50);
      return ok({ data: page.rows.map(objectToApi), next_cursor: page.nextCursor });
    },
  });

  for (const mode of ['copy', 'move'] as const) {
    defineRoute(app, deps, {
      method: 'POST', url: `/v1/storage/objects/:bucket/${mode}`,
      summary: mode === 'copy' ? 'Copy an object to another path or bucket (the destination\'s rules apply)' : 'Move an object to another path or bucket (its bytes stay; the destination\'s rules apply)',
      tags, auth: 'any', scope: 'storage:write', params: Type.Object({ bucket: BucketId }),
      body: Type.Object(
        {
          from: Type.String({ minLength: 1, maxLength: 1024 }),
          to: Type.String({ minLength: 1, maxLength: 1024 }),
          to_bucket: Type.Optional(BucketId),
          upsert: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
      response: { 200: StorageObject, 201: StorageObject, 404: ErrorResponse, 409: ErrorResponse, 413: ErrorResponse, 415: ErrorResponse },
      handler: async (ctx, { params, body }) => {
        const object = await storage.transfer(ctx.db, ctx.principal, { mode, bucket: params.bucket, from: body.from, to: body.to, toBucket: body.to_bucket, upsert: body.upsert ?? false });
        return mode === 'copy' ? created(objectToApi(object)) : ok(objectToApi(object));
      },
    });
  }

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/storage/sign/:bucket/*', summary: 'Make a signed link: download until it expires, or upload once', tags,
    auth: 'any', scope: 'storage:read', params: ObjectParams,
    body: Type.Object(
      {
        action: Type.Union([Type.Literal('download'), Type.Literal('upload')]),
        expires_in: Type.Integer({ minimum: 1, maximum: 7 * 86_400 }),
        max_size: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_099_511_627_776 })),
        content_type: Type.Optional(Type.String({ minLength: 3, maxLength: 255 })),
      },
      { additionalProperties: false },
    ),
    response: { 200: Type.Object({ url: Type.String(), expires_at: Type.String({ format: 'date-time' }) }), 404: ErrorResponse },
    handler: async (ctx, { params, body, request }) => {
      if (body.action === 'upload' && !hasScope(ctx.principal, 'storage:write')) throw errors.forbidden('This API key lacks the "storage:write" scope');
      const link = await storage.sign(ctx.db, ctx.principal, params.bucket, params['*'], {
        action: body.action,
        expiresIn: body.expires_in,
        maxSize: body.max_size,
        contentType: body.content_type,
      });
      const base = options.publicUrl ?? `${request.protocol}://${request.host}`;
      const url = `${base}/storage/signed/${params.bucket}/${encodePath(params['*'])}?token=${link.token}`;
      return ok({ url, expires_at: iso(link.expiresAt) });
    },
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/storage/public/:bucket/*', summary: "Download from a public bucket, without credentials", tags,
    auth: 'none', params: ObjectParams, transaction: 'none',
    response: { 200: Bytes, 206: Bytes, 404: ErrorResponse },
    handler: async (ctx, { params, request }) => answer(await storage.open(ctx.db, { kind: 'anon' }, params.bucket, params['*'], readOptions(request)), true),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/storage/signed/:bucket/*', summary: 'Download with a signed link: the version it was signed for, while its signer may read it, until it expires', tags,
    auth: 'none', params: ObjectParams, query: TokenQuery, transaction: 'none',
    response: { 200: Bytes, 206: Bytes, 403: ErrorResponse, 404: ErrorResponse },
    handler: async (ctx, { params, query, request }) => {
      return answer(await storage.openSigned(ctx.db, query.token, params.bucket, params['*'], readOptions(request)), false);
    },
  });
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function uploadInput(request: FastifyRequest, bucket: string, path: string) {
  const length = header(request, 'content-length');
  const meta = header(request, 'x-metadata');
  let metadata: Record<string, unknown> | undefined;
  if (meta !== undefined) {
    try {
      const parsed: unknown = JSON.parse(meta);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || meta.length > 4096) throw new Error('not an object');
      metadata = parsed as Record<string, unknown>;
    } catch {
      throw errors.invalidRequest('x-metadata must be a JSON object of at most 4096 characters', { header: 'x-metadata' });
    }
  }
  return {
    bucket,
    path,
    body: request.raw,
    contentType: header(request, 'content-type'),
    contentLength: length !== undefined && /^\d+$/.test(length) ? Number(length) : null,
    upsert: header(request, 'x-upsert') === 'true',
    ...(metadata ? { metadata } : {}),
  };
}

function readOptions(request: FastifyRequest) {
  return { range: header(request, 'range'), ifNoneMatch: header(request, 'if-none-match'), headOnly: request.method === 'HEAD' };
}

function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

/**
 * An object read as HTTP: 304, 416 (with `Content-Range: bytes *\/size`, a protocol answer
 * rather than an error of the catalogue), 206 or 200. User content is served with `nosniff` and a
 * sandboxing CSP, so an uploaded HTML page cannot run as the API's origin.
 */
function answer(d: Download, isPublic: boolean): Reply {
  const o = d.object;
  const size = Number(o.size);
  const headers: Record<string, string> = {
    etag: `"${o.sha256}"`,
    'last-modified': new Date(o.updated_at).toUTCString(),
    'accept-ranges': 'bytes',
    'cache-control': isPublic ? 'public, max-age=60' : 'private, no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "sandbox; default-src 'none'",
  };
  if (d.kind === 'not_modified') return { status: 304, body: undefined, headers };
  if (d.kind === 'unsatisfiable') return { status: 416, body: undefined, headers: { ...headers, 'content-range': `bytes */${size}` } };
  headers['content-type'] = o.declared_type ?? o.sniffed_type ?? 'application/octet-stream';
  // A HEAD answer keeps the object's Content-Length only with a (empty) stream body (Fastify's HEAD handling).
  if (d.kind === 'head') return { status: 200, body: Readable.from([]), headers: { ...headers, 'content-length': String(size) } };
  if (d.range) {
    headers['content-range'] = `bytes ${d.range.start}-${d.range.end}/${size}`;
    headers['content-length'] = String(d.range.end - d.range.start + 1);
    return { status: 206, body: d.stream, headers };
  }
  headers['content-length'] = String(size);
  return { status: 200, body: d.stream, headers };
}
