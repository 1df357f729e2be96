import { NO_DEADLINE } from '../../http/deadline.js';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DomainError, errors } from '../../core/errors.js';
import { hasScope, type Principal } from '../../core/principal.js';
import { errorBody, statusOf } from '../../http/errors.js';
import type { RouteDeps } from '../../http/route.js';
import { newId } from '../../lib/ids.js';
import type { StorageService } from './storage.service.js';

type TusRequest = Parameters<NonNullable<ConstructorParameters<typeof Server>[0]['onIncomingRequest']>>[0];
type TusUpload = Parameters<NonNullable<ConstructorParameters<typeof Server>[0]['onUploadCreate']>>[1];

/** Most bytes one resumable upload may declare (buckets usually set less; the quota, when set, bounds it too). */
const MAX_RESUMABLE_BYTES = 50 * 1024 ** 3;

/**
 * Resumable uploads (the tus protocol, `@tus/server`) at /v1/storage/uploads: large files arrive in
 * pieces on local disk (`directory`) and, once complete, go through the same pipeline as a PUT —
 * owner rule, declared and sniffed type, size limit, quota reservation — onto the configured driver.
 * Metadata names the target: `bucket`, `path`, `filetype` (or `contentType`), `upsert`. Creation is
 * checked before any byte is accepted and reserves the declared length in the owner's quota (a
 * deferred length is refused); every request is authenticated, and an upload may be continued only
 * by the principal that created it. Unfinished uploads expire (`datastore`'s expiry, the sweeper). Not in the OpenAPI document (the tus protocol
 * is its own; see docs/storage.md).
 */
export function registerResumableUploads(app: FastifyInstance, deps: RouteDeps, storage: StorageService, options: { directory: string; datastore: FileStore }): void {
  const datastore = options.datastore;

  const principalOf = async (req: TusRequest): Promise<Principal> => {
    const principal = await deps.authenticator.authenticate(req.headers.get('authorization') ?? undefined);
    if (principal.kind === 'anon') throw errors.unauthenticated();
    if (!hasScope(principal, 'storage:write')) throw errors.forbidden('This API key lacks the "storage:write" scope');
    return principal;
  };
  const idOf = (p: Principal) => (p.kind === 'user' ? `user:${p.userId}` : p.kind);
  const target = (upload: TusUpload) => {
    const m = upload.metadata ?? {};
    const bucket = m['bucket'] ?? '';
    const path = m['path'] ?? '';
    if (!bucket || !path) throw errors.invalidRequest('Upload-Metadata must name the bucket and the path', { header: 'Upload-Metadata' });
    return { bucket, path, contentType: m['filetype'] ?? m['contentType'] ?? undefined, upsert: m['upsert'] === 'true' };
  };
  const asTus = (err: unknown) => {
    if (err instanceof DomainError) return { status_code: statusOf(err.code), body: JSON.stringify(errorBody(err, 'tus')) };
    throw err;
  };

  const tus = new Server({
    path: '/v1/storage/uploads',
    datastore,
    relativeLocation: true,
    maxSize: MAX_RESUMABLE_BYTES,
    // The upload's id is also the name of the quota reservation it holds (`tus_…`).
    namingFunction: () => newId('storageUpload'),
    onIncomingRequest: async (req, uploadId) => {
      try {
        const principal = await principalOf(req);
        if (req.method === 'POST' || req.method === 'OPTIONS') return;
        const upload = await datastore.getUpload(uploadId);
        if (upload.metadata?.['owner'] !== idOf(principal)) throw errors.notFound('Upload', uploadId);
        // Termination: its reservation goes first (were the pieces' removal to fail, expiry takes them).
        if (req.method === 'DELETE') await storage.closeResumable(deps.db, uploadId);
      } catch (err) {
        throw asTus(err);
      }
    },
    onUploadCreate: async (req, upload) => {
      try {
        const principal = await principalOf(req);
        const t = target(upload);
        await storage.openResumable(deps.db, principal, { ...t, id: upload.id, size: upload.size ?? null });
        return { metadata: { ...(upload.metadata ?? {}), owner: idOf(principal) } };
      } catch (err) {
        throw asTus(err);
      }
    },
    onUploadFinish: async (req, upload) => {
      try {
        const principal = await principalOf(req);
        const t = target(upload);
        const result = await storage.upload(deps.db, principal, {
          ...t,
          body: createReadStream(join(options.directory, upload.id)),
          contentLength: upload.size ?? null,
          heldReservation: upload.id,
        });
        await datastore.remove(upload.id);
        return { status_code: 204, headers: { 'x-object-id': result.object.id, 'x-object-sha256': result.object.sha256 } };
      } catch (err) {
        await datastore.remove(upload.id).catch(() => undefined);
        await storage.closeResumable(deps.db, upload.id).catch(() => undefined);
        throw asTus(err);
      }
    },
  });

  // Raw bodies (application/offset+octet-stream) stream to tus unparsed; no per-request deadline.
  app.register(async (raw) => {
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', (_request, _payload, done) => done(null));
    const handler = async (request: FastifyRequest, reply: FastifyReply) => {
      reply.hijack();
      await tus.handle(request.raw, reply.raw);
    };
    for (const url of ['/v1/storage/uploads', '/v1/storage/uploads/*']) {
      raw.route({ method: ['POST', 'PATCH', 'HEAD', 'DELETE', 'OPTIONS'], url, handler, config: NO_DEADLINE, schema: { hide: true } });
    }
  });
}
