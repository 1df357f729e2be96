import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { claimsOf, type UserPrincipal } from '../src/core/principal.js';
import { kyselyRunner } from '../src/db/statements.js';
import { objectFindAs, objectPutAs } from '../src/modules/storage/storage.repository.js';
import { client } from './support/client.js';
import { makeApiKey, signUp } from './support/fixtures.js';
import { createTestApp, createTwoApps, TARGET, type TestApp } from './support/harness.js';
import { heldAndExpected, PNG, rawGet, rawPut } from './support/storage.js';

/**
 * Storage's hot path (docs/storage.md, "Speed"): a 1 KB upload and a range read take a fixed,
 * small number of round trips; what made them fast — the one-statement reads and writes as the
 * caller, the in-process bucket cache, bytes-used changes gathered apart in buckets without a
 * quota — keeps every rule: row-level security, fresh bucket rules, exact usage and quotas.
 */
describe(`storage speed without weaker rules (${TARGET})`, () => {
  let app: TestApp;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let stranger: Awaited<ReturnType<typeof signUp>>;
  const svc = () => client(app.server, app.serviceKey);
  const user = (u: { user: { id: string; email: string } }): UserPrincipal => ({
    kind: 'user', userId: u.user.id, email: u.user.email, via: 'jwt', keyId: null, scopes: ['*'], sessionId: null,
  });

  beforeAll(async () => {
    app = await createTestApp();
    [owner, stranger] = [await signUp(app), await signUp(app)];
    expect((await svc().post('/v1/storage/buckets', { id: 'open' })).status).toBe(201);
    expect((await svc().post('/v1/storage/buckets', { id: 'rules', allowed_mime_types: ['text/plain', 'image/png'] })).status).toBe(201);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('the one-statement read and write run as the caller: row-level security refuses a stranger, and the caller’s own role is back afterwards', async () => {
    const path = `${owner.user.id}/rls/a.txt`;
    expect((await rawPut(app, `/v1/storage/objects/open/${path}`, Buffer.from('mine'), { token: owner.token, type: 'text/plain' })).status).toBe(201);
    const { db, schema } = app.database;
    const run = kyselyRunner(db);
    // Straight to the functions, past the service's owner rule: the policies alone decide.
    expect(await objectFindAs(run, schema, claimsOf(user(owner)), 'open', path)).toMatchObject({ path, owner_id: owner.user.id });
    expect(await objectFindAs(run, schema, claimsOf(user(stranger)), 'open', path)).toBeUndefined();
    const values = {
      id: 'sto_rls_probe', bucket_id: 'open', path: `${owner.user.id}/rls/b.txt`, owner_id: owner.user.id, uploaded_by: stranger.user.id,
      storage_key: 'o/open/sto_rls_probe', size: 1, declared_type: null, sniffed_type: null, sha256: 'a'.repeat(64), metadata: {},
    };
    await expect(objectPutAs(run, schema, claimsOf(user(stranger)), values, { upsert: false, reservation: null })).rejects.toThrow(/row-level security/);
    // An overwrite of the owner's object by the stranger: their select finds nothing, the insert is refused.
    await expect(objectPutAs(run, schema, claimsOf(user(stranger)), { ...values, path }, { upsert: true, reservation: null })).rejects.toThrow();
    expect(await db.selectFrom('storage_objects').select('id').where('path', '=', values.path).execute()).toEqual([]);
    expect((await db.selectFrom('storage_objects').select('sha256').where('path', '=', path).executeTakeFirstOrThrow()).sha256).not.toBe('a'.repeat(64));
    // Inside a transaction, the function leaves the role and claims as it found them.
    const after = await db.transaction().execute(async (trx) => {
      await sql`select set_config('request.jwt.claims', ${claimsOf(user(stranger))}, true)`.execute(trx);
      expect(await objectFindAs(kyselyRunner(trx), schema, claimsOf(user(owner)), 'open', path)).toBeDefined();
      return (await sql<{ same: boolean; sub: string }>`select current_user = session_user as same, auth.uid() as sub`.execute(trx)).rows[0];
    });
    expect(after).toEqual({ same: true, sub: stranger.user.id });
    // End users cannot call them (they would choose their own claims).
    await expect(
      db.transaction().execute(async (trx) => {
        await sql`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${claimsOf(user(stranger))}, true)`.execute(trx);
        await objectFindAs(kyselyRunner(trx), schema, claimsOf(user(owner)), 'open', path);
      }),
    ).rejects.toThrow(/permission denied/);
  });

  it('an upload to a taken path is 409 while its bytes were arriving, and nothing of it is kept', async () => {
    const path = `${owner.user.id}/taken/x.bin`;
    expect((await rawPut(app, `/v1/storage/objects/open/${path}`, Buffer.alloc(2048, 1), { token: owner.token, type: 'application/octet-stream' })).status).toBe(201);
    const again = await rawPut(app, `/v1/storage/objects/open/${path}`, Buffer.alloc(300_000, 2), { token: owner.token, type: 'application/octet-stream' });
    expect(again.status).toBe(409);
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
    const got = await rawGet(app, `/v1/storage/objects/open/${path}`, { token: owner.token });
    expect(got.bytes.equals(Buffer.alloc(2048, 1))).toBe(true);
  });

  it('bytes used in a bucket without a quota are exact whenever read, through uploads, overwrites and deletes from many at once', async () => {
    const base = `/v1/storage/objects/open/${owner.user.id}/many`;
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => rawPut(app, `${base}/${i}.bin`, Buffer.alloc(100 + i, 3), { token: owner.token, type: 'application/octet-stream' })));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(201));
    const used = async () => (await svc().get(`/v1/storage/buckets/open/usage?owner_id=${owner.user.id}`)).body.data[0]?.used_bytes as number;
    const stored = async () => Number((await sql<{ n: string }>`select coalesce(sum(size), 0)::text as n from ${sql.table(`${app.database.schema}.storage_objects`)} where bucket_id = 'open' and owner_id = ${owner.user.id}`.execute(app.database.db)).rows[0]?.n);
    expect(await used()).toBe(await stored());
    expect((await rawPut(app, `${base}/0.bin`, Buffer.alloc(5000, 4), { token: owner.token, type: 'application/octet-stream', headers: { 'x-upsert': 'true' } })).status).toBe(200);
    expect((await svc().del(`/v1/storage/objects/open/${owner.user.id}/many/1.bin`)).status).toBe(200);
    expect(await used()).toBe(await stored());
    // Nothing is left pending once read; the sweeper folds what a later upload leaves.
    expect(await app.database.db.selectFrom('storage_usage_pending').select('id').where('bucket_id', '=', 'open').execute()).toEqual([]);
    expect((await rawPut(app, `${base}/late.bin`, Buffer.alloc(10, 5), { token: owner.token, type: 'application/octet-stream' })).status).toBe(201);
    expect((await app.database.db.selectFrom('storage_usage_pending').select('id').where('bucket_id', '=', 'open').execute()).length).toBe(1);
    await app.services.storage.sweep();
    expect(await app.database.db.selectFrom('storage_usage_pending').select('id').execute()).toEqual([]);
    const row = await app.database.db.selectFrom('storage_usage').select('used_bytes').where('bucket_id', '=', 'open').where('owner_id', '=', owner.user.id).executeTakeFirstOrThrow();
    expect(Number(row.used_bytes)).toBe(await stored());
  });

  it('a quota set on a bucket counts the bytes already stored there: the next upload is refused past it', async () => {
    expect((await svc().post('/v1/storage/buckets', { id: 'later-quota' })).status).toBe(201);
    const base = `/v1/storage/objects/later-quota/${owner.user.id}`;
    expect((await rawPut(app, `${base}/a.bin`, Buffer.alloc(600, 1), { token: owner.token, type: 'application/octet-stream' })).status).toBe(201);
    expect((await svc().patch('/v1/storage/buckets/later-quota', { user_quota_bytes: 1000 })).status).toBe(200);
    const over = await rawPut(app, `${base}/b.bin`, Buffer.alloc(500, 1), { token: owner.token, type: 'application/octet-stream' });
    expect(over.status).toBe(413);
    expect(over.body.error.details).toMatchObject({ reason: 'quota', free: 400 });
    expect((await rawPut(app, `${base}/c.bin`, Buffer.alloc(400, 1), { token: owner.token, type: 'application/octet-stream' })).status).toBe(201);
    // Under a quota the bytes move at once (no pending rows), and deletes give them back.
    expect(await app.database.db.selectFrom('storage_usage_pending').select('id').where('bucket_id', '=', 'later-quota').execute()).toEqual([]);
    expect((await svc().del(`/v1/storage/objects/later-quota/${owner.user.id}/a.bin`)).status).toBe(200);
    expect((await svc().get(`/v1/storage/buckets/later-quota/usage?owner_id=${owner.user.id}`)).body.data[0]).toMatchObject({ used_bytes: 400, reserved_bytes: 0 });
  });

  it("a bucket's changed rules apply to the next request at once (the cache is emptied by the write)", async () => {
    const path = `/v1/storage/objects/rules/${owner.user.id}/r.png`;
    expect((await rawPut(app, path, PNG, { token: owner.token, type: 'image/png' })).status).toBe(201);
    expect((await svc().patch('/v1/storage/buckets/rules', { allowed_mime_types: ['text/plain'] })).status).toBe(200);
    expect((await rawPut(app, path, PNG, { token: owner.token, type: 'image/png', headers: { 'x-upsert': 'true' } })).status).toBe(415);
    expect((await svc().patch('/v1/storage/buckets/rules', { file_size_limit: 10 })).status).toBe(200);
    expect((await rawPut(app, `/v1/storage/objects/rules/${owner.user.id}/t.txt`, Buffer.alloc(11, 0x61), { token: owner.token, type: 'text/plain' })).status).toBe(413);
    // A public bucket made private stops serving without credentials at once, and the other way.
    expect((await rawGet(app, `/storage/public/rules/${owner.user.id}/r.png`)).status).toBe(404);
    expect((await svc().patch('/v1/storage/buckets/rules', { public: true })).status).toBe(200);
    expect((await rawGet(app, `/storage/public/rules/${owner.user.id}/r.png`)).status).toBe(200);
    expect((await svc().patch('/v1/storage/buckets/rules', { public: false })).status).toBe(200);
    expect((await rawGet(app, `/storage/public/rules/${owner.user.id}/r.png`)).status).toBe(404);
    // A deleted bucket is gone for uploads at once.
    expect((await svc().post('/v1/storage/buckets', { id: 'short-lived' })).status).toBe(201);
    expect((await rawPut(app, `/v1/storage/objects/short-lived/${owner.user.id}/a.txt`, Buffer.from('x'), { token: owner.token, type: 'text/plain' })).status).toBe(201);
    expect((await svc().del(`/v1/storage/objects/short-lived/${owner.user.id}/a.txt`)).status).toBe(200);
    expect((await svc().del('/v1/storage/buckets/short-lived')).status).toBe(200);
    expect((await rawPut(app, `/v1/storage/objects/short-lived/${owner.user.id}/b.txt`, Buffer.from('x'), { token: owner.token, type: 'text/plain' })).status).toBe(404);
  });

  it.skipIf(TARGET !== 'postgres')('round trips to PostgreSQL: a 1 KB upload with a tly_ key takes 1, a range read 1, a large upload 2', async () => {
    const key = (await makeApiKey(app, owner.user.id, { name: 'rt', scopes: ['storage:read', 'storage:write'] })).key;
    const base = `/v1/storage/objects/open/${owner.user.id}/rt`;
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' };
    // Warm: the bucket and the key are kept in process after their first use (docs/storage.md,
    // docs/auth.md "API key cache"): the counts below are the steady state.
    expect((await rawPut(app, `${base}/warm.bin`, Buffer.alloc(1024, 1), { token: key, type: 'application/octet-stream' })).status).toBe(201);
    const counted = await countQueries(async () => {
      const put = await app.server.inject({ method: 'PUT', url: `${base}/one.bin`, headers, payload: Buffer.alloc(1024, 2) });
      expect(put.statusCode).toBe(201);
    });
    expect(counted).toEqual([expect.stringContaining('storage_object_put')]);
    const read = await countQueries(async () => {
      const got = await app.server.inject({ method: 'GET', url: `${base}/one.bin`, headers: { authorization: `Bearer ${key}`, range: 'bytes=10-99' } });
      expect(got.statusCode).toBe(206);
      expect(got.rawPayload.equals(Buffer.alloc(90, 2))).toBe(true);
    });
    expect(read).toEqual([expect.stringContaining('storage_object_get')]);
    // A taken path: the same one, and the answer is 409 with nothing kept.
    const taken = await countQueries(async () => {
      const put = await app.server.inject({ method: 'PUT', url: `${base}/one.bin`, headers, payload: Buffer.alloc(1024, 3) });
      expect(put.statusCode).toBe(409);
    });
    expect(taken).toHaveLength(1);
    await app.services.storage.sweep(); // earlier tests' deletes
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
    // A large body asks first, while its bytes arrive: two.
    const large = await countQueries(async () => {
      const put = await app.server.inject({ method: 'PUT', url: `${base}/large.bin`, headers, payload: Buffer.alloc(100_000, 4) });
      expect(put.statusCode).toBe(201);
    });
    expect(large).toEqual([expect.stringContaining('storage_object_get'), expect.stringContaining('storage_object_put')]);
  });
});

/**
 * Buckets cached in two processes on one PostgreSQL: a change made through one is heard by the
 * other through the invalidation bus within milliseconds (docs/storage.md, "Speed").
 */
describe.skipIf(TARGET === 'pglite')(`storage bucket rules across processes (${TARGET})`, () => {
  let pair: Awaited<ReturnType<typeof createTwoApps>>;
  let one: App;
  let two: App;
  const put = (app: App, url: string, type: string) => app.server.inject({ method: 'PUT', url, headers: { authorization: `Bearer ${app.config.auth.serviceKey}`, 'content-type': type }, payload: Buffer.from('hello') });
  const call = (app: App, method: 'POST' | 'PATCH', url: string, body: unknown) =>
    app.server.inject({ method, url, headers: { authorization: `Bearer ${app.config.auth.serviceKey}` }, payload: body as Record<string, unknown> });

  beforeAll(async () => {
    pair = await createTwoApps({}, () => new Date());
    [one, two] = pair.apps;
    expect((await call(one, 'POST', '/v1/storage/buckets', { id: 'shared', allowed_mime_types: ['text/plain'] })).statusCode).toBe(201);
  });
  afterAll(async () => {
    await pair.close();
  });

  it("one process's change of a bucket's rules reaches the other's cache within milliseconds", async () => {
    expect((await put(two, '/v1/storage/objects/shared/u/a.txt', 'text/plain')).statusCode).toBe(201);
    expect((await put(two, '/v1/storage/objects/shared/u/a.csv', 'text/csv')).statusCode).toBe(415);
    expect((await call(one, 'PATCH', '/v1/storage/buckets/shared', { allowed_mime_types: ['text/csv'] })).statusCode).toBe(200);
    let status = 0;
    for (let i = 0; i < 100 && status !== 201; i++) {
      status = (await put(two, `/v1/storage/objects/shared/u/b${i}.csv`, 'text/csv')).statusCode;
      if (status !== 201) await new Promise((r) => setTimeout(r, 20));
    }
    expect(status).toBe(201);
    expect((await put(two, '/v1/storage/objects/shared/u/c.txt', 'text/plain')).statusCode).toBe(415);
  });
});

/** The statements sent to PostgreSQL while `work` runs (this process's pg clients). */
async function countQueries(work: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const q = args[0] as string | { text?: string };
    const text = typeof q === 'string' ? q : (q?.text ?? '');
    // The invalidation bus and the key-use flush run on timers: not the request's.
    if (!/^(listen|notify|select pg_notify)|request_count/i.test(text.trim())) seen.push(text);
    return original.apply(this, args);
  };
  try {
    await work();
  } finally {
    proto.query = original;
  }
  return seen;
}
