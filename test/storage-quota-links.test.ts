import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LinkSigner } from '../src/modules/storage/storage.links.js';
import { client } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { heldAndExpected, rawGet, rawPut, streamOf } from './support/storage.js';

/**
 * Byte quotas hold bytes before an upload's first byte is written, so concurrent uploads can never
 * pass them; signed links work without credentials until they expire, uploads only once, and a
 * changed byte anywhere in one makes it worthless.
 */
describe(`storage quotas and signed links (${TARGET})`, () => {
  let app: TestApp;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let other: Awaited<ReturnType<typeof signUp>>;
  let now = Date.now();
  const svc = () => client(app.server, app.serviceKey);

  beforeAll(async () => {
    app = await createTestApp({}, { clock: () => new Date(now) });
    [owner, other] = [await signUp(app), await signUp(app)];
    expect((await svc().post('/v1/storage/buckets', { id: 'quota', allowed_mime_types: ['text/*'], user_quota_bytes: 1000 })).status).toBe(201);
    expect((await svc().post('/v1/storage/buckets', { id: 'files', allowed_mime_types: ['text/plain'], file_size_limit: 1000 })).status).toBe(201);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('50 concurrent 100-byte uploads against a 1000-byte quota: exactly 10 are stored, the rest 413 reason quota', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => rawPut(app, `/v1/storage/objects/quota/${owner.user.id}/c/${i}.txt`, Buffer.alloc(100, 0x61), { token: owner.token, type: 'text/plain' })),
    );
    const stored = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 413);
    expect(stored).toHaveLength(10);
    expect(refused).toHaveLength(40);
    for (const r of refused) expect(r.body.error).toMatchObject({ code: 'payload_too_large', details: { reason: 'quota' } });
    const usage = await app.database.db.selectFrom('storage_usage').selectAll().where('bucket_id', '=', 'quota').where('owner_id', '=', owner.user.id).executeTakeFirstOrThrow();
    expect(Number(usage.used_bytes)).toBe(1000);
    expect(Number(usage.reserved_bytes)).toBe(0);
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
    // The quota is per owner: another user still has theirs.
    expect((await rawPut(app, `/v1/storage/objects/quota/${other.user.id}/a.txt`, Buffer.alloc(100, 0x61), { token: other.token, type: 'text/plain' })).status).toBe(201);
  });

  it('GET /v1/storage/buckets/:id/usage answers each owner\'s used and reserved bytes against the quota, as storage_usage holds them', async () => {
    // An upload in flight: its reservation, as the quota step leaves it before the first byte.
    await app.database.db.insertInto('storage_usage').values({ bucket_id: 'quota', owner_id: 'usr_inflight', reserved_bytes: 300 }).execute();
    const all = await svc().get('/v1/storage/buckets/quota/usage?limit=200');
    expect(all.status).toBe(200);
    const rows = await app.database.db.selectFrom('storage_usage').selectAll().where('bucket_id', '=', 'quota').execute();
    expect(all.body.data).toHaveLength(rows.length);
    for (const r of rows) {
      expect(all.body.data).toContainEqual(expect.objectContaining({ bucket_id: 'quota', owner_id: r.owner_id, used_bytes: Number(r.used_bytes), reserved_bytes: Number(r.reserved_bytes), quota_bytes: 1000 }));
    }
    const mine = await svc().get(`/v1/storage/buckets/quota/usage?owner_id=${owner.user.id}`);
    expect(mine.body).toEqual({ data: [expect.objectContaining({ owner_id: owner.user.id, used_bytes: 1000, reserved_bytes: 0, quota_bytes: 1000 })], next_cursor: null });
    expect((await svc().get('/v1/storage/buckets/quota/usage?owner_id=usr_inflight')).body.data).toEqual([expect.objectContaining({ used_bytes: 0, reserved_bytes: 300 })]);
    // Paged one owner at a time: every owner once.
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: { status: number; body: { data: { owner_id: string }[]; next_cursor: string | null } } = await svc().get(`/v1/storage/buckets/quota/usage?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      seen.push(...res.body.data.map((u) => u.owner_id));
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(seen.sort()).toEqual(rows.map((r) => r.owner_id).sort());
    // No quota on the bucket: null. An unknown bucket: 404. Users: refused.
    expect((await svc().get('/v1/storage/buckets/files/usage?owner_id=usr_nobody')).body).toEqual({ data: [], next_cursor: null });
    await app.database.db.insertInto('storage_usage').values({ bucket_id: 'files', owner_id: 'usr_inflight', reserved_bytes: 7 }).execute();
    expect((await svc().get('/v1/storage/buckets/files/usage?owner_id=usr_inflight')).body.data).toEqual([expect.objectContaining({ reserved_bytes: 7, quota_bytes: null })]);
    expect((await svc().get('/v1/storage/buckets/nosuchbucket/usage')).status).toBe(404);
    expect((await owner.api.get('/v1/storage/buckets/quota/usage')).status).toBe(403);
    await app.database.db.deleteFrom('storage_usage').where('owner_id', '=', 'usr_inflight').execute();
  });

  it('a chunked upload without Content-Length is bounded by what the quota leaves; a delete frees its bytes', async () => {
    const before = await heldAndExpected(app);
    const over = await rawPut(app, `/v1/storage/objects/quota/${owner.user.id}/stream.txt`, streamOf(5000), { token: owner.token, type: 'text/plain' });
    expect(over.status).toBe(413);
    expect(over.body.error.details.reason).toBe('quota');
    expect(await heldAndExpected(app)).toEqual(before);
    // Any 10 of the 50 racing uploads were stored: delete one that was.
    const listed = await owner.api.get(`/v1/storage/objects/quota?prefix=${owner.user.id}/c/`);
    const path = must((listed.body.data as { path: string }[])[0] ?? null).path;
    expect((await owner.api.del(`/v1/storage/objects/quota/${path}`)).status).toBe(200);
    const fits = await rawPut(app, `/v1/storage/objects/quota/${owner.user.id}/stream.txt`, streamOf(100), { token: owner.token, type: 'text/plain' });
    expect(fits.status).toBe(201);
    const usage = await app.database.db.selectFrom('storage_usage').selectAll().where('bucket_id', '=', 'quota').where('owner_id', '=', owner.user.id).executeTakeFirstOrThrow();
    expect([Number(usage.used_bytes), Number(usage.reserved_bytes)]).toEqual([1000, 0]);
  });

  it('a reservation left by an upload that never settled is freed by the sweeper once it expires', async () => {
    await app.database.db.insertInto('storage_usage').values({ bucket_id: 'quota', owner_id: 'usr_ghost', reserved_bytes: 500 }).execute();
    await app.database.db.insertInto('storage_reservations').values({ id: 'rsv_ghost', bucket_id: 'quota', owner_id: 'usr_ghost', bytes: 500, expires_at: new Date(now + 1000) }).execute();
    await app.services.storage.sweep();
    expect(await app.database.db.selectFrom('storage_reservations').select('id').where('id', '=', 'rsv_ghost').executeTakeFirst()).toBeDefined();
    now += 2000;
    expect((await app.services.storage.sweep()).released).toBe(1);
    const usage = await app.database.db.selectFrom('storage_usage').selectAll().where('owner_id', '=', 'usr_ghost').executeTakeFirstOrThrow();
    expect(Number(usage.reserved_bytes)).toBe(0);
  });

  it('stored bytes are metered as one storage_mb usage event per user and day (MiB rounded up), recorded once however often it runs', async () => {
    const user = await signUp(app);
    // Billing prices the metric like any other: a cost model, and credits to pay it with.
    expect((await svc().post('/v1/cost-models', { metric: 'storage_mb' })).status).toBe(201);
    expect((await svc().post('/v1/credits/grant', { user_id: user.user.id, amount: 100, reason: 'test' }, { idempotencyKey: `g-${user.user.id}` })).status).toBe(201);
    expect((await svc().post('/v1/storage/buckets', { id: 'media' })).status).toBe(201);
    const big = Buffer.alloc(1_600_000, 0x61);
    expect((await rawPut(app, `/v1/storage/objects/media/${user.user.id}/v.bin`, big, { token: user.token, type: 'application/octet-stream' })).status).toBe(201);
    const day = new Date(now).toISOString().slice(0, 10);
    const first = await app.services.storageMeter.meterDay(day);
    expect(first.recorded).toBeGreaterThanOrEqual(1);
    await app.services.storageMeter.meterDay(day);
    const events = await svc().get(`/v1/users/${user.user.id}/events`);
    expect(events.status).toBe(200);
    const mine = events.body.data.filter((e: { metric: string }) => e.metric === 'storage_mb');
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ quantity: 2, action_hash: `storage_mb:${user.user.id}:${day}` });
  });

  it("a workspace's folders are metered to the workspace's pool (its owner the acting member), once per day", async () => {
    const lead = await signUp(app);
    const ws = (await lead.api.post('/v1/workspaces', { name: 'metered' })).body.id;
    const model = await svc().post('/v1/cost-models', { metric: 'storage_mb' });
    expect([201, 409]).toContain(model.status);
    expect((await svc().post('/v1/credits/grant', { workspace_id: ws, amount: 100, reason: 'test' }, { idempotencyKey: `g-${ws}` })).status).toBe(201);
    expect((await svc().post('/v1/storage/buckets', { id: 'team-media' })).status).toBe(201);
    expect((await rawPut(app, `/v1/storage/objects/team-media/${ws}/v.bin`, Buffer.alloc(1_600_000, 0x61), { token: lead.token, type: 'application/octet-stream' })).status).toBe(201);
    const day = new Date(now).toISOString().slice(0, 10);
    expect((await app.services.storageMeter.meterDay(day)).workspaces).toBeGreaterThanOrEqual(1);
    await app.services.storageMeter.meterDay(day);
    const events = (await svc().get(`/v1/users/${lead.user.id}/events`)).body.data.filter((e: { metric: string }) => e.metric === 'storage_mb');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ workspace_id: ws, quantity: 2, action_hash: `storage_mb:${ws}:${day}` });
  });

  it('a delete whose bytes the driver fails to remove is retried later with back-off, until they are gone', async () => {
    now = Date.now() + 1000; // the app's clock, just past the database's (the outbox row is stamped by now())
    await app.services.storage.sweep(); // what earlier tests queued
    const path = `${other.user.id}/retry.txt`;
    const up = await rawPut(app, `/v1/storage/objects/files/${path}`, Buffer.from('stubborn'), { token: other.token, type: 'text/plain' });
    const key = (await app.database.db.selectFrom('storage_objects').select('storage_key').where('id', '=', up.body.id).executeTakeFirstOrThrow()).storage_key;
    expect((await other.api.del(`/v1/storage/objects/files/${path}`)).status).toBe(200);
    const driver = app.services.storage.driver;
    const realDelete = driver.delete.bind(driver);
    driver.delete = async () => {
      throw new Error('backend unavailable');
    };
    try {
      expect(await app.services.storage.sweep()).toMatchObject({ failed: 1 });
    } finally {
      driver.delete = realDelete;
    }
    const queued = await app.database.db.selectFrom('storage_deletions').selectAll().where('storage_key', '=', key).executeTakeFirstOrThrow();
    expect(queued).toMatchObject({ attempts: 1, last_error: 'backend unavailable' });
    expect(await driver.head(key)).toEqual({ size: 8 });
    expect((await app.services.storage.sweep()).deleted).toBe(0); // not due yet
    now += 6000;
    expect((await app.services.storage.sweep()).deleted).toBe(1);
    expect(await driver.head(key)).toBeNull();
    expect(await app.database.db.selectFrom('storage_deletions').select('id').where('storage_key', '=', key).execute()).toEqual([]);
  });

  it('copies are bound by the destination quota even in parallel, for a user as for the service: 20 parallel copies of 400 bytes into 1000 store exactly one', async () => {
    expect((await svc().post('/v1/storage/buckets', { id: 'copyq', allowed_mime_types: ['text/*'], user_quota_bytes: 1000 })).status).toBe(201);
    const used = async (id: string) =>
      Number((await app.database.db.selectFrom('storage_usage').select('used_bytes').where('bucket_id', '=', 'copyq').where('owner_id', '=', id).executeTakeFirstOrThrow()).used_bytes);
    for (const [who, api] of [[owner, owner.api], [other, svc()]] as const) {
      const src = `${who.user.id}/src.txt`;
      expect((await rawPut(app, `/v1/storage/objects/copyq/${src}`, Buffer.alloc(400, 0x61), { token: who.token, type: 'text/plain' })).status).toBe(201);
      // The reviewer's reproduction (R3): 20 copies at once (a user JWT copy also failed with an RLS error).
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => api.post('/v1/storage/objects/copyq/copy', { from: src, to: `${who.user.id}/par/${i}.txt` })));
      const stored = results.filter((r) => r.status < 300);
      expect(stored, JSON.stringify(results.find((r) => r.status >= 300 && r.status !== 413)?.body)).toHaveLength(1);
      for (const r of results.filter((x) => x.status >= 300)) expect(r.body.error).toMatchObject({ code: 'payload_too_large', details: { reason: 'quota' } });
      expect(await used(who.user.id)).toBe(800);
      // Overwriting a copy counts its bytes once.
      const again = await api.post('/v1/storage/objects/copyq/copy', { from: src, to: stored[0]?.body.path, upsert: true });
      expect(again.status, JSON.stringify(again.body)).toBeLessThan(300);
      expect(await used(who.user.id)).toBe(800);
    }
    now = Date.now() + 1000; // the app's clock, just past the database's (the outbox rows are stamped by now())
    await app.services.storage.sweep(); // the overwritten copies' bytes
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
  });

  it('a signed download link works without credentials until it expires; tampered or for another path → 403', async () => {
    const path = `${owner.user.id}/docs/report.txt`;
    expect((await rawPut(app, `/v1/storage/objects/files/${path}`, Buffer.from('quarterly report'), { token: owner.token, type: 'text/plain' })).status).toBe(201);
    expect((await other.api.post(`/v1/storage/sign/files/${path}`, { action: 'download', expires_in: 60 })).status).toBe(403);
    const signed = await owner.api.post(`/v1/storage/sign/files/${path}`, { action: 'download', expires_in: 60 });
    expect(signed.status).toBe(200);
    const link = new URL(signed.body.url);
    const target = `${link.pathname}${link.search}`;
    const got = await rawGet(app, target);
    expect(got.status).toBe(200);
    expect(got.bytes.toString()).toBe('quarterly report');
    expect((await rawGet(app, target, { headers: { range: 'bytes=0-8' } })).bytes.toString()).toBe('quarterly');
    // Tampered: the path, the signature, the payload.
    const token = must(link.searchParams.get('token'));
    const [payload, mac] = token.split('.') as [string, string];
    expect((await rawGet(app, `/storage/signed/files/${owner.user.id}/docs/other.txt?token=${token}`)).status).toBe(403);
    const flipped = `${mac.slice(0, -2)}${mac.endsWith('AA') ? 'AB' : 'AA'}`;
    expect((await rawGet(app, `${link.pathname}?token=${payload}.${flipped}`)).status).toBe(403);
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), exp: 4_000_000_000 })).toString('base64url');
    expect((await rawGet(app, `${link.pathname}?token=${forged}.${mac}`)).status).toBe(403);
    // Expired.
    now += 61_000;
    const expired = await rawGet(app, target);
    expect(expired.status).toBe(403);
  });

  it("a signed download link serves only the version it was signed for, and only while its signer may still read it (403 otherwise)", async () => {
    const [lead, viewer] = [await signUp(app), await signUp(app)];
    const ws = (await lead.api.post('/v1/workspaces', { name: 'board' })).body.id;
    expect((await lead.api.post(`/v1/workspaces/${ws}/members`, { user_id: viewer.user.id, role: 'viewer' })).status).toBe(201);
    const path = `${ws}/board/minutes.txt`;
    const put = (text: string, upsert = false) =>
      rawPut(app, `/v1/storage/objects/files/${path}`, Buffer.from(text), { token: lead.token, type: 'text/plain', ...(upsert ? { headers: { 'x-upsert': 'true' } } : {}) });
    expect((await put('v1 public')).status).toBe(201);
    const sign = async (u: typeof lead) => {
      const res = await u.api.post(`/v1/storage/sign/files/${path}`, { action: 'download', expires_in: 7 * 86400 });
      expect(res.status).toBe(200);
      const url = new URL(res.body.url);
      return `${url.pathname}${url.search}`;
    };
    const viewersLink = await sign(viewer);
    const leadsLink = await sign(lead);
    expect((await rawGet(app, viewersLink)).bytes.toString()).toBe('v1 public');
    // The reviewer's reproduction (R6): the viewer is removed, then the path gets a new version.
    expect((await lead.api.del(`/v1/workspaces/${ws}/members/${viewer.user.id}`)).status).toBe(200);
    const gone = await rawGet(app, viewersLink);
    expect(gone.status).toBe(403);
    expect(gone.bytes.toString()).not.toContain('v1 public');
    expect((await put('v2 layoffs list', true)).status).toBeLessThan(300);
    expect((await rawGet(app, viewersLink)).status).toBe(403);
    // Even the signer who still has access: the link was for v1, not for whatever came after.
    const stale = await rawGet(app, leadsLink);
    expect(stale.status).toBe(403);
    expect(stale.bytes.toString()).not.toContain('layoffs');
    expect((await rawGet(app, await sign(lead))).bytes.toString()).toBe('v2 layoffs list');
    // A path deleted and uploaded again is another object.
    const again = await sign(lead);
    expect((await lead.api.del(`/v1/storage/objects/files/${path}`)).status).toBe(200);
    expect((await rawGet(app, again)).status).toBe(404);
    expect((await put('v2 layoffs list')).status).toBe(201);
    expect((await rawGet(app, again)).status).toBe(403);
  });

  it('a signed upload link uploads once, within its own size and type limits, without credentials', async () => {
    const path = `${owner.user.id}/inbox/once.txt`;
    const signed = await owner.api.post(`/v1/storage/sign/files/${path}`, { action: 'upload', expires_in: 60, max_size: 10, content_type: 'text/plain' });
    expect(signed.status).toBe(200);
    const link = new URL(signed.body.url);
    const target = `${link.pathname}${link.search}`;
    const first = await rawPut(app, target, Buffer.from('hi there'), { type: 'text/plain' });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ path, owner_id: owner.user.id, uploaded_by: owner.user.id, size: 8 });
    const again = await rawPut(app, target, Buffer.from('again'), { type: 'text/plain' });
    expect(again.status).toBe(403);
    // Its own limits: a bigger body is 413 before anything is stored.
    const small = await owner.api.post(`/v1/storage/sign/files/${owner.user.id}/inbox/big.txt`, { action: 'upload', expires_in: 60, max_size: 10 });
    const before = await heldAndExpected(app);
    const big = new URL(small.body.url);
    expect((await rawPut(app, `${big.pathname}${big.search}`, Buffer.alloc(50, 0x61), { type: 'text/plain' })).status).toBe(413);
    expect(await heldAndExpected(app)).toEqual(before);
    // A user cannot sign an upload into someone else's folder.
    expect((await other.api.post(`/v1/storage/sign/files/${owner.user.id}/inbox/x.txt`, { action: 'upload', expires_in: 60 })).status).toBe(403);
  });

  it("a signer who is deactivated loses their signed links at once: downloads and uploads → 403, and nothing is stored", async () => {
    const [leaver, stays] = [await signUp(app), await signUp(app)];
    const path = `${leaver.user.id}/out/report.txt`;
    expect((await rawPut(app, `/v1/storage/objects/files/${path}`, Buffer.from('secret figures'), { token: leaver.token, type: 'text/plain' })).status).toBe(201);
    const linkOf = async (u: typeof leaver, p: string, action: 'download' | 'upload') => {
      const res = await u.api.post(`/v1/storage/sign/files/${p}`, { action, expires_in: 7 * 86400 });
      expect(res.status).toBe(200);
      const url = new URL(res.body.url);
      return `${url.pathname}${url.search}`;
    };
    const download = await linkOf(leaver, path, 'download');
    const upload = await linkOf(leaver, `${leaver.user.id}/in/drop.txt`, 'upload');
    const control = await linkOf(stays, `${stays.user.id}/in/drop.txt`, 'upload');
    expect((await rawGet(app, download)).bytes.toString()).toBe('secret figures');
    expect((await svc().patch(`/v1/users/${leaver.user.id}`, { is_active: false })).status).toBe(200);
    const got = await rawGet(app, download);
    expect(got.status).toBe(403);
    expect(got.bytes.toString()).not.toContain('secret figures');
    const before = await heldAndExpected(app);
    const put = await rawPut(app, upload, Buffer.from('planted'), { type: 'text/plain' });
    expect(put.status).toBe(403);
    expect(put.body.error).toMatchObject({ code: 'forbidden' });
    expect(await heldAndExpected(app)).toEqual(before);
    expect(await app.database.db.selectFrom('storage_objects').select('id').where('path', '=', `${leaver.user.id}/in/drop.txt`).execute()).toEqual([]);
    // Another signer's link is untouched.
    expect((await rawPut(app, control, Buffer.from('fine'), { type: 'text/plain' })).status).toBe(201);
    // Reactivated: the download link (not spent) serves again; the signer is who decides.
    expect((await svc().patch(`/v1/users/${leaver.user.id}`, { is_active: true })).status).toBe(200);
    expect((await rawGet(app, download)).status).toBe(200);
  });

  it('a link whose signer no longer exists (a deleted user) is refused, download and upload', async () => {
    // Signed as the service signs links, for a signer Tally no longer has (the row is gone).
    const gone = 'usr_01deleteduser0000000000000';
    // What the user left behind in their own folder (the service may write any path).
    const path = `${gone}/docs/kept.txt`;
    expect((await rawPut(app, `/v1/storage/objects/files/${path}`, Buffer.from('kept'), { token: app.serviceKey, type: 'text/plain' })).status).toBe(201);
    const obj = await app.database.db.selectFrom('storage_objects').select(['id', 'sha256']).where('bucket_id', '=', 'files').where('path', '=', path).executeTakeFirstOrThrow();
    const signer = new LinkSigner(app.config.encryptionKey);
    const exp = Math.floor(now / 1000) + 3600;
    // The deleted user's own folder: the owner rule alone would let them read and write it.
    const down = signer.sign({ action: 'download', bucket: 'files', path, exp, signer: gone, obj: obj.id, sha: obj.sha256 });
    expect((await rawGet(app, `/storage/signed/files/${path}?token=${down}`)).status).toBe(403);
    const upPath = `${gone}/planted.txt`;
    const up = signer.sign({ action: 'upload', bucket: 'files', path: upPath, exp, signer: gone, id: 'lnk_01deleteduser000000000000', max: null, type: null });
    expect((await rawPut(app, `/storage/signed/files/${upPath}?token=${up}`, Buffer.from('planted'), { type: 'text/plain' })).status).toBe(403);
    expect(await app.database.db.selectFrom('storage_objects').select('id').where('path', '=', upPath).execute()).toEqual([]);
    // The same link signed by the service is served: the refusal is the signer's, not the token's.
    const live = signer.sign({ action: 'download', bucket: 'files', path, exp, signer: 'service', obj: obj.id, sha: obj.sha256 });
    expect((await rawGet(app, `/storage/signed/files/${path}?token=${live}`)).status).toBe(200);
  });

  it('a signed upload link stops working when its signer leaves the workspace whose folder it writes to', async () => {
    const [lead, member] = [await signUp(app), await signUp(app)];
    const ws = (await lead.api.post('/v1/workspaces', { name: 'drop' })).body.id;
    expect((await lead.api.post(`/v1/workspaces/${ws}/members`, { user_id: member.user.id, role: 'member' })).status).toBe(201);
    const sign = async (p: string) => {
      const res = await member.api.post(`/v1/storage/sign/files/${p}`, { action: 'upload', expires_in: 3600 });
      expect(res.status).toBe(200);
      const url = new URL(res.body.url);
      return `${url.pathname}${url.search}`;
    };
    const kept = await sign(`${ws}/inbox/a.txt`);
    const after = await sign(`${ws}/inbox/b.txt`);
    expect((await rawPut(app, kept, Buffer.from('while a member'), { type: 'text/plain' })).status).toBe(201);
    expect((await lead.api.del(`/v1/workspaces/${ws}/members/${member.user.id}`)).status).toBe(200);
    expect((await rawPut(app, after, Buffer.from('after leaving'), { type: 'text/plain' })).status).toBe(403);
    expect(await app.database.db.selectFrom('storage_objects').select('id').where('path', '=', `${ws}/inbox/b.txt`).execute()).toEqual([]);
  });
});

function must<T>(v: T | null): T {
  if (v === null) throw new Error('expected a value');
  return v;
}
