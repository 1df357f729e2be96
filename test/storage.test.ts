import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeApiKey, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { heldAndExpected, PNG, rawGet, rawPut, streamOf } from './support/storage.js';

/**
 * Buckets and objects (issue 15, seed 003): every refusal happens before a byte is stored (the
 * driver is checked, not only the rows), reads honour ranges and validators, and deletes leave no
 * orphans once the outbox is swept.
 */
describe(`storage: buckets, uploads, reads and deletes (${TARGET})`, () => {
  let app: TestApp;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let stranger: Awaited<ReturnType<typeof signUp>>;
  let member: Awaited<ReturnType<typeof signUp>>;
  let viewer: Awaited<ReturnType<typeof signUp>>;
  let workspaceId: string;
  const svc = () => client(app.server, app.serviceKey);
  const url = (path: string, bucket = 'user-files') => `/v1/storage/objects/${bucket}/${path}`;

  beforeAll(async () => {
    app = await createTestApp();
    [owner, stranger, member, viewer] = [await signUp(app), await signUp(app), await signUp(app), await signUp(app)];
    workspaceId = (await owner.api.post('/v1/workspaces', { name: 'Studio' })).body.id;
    await owner.api.post(`/v1/workspaces/${workspaceId}/members`, { user_id: member.user.id, role: 'member' });
    await owner.api.post(`/v1/workspaces/${workspaceId}/members`, { user_id: viewer.user.id, role: 'viewer' });
    // Seed 003's bucket: private, 50 MB (here 64 KB), images, PDF and text.
    const b = await svc().post('/v1/storage/buckets', {
      id: 'user-files',
      file_size_limit: 65_536,
      allowed_mime_types: ['image/jpeg', 'image/png', 'image/gif', 'image/webp', 'application/pdf', 'text/plain', 'text/csv'],
    });
    expect(b.status).toBe(201);
    expect(b.body).toMatchObject({ id: 'user-files', public: false, owner_rule: 'owner_folder', file_size_limit: 65_536, user_quota_bytes: null });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('buckets are the service’s: users get 403, a duplicate id 409, a bucket with objects cannot be deleted', async () => {
    expect((await owner.api.post('/v1/storage/buckets', { id: 'mine' })).status).toBe(403);
    expect((await owner.api.get('/v1/storage/buckets')).status).toBe(403);
    expect((await svc().post('/v1/storage/buckets', { id: 'user-files' })).status).toBe(409);
    expect((await svc().post('/v1/storage/buckets', { id: 'Bad Id' })).status).toBe(400);
    const patched = await svc().patch('/v1/storage/buckets/user-files', { public: false });
    expect(patched.status).toBe(200);
    expect((await svc().get('/v1/storage/buckets')).body.data.map((b: { id: string }) => b.id)).toContain('user-files');
    expect((await svc().del('/v1/storage/buckets/nope')).status).toBe(404);
    await svc().post('/v1/storage/buckets', { id: 'scratch' });
    expect((await rawPut(app, url('x/a.txt', 'scratch'), Buffer.from('x'), { token: app.serviceKey, type: 'text/plain' })).status).toBe(201);
    expect((await svc().del('/v1/storage/buckets/scratch')).status).toBe(409);
    expect((await svc().del(`/v1/storage/objects/scratch/x/a.txt`)).status).toBe(200);
    expect((await svc().del('/v1/storage/buckets/scratch')).status).toBe(200);
  });

  it('the owner uploads under their own folder and reads it back with its hash, types and ETag', async () => {
    const path = `${owner.user.id}/avatars/2026/12/a.png`;
    const up = await rawPut(app, url(path), PNG, { token: owner.token, type: 'image/png', headers: { 'x-metadata': '{"alt":"me"}' } });
    expect(up.status).toBe(201);
    expect(up.body).toMatchObject({ path, owner_id: owner.user.id, uploaded_by: owner.user.id, size: PNG.length, declared_type: 'image/png', sniffed_type: 'image/png', metadata: { alt: 'me' } });
    expect(up.body.sha256).toMatch(/^[0-9a-f]{64}$/);
    const got = await rawGet(app, url(path), { token: owner.token });
    expect(got.status).toBe(200);
    expect(Buffer.compare(got.bytes, PNG)).toBe(0);
    expect(got.headers['content-type']).toBe('image/png');
    expect(got.headers['etag']).toBe(`"${up.body.sha256}"`);
    expect(got.headers['x-content-type-options']).toBe('nosniff');
    const head = await rawGet(app, url(path), { token: owner.token, method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(PNG.length));
    expect(head.bytes.length).toBe(0);
    const cached = await rawGet(app, url(path), { token: owner.token, headers: { 'if-none-match': `"${up.body.sha256}"` } });
    expect(cached.status).toBe(304);
  });

  it('a Range read answers 206 with exactly those bytes; a range past the end is 416 with Content-Range', async () => {
    const path = `${owner.user.id}/notes/range.txt`;
    const text = Buffer.from('0123456789abcdefghij');
    expect((await rawPut(app, url(path), text, { token: owner.token, type: 'text/plain' })).status).toBe(201);
    const part = await rawGet(app, url(path), { token: owner.token, headers: { range: 'bytes=5-9' } });
    expect(part.status).toBe(206);
    expect(part.bytes.toString()).toBe('56789');
    expect(part.headers['content-range']).toBe('bytes 5-9/20');
    const tail = await rawGet(app, url(path), { token: owner.token, headers: { range: 'bytes=-3' } });
    expect(tail.bytes.toString()).toBe('hij');
    const open = await rawGet(app, url(path), { token: owner.token, headers: { range: 'bytes=18-' } });
    expect(open.bytes.toString()).toBe('ij');
    const past = await rawGet(app, url(path), { token: owner.token, headers: { range: 'bytes=20-30' } });
    expect(past.status).toBe(416);
    expect(past.headers['content-range']).toBe('bytes */20');
  });

  it('another user can neither write, read nor list in the owner’s folder (403), and nothing is stored', async () => {
    const before = await heldAndExpected(app);
    const path = `${owner.user.id}/avatars/evil.png`;
    const w = await rawPut(app, url(path), PNG, { token: stranger.token, type: 'image/png' });
    expect(w.status).toBe(403);
    expect(w.body.error.code).toBe('forbidden');
    expect((await rawGet(app, url(`${owner.user.id}/avatars/2026/12/a.png`), { token: stranger.token })).status).toBe(403);
    expect((await stranger.api.get(`/v1/storage/objects/user-files?prefix=${owner.user.id}/`)).status).toBe(403);
    expect((await stranger.api.del(url(`${owner.user.id}/avatars/2026/12/a.png`))).status).toBe(403);
    expect((await rawPut(app, url(`${owner.user.id}//x.png`), PNG, { token: owner.token, type: 'image/png' })).status).toBe(400);
    expect(await heldAndExpected(app)).toEqual(before);
  });

  it('a declared type the bucket does not allow is 415 before a byte is read; nothing stored', async () => {
    const before = await heldAndExpected(app);
    const res = await rawPut(app, url(`${owner.user.id}/x.html`), Buffer.from('<script>alert(1)</script>'), { token: owner.token, type: 'text/html' });
    expect(res.status).toBe(415);
    expect(res.body.error).toMatchObject({ code: 'unsupported_media_type', details: { reason: 'declared_type' } });
    expect(await heldAndExpected(app)).toEqual(before);
  });

  it('the content is sniffed: a body that is not what it claims, or whose real type is not allowed, is 415; nothing stored', async () => {
    const before = await heldAndExpected(app);
    const fake = await rawPut(app, url(`${owner.user.id}/fake.png`), Buffer.from('not a png at all'), { token: owner.token, type: 'image/png' });
    expect(fake.status).toBe(415);
    expect(fake.body.error.details).toMatchObject({ reason: 'sniffed_type', declared: 'image/png' });
    // A ZIP declared as text: its real type is not in the list.
    const zip = Buffer.concat([Buffer.from('504b0304140000000800', 'hex'), Buffer.alloc(64, 1)]);
    const hidden = await rawPut(app, url(`${owner.user.id}/hidden.txt`), zip, { token: owner.token, type: 'text/plain' });
    expect(hidden.status).toBe(415);
    expect(hidden.body.error.details).toMatchObject({ reason: 'sniffed_type' });
    expect(await heldAndExpected(app)).toEqual(before);
  });

  it('over the size limit is 413: at once from Content-Length, or as soon as a chunked stream passes it; nothing left behind', async () => {
    const before = await heldAndExpected(app);
    const declared = await rawPut(app, url(`${owner.user.id}/big.txt`), Buffer.alloc(70_000, 0x61), { token: owner.token, type: 'text/plain' });
    expect(declared.status).toBe(413);
    expect(declared.body.error).toMatchObject({ code: 'payload_too_large', details: { reason: 'size', limit: 65_536 } });
    const streamed = await rawPut(app, url(`${owner.user.id}/big2.txt`), streamOf(200_000), { token: owner.token, type: 'text/plain' });
    expect(streamed.status).toBe(413);
    expect(await heldAndExpected(app)).toEqual(before);
    expect((await rawGet(app, url(`${owner.user.id}/big2.txt`), { token: owner.token })).status).toBe(404);
  });

  it('an existing path is 409 without x-upsert; with it the object is replaced and the old bytes go once swept', async () => {
    const path = `${owner.user.id}/docs/v.txt`;
    expect((await rawPut(app, url(path), Buffer.from('one'), { token: owner.token, type: 'text/plain' })).status).toBe(201);
    const again = await rawPut(app, url(path), Buffer.from('two'), { token: owner.token, type: 'text/plain' });
    expect(again.status).toBe(409);
    const up = await rawPut(app, url(path), Buffer.from('three'), { token: owner.token, type: 'text/plain', headers: { 'x-upsert': 'true' } });
    expect(up.status).toBe(200);
    expect((await rawGet(app, url(path), { token: owner.token })).bytes.toString()).toBe('three');
    await app.services.storage.sweep();
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
  });

  it('a delete removes the row at once and the bytes through the outbox: no orphans after the sweep', async () => {
    const path = `${owner.user.id}/docs/gone.txt`;
    const up = await rawPut(app, url(path), Buffer.from('bye'), { token: owner.token, type: 'text/plain' });
    const key = (await app.database.db.selectFrom('storage_objects').select('storage_key').where('id', '=', up.body.id).executeTakeFirstOrThrow()).storage_key;
    expect(await app.services.storage.driver.head(key)).toEqual({ size: 3 });
    expect((await owner.api.del(url(path))).status).toBe(200);
    expect((await rawGet(app, url(path), { token: owner.token })).status).toBe(404);
    const queued = await app.database.db.selectFrom('storage_deletions').select('storage_key').where('storage_key', '=', key).execute();
    expect(queued).toHaveLength(1);
    await app.services.storage.sweep();
    expect(await app.services.storage.driver.head(key)).toBeNull();
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
  });

  it('workspace folders: members write, viewers read only, strangers neither', async () => {
    const path = `${workspaceId}/shared/plan.txt`;
    expect((await rawPut(app, url(path), Buffer.from('plan'), { token: member.token, type: 'text/plain' })).status).toBe(201);
    expect((await rawGet(app, url(path), { token: viewer.token })).status).toBe(200);
    expect((await rawPut(app, url(`${workspaceId}/shared/v.txt`), Buffer.from('v'), { token: viewer.token, type: 'text/plain' })).status).toBe(403);
    expect((await rawGet(app, url(path), { token: stranger.token })).status).toBe(403);
    const listed = await viewer.api.get(`/v1/storage/objects/user-files?prefix=${workspaceId}/`);
    expect(listed.status).toBe(200);
    expect(listed.body.data.map((o: { path: string }) => o.path)).toEqual([path]);
  });

  it('lists page in path order under a prefix; an API key needs storage:read to list and storage:write to upload', async () => {
    for (const n of ['a', 'b', 'c']) await rawPut(app, url(`${owner.user.id}/list/${n}.txt`), Buffer.from(n), { token: owner.token, type: 'text/plain' });
    const first = await owner.api.get(`/v1/storage/objects/user-files?prefix=${owner.user.id}/list/&limit=2`);
    expect(first.body.data.map((o: { path: string }) => o.path.split('/').pop())).toEqual(['a.txt', 'b.txt']);
    const second = await owner.api.get(`/v1/storage/objects/user-files?prefix=${owner.user.id}/list/&limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.data.map((o: { path: string }) => o.path.split('/').pop())).toEqual(['c.txt']);
    expect(second.body.next_cursor).toBeNull();
    const readOnly = await makeApiKey(app, owner.user.id, { name: 'ro', scopes: ['storage:read'] });
    expect((await client(app.server, readOnly.key).get(`/v1/storage/objects/user-files?prefix=${owner.user.id}/`)).status).toBe(200);
    const w = await rawPut(app, url(`${owner.user.id}/list/d.txt`), Buffer.from('d'), { token: readOnly.key, type: 'text/plain' });
    expect(w.status).toBe(403);
  });

  it('a public bucket serves without credentials; a private one does not', async () => {
    await svc().post('/v1/storage/buckets', { id: 'avatars', public: true, allowed_mime_types: ['image/*'] });
    const path = `${owner.user.id}/me.png`;
    expect((await rawPut(app, url(path, 'avatars'), PNG, { token: owner.token, type: 'image/png' })).status).toBe(201);
    const pub = await rawGet(app, `/storage/public/avatars/${path}`);
    expect(pub.status).toBe(200);
    expect(Buffer.compare(pub.bytes, PNG)).toBe(0);
    expect((await rawGet(app, `/storage/public/user-files/${owner.user.id}/avatars/2026/12/a.png`)).status).toBe(404);
  });
});
