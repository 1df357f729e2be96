import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { MAX_OPEN_UPLOADS } from '../src/modules/storage/storage.service.js';
import { heldAndExpected, PNG, rawGet } from './support/storage.js';

/**
 * Resumable uploads (tus, with the official tus-js-client): a large file arrives in pieces, an
 * interrupted upload resumes where it stopped, and only a complete, allowed file becomes an object;
 * creation is refused before any byte for the same reasons as a PUT; strangers cannot continue it.
 */
describe(`storage: resumable uploads (${TARGET})`, () => {
  let app: TestApp;
  let base: string;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let stranger: Awaited<ReturnType<typeof signUp>>;
  let now = new Date();

  beforeAll(async () => {
    app = await createTestApp({}, { clock: () => now });
    base = await app.server.listen({ port: 0, host: '127.0.0.1' });
    [owner, stranger] = [await signUp(app), await signUp(app)];
    const b = await client(app.server, app.serviceKey).post('/v1/storage/buckets', { id: 'videos', allowed_mime_types: ['video/*', 'text/plain'], file_size_limit: 2_000_000 });
    expect(b.status).toBe(201);
    const tiny = await client(app.server, app.serviceKey).post('/v1/storage/buckets', { id: 'tiny', allowed_mime_types: ['text/plain'], file_size_limit: 1000, user_quota_bytes: 1000 });
    expect(tiny.status).toBe(201);
  });
  afterAll(async () => {
    await app?.close();
  });

  const upload = (data: Buffer, metadata: Record<string, string>, token: string, extra: Partial<tus.UploadOptions> = {}) =>
    new tus.Upload(data, {
      endpoint: `${base}/v1/storage/uploads`,
      chunkSize: 256 * 1024,
      retryDelays: [],
      metadata,
      headers: { authorization: `Bearer ${token}` },
      ...extra,
    });

  it('an upload interrupted after its first piece resumes from its offset and becomes one object with the whole content', async () => {
    const data = randomBytes(900_000);
    const path = `${owner.user.id}/clips/take1.txt`;
    let url = '';
    await new Promise<void>((resolve, reject) => {
      const first = upload(data, { bucket: 'videos', path, filetype: 'text/plain' }, owner.token, {
        onChunkComplete: () => {
          url = first.url ?? '';
          void first.abort().then(resolve, reject);
        },
        onError: reject,
      });
      first.start();
    });
    expect(url).toContain('/v1/storage/uploads/');
    const head = await fetch(url, { method: 'HEAD', headers: { authorization: `Bearer ${owner.token}`, 'tus-resumable': '1.0.0' } });
    expect(Number(head.headers.get('upload-offset'))).toBe(256 * 1024);
    // Nobody else may look at it or continue it.
    const peek = await fetch(url, { method: 'HEAD', headers: { authorization: `Bearer ${stranger.token}`, 'tus-resumable': '1.0.0' } });
    expect(peek.status).toBe(404);
    expect((await rawGet(app, `/v1/storage/objects/videos/${path}`, { token: owner.token })).status).toBe(404);
    await new Promise<void>((resolve, reject) => {
      const resumed = upload(data, { bucket: 'videos', path, filetype: 'text/plain' }, owner.token, { uploadUrl: url, onSuccess: () => resolve(), onError: reject });
      resumed.start();
    });
    const got = await rawGet(app, `/v1/storage/objects/videos/${path}`, { token: owner.token });
    expect(got.status).toBe(200);
    expect(Buffer.compare(got.bytes, data)).toBe(0);
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
  });

  it('creation is refused before any byte: another owner’s folder 403, a type not allowed 415, over the size limit 413', async () => {
    const fail = (metadata: Record<string, string>, size: number) =>
      new Promise<number>((resolve) => {
        const u = upload(randomBytes(size), metadata, owner.token, {
          onSuccess: () => resolve(200),
          onError: (err) => resolve((err as tus.DetailedError).originalResponse?.getStatus() ?? 0),
        });
        u.start();
      });
    expect(await fail({ bucket: 'videos', path: `${stranger.user.id}/x.txt`, filetype: 'text/plain' }, 10)).toBe(403);
    expect(await fail({ bucket: 'videos', path: `${owner.user.id}/x.html`, filetype: 'text/html' }, 10)).toBe(415);
    expect(await fail({ bucket: 'videos', path: `${owner.user.id}/big.txt`, filetype: 'text/plain' }, 2_100_000)).toBe(413);
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
  });

  it('a complete upload whose content is not what it claims is refused when it completes, and nothing is stored', async () => {
    const status = await new Promise<number>((resolve) => {
      const u = upload(Buffer.from('this is not a video'), { bucket: 'videos', path: `${owner.user.id}/fake.mp4`, filetype: 'video/mp4' }, owner.token, {
        onSuccess: () => resolve(200),
        onError: (err) => resolve((err as tus.DetailedError).originalResponse?.getStatus() ?? 0),
      });
      u.start();
    });
    expect(status).toBe(415);
    expect((await rawGet(app, `/v1/storage/objects/videos/${owner.user.id}/fake.mp4`, { token: owner.token })).status).toBe(404);
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
  });

  it('without credentials nothing is created (401)', async () => {
    const res = await fetch(`${base}/v1/storage/uploads`, { method: 'POST', headers: { 'tus-resumable': '1.0.0', 'upload-length': '10' } });
    expect(res.status).toBe(401);
  });

  // Raw tus requests (the protocol by hand, as an attacker would send it).
  const b64 = (v: string) => Buffer.from(v).toString('base64');
  const tusHeaders = (token: string) => ({ authorization: `Bearer ${token}`, 'tus-resumable': '1.0.0' });
  const create = (token: string, meta: Record<string, string>, length: Record<string, string>) =>
    fetch(`${base}/v1/storage/uploads`, {
      method: 'POST',
      headers: { ...tusHeaders(token), ...length, 'upload-metadata': Object.entries(meta).map(([k, v]) => `${k} ${b64(v)}`).join(',') },
    });
  const locationOf = (res: Response) => new URL(res.headers.get('location') as string, base).toString();
  const piece = (url: string, token: string, offset: number, bytes: Buffer) =>
    fetch(url, { method: 'PATCH', headers: { ...tusHeaders(token), 'content-type': 'application/offset+octet-stream', 'upload-offset': String(offset) }, body: new Uint8Array(bytes) });
  const stagedFiles = () => {
    const cfg = app.config as { storage?: { driver: string; root: string }; dataDir: string };
    const dir = cfg.storage?.driver === 'local' ? join(cfg.storage.root, '.tus') : join(cfg.dataDir, 'tus-uploads');
    try {
      return readdirSync(dir).filter((f) => !f.endsWith('.json'));
    } catch {
      return [];
    }
  };
  const usage = async (ownerId: string) =>
    app.database.db.selectFrom('storage_usage').select(['used_bytes', 'reserved_bytes']).where('bucket_id', '=', 'tiny').where('owner_id', '=', ownerId).executeTakeFirst();

  it('a deferred length is refused at creation (400): no upload, no bytes staged past the size limit and the quota', async () => {
    const u = await signUp(app);
    const before = stagedFiles().length;
    // The reviewer's reproduction (R2): Upload-Defer-Length, then 2 MB pieces into a 1000-byte bucket.
    const res = await create(u.token, { bucket: 'tiny', path: `${u.user.id}/f.txt`, filetype: 'text/plain' }, { 'upload-defer-length': '1' });
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe('invalid_request');
    expect(stagedFiles().length).toBe(before);
    expect(await usage(u.user.id)).toBeUndefined();
  });

  it('creation reserves the declared length in the quota: uploads opened together never pass it (413 quota before any byte); deleting or finishing one frees it', async () => {
    const u = await signUp(app);
    const meta = (name: string) => ({ bucket: 'tiny', path: `${u.user.id}/${name}.txt`, filetype: 'text/plain' });
    const first = await create(u.token, meta('a'), { 'upload-length': '600' });
    expect(first.status).toBe(201);
    expect(await usage(u.user.id)).toMatchObject({ used_bytes: 0, reserved_bytes: 600 });
    const second = await create(u.token, meta('b'), { 'upload-length': '600' });
    expect(second.status).toBe(413);
    expect((await second.json()).error.details.reason).toBe('quota');
    // Terminating the first frees its bytes.
    expect((await fetch(locationOf(first), { method: 'DELETE', headers: tusHeaders(u.token) })).status).toBe(204);
    expect(await usage(u.user.id)).toMatchObject({ reserved_bytes: 0 });
    const third = await create(u.token, meta('c'), { 'upload-length': '600' });
    expect(third.status).toBe(201);
    // More than declared is refused by tus itself; the declared bytes complete into an object.
    expect((await piece(locationOf(third), u.token, 0, Buffer.alloc(700, 0x61))).status).toBe(413);
    expect((await piece(locationOf(third), u.token, 0, Buffer.alloc(600, 0x61))).status).toBe(204);
    expect(await usage(u.user.id)).toMatchObject({ used_bytes: 600, reserved_bytes: 0 });
    expect((await rawGet(app, `/v1/storage/objects/tiny/${u.user.id}/c.txt`, { token: u.token })).status).toBe(200);
    // A refusal when it completes (the content is not text) frees the reservation too.
    const fourth = await create(u.token, meta('d'), { 'upload-length': String(PNG.length) });
    expect((await piece(locationOf(fourth), u.token, 0, PNG)).status).toBe(415);
    expect(await usage(u.user.id)).toMatchObject({ used_bytes: 600, reserved_bytes: 0 });
  });

  it(`an owner has at most ${MAX_OPEN_UPLOADS} unfinished uploads (429); abandoned ones expire: the sweep frees their reservations and removes their pieces`, async () => {
    const u = await signUp(app);
    const urls: string[] = [];
    for (let i = 0; i < MAX_OPEN_UPLOADS; i++) {
      const res = await create(u.token, { bucket: 'videos', path: `${u.user.id}/open/${i}.txt`, filetype: 'text/plain' }, { 'upload-length': '100' });
      expect(res.status).toBe(201);
      urls.push(locationOf(res));
    }
    const over = await create(u.token, { bucket: 'videos', path: `${u.user.id}/open/over.txt`, filetype: 'text/plain' }, { 'upload-length': '100' });
    expect(over.status).toBe(429);
    expect((await over.json()).error.details.reason).toBe('open_uploads');
    expect((await piece(urls[0] as string, u.token, 0, Buffer.alloc(50, 0x61))).status).toBe(204);
    const ids = urls.map((url) => url.split('/').pop() as string);
    expect(stagedFiles()).toEqual(expect.arrayContaining(ids));
    // A day later nobody came back: the sweep takes their reservations and their pieces.
    const start = now;
    now = new Date(start.getTime() + 25 * 3600_000);
    try {
      expect((await app.services.storage.sweep()).released).toBeGreaterThanOrEqual(MAX_OPEN_UPLOADS);
    } finally {
      now = start;
    }
    expect(stagedFiles().filter((f) => ids.includes(f))).toEqual([]);
    expect((await fetch(urls[0] as string, { method: 'HEAD', headers: tusHeaders(u.token) })).status).toBe(404);
    const left = await app.database.db.selectFrom('storage_reservations').select('id').where('owner_id', '=', u.user.id).execute();
    expect(left).toEqual([]);
    expect((await create(u.token, { bucket: 'videos', path: `${u.user.id}/open/again.txt`, filetype: 'text/plain' }, { 'upload-length': '100' })).status).toBe(201);
  });

  it(`${MAX_OPEN_UPLOADS + 10} creations at once open exactly ${MAX_OPEN_UPLOADS} uploads: the count is taken under the owner's lock`, async () => {
    const u = await signUp(app);
    const all = await Promise.all(
      Array.from({ length: MAX_OPEN_UPLOADS + 10 }, (_, i) =>
        create(u.token, { bucket: 'videos', path: `${u.user.id}/burst/${i}.txt`, filetype: 'text/plain' }, { 'upload-length': '100' }),
      ),
    );
    const statuses = all.map((res) => res.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(MAX_OPEN_UPLOADS);
    expect(statuses.filter((s) => s === 429)).toHaveLength(10);
    const held = await app.database.db.selectFrom('storage_reservations').select('id').where('owner_id', '=', u.user.id).execute();
    expect(held).toHaveLength(MAX_OPEN_UPLOADS);
  });
});
