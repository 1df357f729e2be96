import { randomBytes } from 'node:crypto';
import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { heldAndExpected, rawGet } from './support/storage.js';

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

  beforeAll(async () => {
    app = await createTestApp();
    base = await app.server.listen({ port: 0, host: '127.0.0.1' });
    [owner, stranger] = [await signUp(app), await signUp(app)];
    const b = await client(app.server, app.serviceKey).post('/v1/storage/buckets', { id: 'videos', allowed_mime_types: ['video/*', 'text/plain'], file_size_limit: 2_000_000 });
    expect(b.status).toBe(201);
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
});
