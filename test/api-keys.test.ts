import { createHash, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Json } from './support/client.js';
import { makeApiKey, makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every field an API-key list item may carry: nothing that could reveal the key. */
const LIST_ITEM_FIELDS = [
  'created_at',
  'credit_budget',
  'credits_used',
  'expires_at',
  'id',
  'max_concurrency',
  'models',
  'rpm_limit',
  'tpm_limit',
  'workspace_id',
  'last_used_at',
  'name',
  'prefix',
  'request_count',
  'revoked_at',
  'scopes',
  'user_id',
].sort();

describe(`api keys (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  const as = (token: string) => client(app.server, token);

  beforeAll(async () => {
    app = await createTestApp();
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app?.close();
  });

  /** The stored key row, read as the owning role (bypasses RLS), every column. */
  async function storedRow(id: string): Promise<Record<string, unknown>> {
    const res = await sql<Record<string, unknown>>`select * from ${sql.table(`${app.database.schema}.api_keys`)} where id = ${id}`.execute(
      app.database.root,
    );
    expect(res.rows).toHaveLength(1);
    return must(res.rows[0], 'res.rows[0]');
  }

  /** Rows, in any table of Tally's schema, whose text form contains `needle`. */
  async function rowsContaining(needle: string): Promise<Array<{ table: string; n: number }>> {
    const tables = await sql<{ table_name: string }>`
      select table_name from information_schema.tables
      where table_schema = ${app.database.schema} and table_type = 'BASE TABLE'`.execute(app.database.root);
    expect(tables.rows.map((t) => t.table_name)).toContain('api_keys');
    const hits: Array<{ table: string; n: number }> = [];
    for (const { table_name } of tables.rows) {
      const res = await sql<{ n: number }>`
        select count(*)::int as n from ${sql.table(`${app.database.schema}.${table_name}`)} t
        where strpos(t::text, ${needle}) > 0`.execute(app.database.root);
      const n = Number(res.rows[0]?.n ?? 0);
      if (n > 0) hits.push({ table: table_name, n });
    }
    return hits;
  }

  async function listKeys(userId: string, api = svc) {
    const res = await api.get(`/v1/users/${userId}/api-keys?limit=200`);
    expect(res.status).toBe(200);
    return res.body.data as Array<Record<string, Json>>;
  }

  it('creating a key returns {id, key, prefix, name, scopes, expires_at} with a tly_ key and a visible prefix of it', async () => {
    const u = await makeUser(app);
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const res = await svc.post(`/v1/users/${u.id}/api-keys`, { name: 'ci', scopes: ['users:read', 'keys:read'], expires_at: expiresAt });
    expect(res.status).toBe(201);
    const body = res.body;
    for (const field of ['id', 'key', 'prefix', 'name', 'scopes', 'expires_at']) expect(body).toHaveProperty(field);
    expect(body.id).toMatch(/^key_[0-9a-z]{26}$/);
    expect(body.key).toMatch(/^tly_[A-Za-z0-9]{40,}$/);
    expect(body.key.startsWith(body.prefix)).toBe(true);
    expect(body.prefix.startsWith('tly_')).toBe(true);
    // The prefix identifies a key; it must not give the key away.
    expect(body.prefix.length).toBeLessThanOrEqual(16);
    expect(body.key.length - body.prefix.length).toBeGreaterThanOrEqual(32);
    expect(body.name).toBe('ci');
    expect(body.scopes).toEqual(['users:read', 'keys:read']);
    expect(body.expires_at).toBe(expiresAt);

    const unscoped = await svc.post(`/v1/users/${u.id}/api-keys`, { name: 'all' });
    expect(unscoped.status).toBe(201);
    expect(unscoped.body.scopes).toEqual(['*']);
    expect(unscoped.body.expires_at).toBeNull();
    expect(unscoped.body.key).not.toBe(body.key);
  });

  it('the key is shown only at creation: list items carry a fixed set of fields and never the key or its hash', async () => {
    const a = await signUp(app);
    const created = await a.api.post(`/v1/users/${a.user.id}/api-keys`, { name: 'shown once' });
    expect(created.status).toBe(201);
    const { key } = created.body;
    // Use it once, so every nullable field of the item is populated where it can be.
    expect((await as(key).get('/v1/me')).status).toBe(200);

    for (const api of [svc, a.api, as(key)]) {
      const items = await listKeys(a.user.id, api);
      expect(items).toHaveLength(1);
      const item = must(items[0], 'items[0]');
      expect(Object.keys(item).sort()).toEqual(LIST_ITEM_FIELDS);
      expect(item).toMatchObject({ id: created.body.id, user_id: a.user.id, name: 'shown once', prefix: created.body.prefix, scopes: ['*'] });
      for (const [field, value] of Object.entries(item)) {
        const text = JSON.stringify(value);
        expect(text, field).not.toContain(key);
        expect(text, field).not.toContain(key.slice(created.body.prefix.length));
        expect(text, field).not.toContain(sha256(key));
      }
    }
    // Nor is it in the revocation response.
    const revoked = await a.api.del(`/v1/api-keys/${created.body.id}`);
    expect(revoked.status).toBe(200);
    expect(JSON.stringify(revoked.body)).not.toContain(key);
    expect(JSON.stringify(revoked.body)).not.toContain(sha256(key));
  });

  it('the database stores sha256(key) and nowhere the key itself', async () => {
    const a = await signUp(app);
    const viaJwt = await a.api.post(`/v1/users/${a.user.id}/api-keys`, { name: 'jwt-made' });
    const viaService = await svc.post(`/v1/users/${a.user.id}/api-keys`, { name: 'service-made' });
    for (const created of [viaJwt, viaService]) {
      expect(created.status).toBe(201);
      const { id, key } = created.body;
      const row = await storedRow(id);
      expect(row['key_hash']).toBe(sha256(key));
      for (const [column, value] of Object.entries(row)) {
        expect(JSON.stringify(value) ?? '', column).not.toContain(key);
      }
      expect(await rowsContaining(key)).toEqual([]);
      // The secret part is not stored either (only the visible prefix may be).
      expect(await rowsContaining(key.slice(created.body.prefix.length))).toEqual([]);
    }
  });

  it('a key created with an Idempotency-Key is still stored nowhere in plain text', async () => {
    const a = await signUp(app);
    for (const api of [svc, a.api]) {
      const created = await api.post(`/v1/users/${a.user.id}/api-keys`, { name: 'idem' }, { idempotencyKey: `idem-${randomUUID()}` });
      expect(created.status).toBe(201);
      const { key } = created.body;
      expect((await storedRow(created.body.id))['key_hash']).toBe(sha256(key));
      expect(await rowsContaining(key)).toEqual([]);
      expect(await rowsContaining(key.slice(created.body.prefix.length))).toEqual([]);
    }
  });

  it('a user may send an Idempotency-Key when creating their own key', async () => {
    const a = await signUp(app);
    const created = await a.api.post(`/v1/users/${a.user.id}/api-keys`, { name: 'idem' }, { idempotencyKey: `idem-${a.user.id}` });
    expect(created.status).toBe(201);
    expect((await as(created.body.key).get('/v1/me')).body.id).toBe(a.user.id);
  });

  it('the key authenticates as its user', async () => {
    const u = await makeUser(app);
    const { key } = await makeApiKey(app, u.id);
    const me = await as(key).get('/v1/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: u.id, email: u.email });
    // A key-shaped token that is not a key is refused, not treated as anonymous.
    const forged = await as(`${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`).get('/v1/me');
    expect(forged.status).toBe(401);
    expect(forged.body.error.code).toBe('unauthenticated');
  });

  it('request_count and last_used_at increase with every use (counted in memory, written within a second)', async () => {
    const u = await makeUser(app);
    const created = await makeApiKey(app, u.id);
    // The counts are written in batches (api-keys.uses.ts): flush what this process counted, then read.
    const stat = async () => {
      await app.services.keyUses.flush();
      return must((await listKeys(u.id)).find((k) => k.id === created.id), 'a matching item');
    };

    const fresh = await stat();
    expect(fresh.request_count).toBe(0);
    expect(fresh.last_used_at).toBeNull();

    expect((await as(created.key).get('/v1/me')).status).toBe(200);
    const once = await stat();
    expect(once.request_count).toBe(1);
    expect(once.last_used_at).not.toBeNull();

    await sleep(20);
    expect((await as(created.key).get('/v1/me')).status).toBe(200);
    expect((await as(created.key).get(`/v1/users/${u.id}`)).status).toBe(200);
    const thrice = await stat();
    expect(thrice.request_count).toBe(3);
    expect(Date.parse(thrice.last_used_at)).toBeGreaterThan(Date.parse(once.last_used_at));

    // Refused requests with other credentials do not count against this key.
    expect((await as('tly_' + 'x'.repeat(48)).get('/v1/me')).status).toBe(401);
    expect((await stat()).request_count).toBe(3);
  });

  it('scopes limit what a key can do', async () => {
    const u = await makeUser(app);
    const other = await makeUser(app);
    const readOnly = await makeApiKey(app, u.id, { name: 'ro', scopes: ['users:read'] });
    const api = as(readOnly.key);

    const self = await api.get(`/v1/users/${u.id}`);
    expect(self.status).toBe(200);
    expect(self.body.id).toBe(u.id);
    // The scope is about the kind of action, not whose data: other users stay off limits.
    expect((await api.get(`/v1/users/${other.id}`)).status).toBe(403);

    const mint = await api.post(`/v1/users/${u.id}/api-keys`, { name: 'escalate', scopes: ['users:read'] });
    expect(mint.status).toBe(403);
    expect(mint.body.error.code).toBe('forbidden');
    expect((await api.get(`/v1/users/${u.id}/api-keys`)).status).toBe(403);
    expect((await api.patch(`/v1/users/${u.id}`, { name: 'x' })).status).toBe(403);
    expect((await listKeys(u.id)).map((k) => k.id)).toEqual([readOnly.id]);
  });

  it('a limited key cannot mint a key with broader scopes', async () => {
    const u = await makeUser(app);
    const minter = await makeApiKey(app, u.id, { name: 'minter', scopes: ['keys:write', 'users:read'] });
    const api = as(minter.key);

    for (const scopes of [['*'], ['keys:write', 'keys:read'], ['workspaces:write'], undefined]) {
      const res = await api.post(`/v1/users/${u.id}/api-keys`, { name: 'broader', ...(scopes ? { scopes } : {}) });
      expect(res.status, JSON.stringify(scopes)).toBe(403);
      expect(res.body.error.code).toBe('forbidden');
    }
    expect((await listKeys(u.id)).map((k) => k.id)).toEqual([minter.id]);

    // No stronger is fine.
    const narrower = await api.post(`/v1/users/${u.id}/api-keys`, { name: 'narrower', scopes: ['users:read'] });
    expect(narrower.status).toBe(201);
    expect(narrower.body.scopes).toEqual(['users:read']);
    const same = await api.post(`/v1/users/${u.id}/api-keys`, { name: 'same', scopes: ['users:read', 'keys:write'] });
    expect(same.status).toBe(201);
  });

  it('a limited key cannot obtain a stronger key by replaying its creation (a secret answer replays only to its own credential)', async () => {
    const me = await signUp(app);
    const idem = { idempotencyKey: `create-ci-key-${randomUUID()}` };
    const strong = await me.api.post(`/v1/users/${me.user.id}/api-keys`, { name: 'ci' }, idem);
    expect(strong.status).toBe(201);
    expect(strong.body.scopes).toEqual(['*']);
    // The same credential replays its own answer, secret included.
    const again = await me.api.post(`/v1/users/${me.user.id}/api-keys`, { name: 'ci' }, idem);
    expect(again.status).toBe(201);
    expect(again.body.key).toBe(strong.body.key);
    // A weaker key of the same user, with the same Idempotency-Key and body: no replay of the secret.
    const weak = await makeApiKey(app, me.user.id, { name: 'weak', scopes: ['keys:write'] });
    const replay = await as(weak.key).post(`/v1/users/${me.user.id}/api-keys`, { name: 'ci' }, idem);
    expect(replay.status).toBe(409);
    expect(replay.body.error.code).toBe('idempotency_key_reused');
    expect(JSON.stringify(replay.body)).not.toContain(strong.body.key);
  });

  it('an expires_at in the past at creation is a 400 and creates nothing', async () => {
    const u = await makeUser(app);
    for (const expires_at of [new Date(Date.now() - 60_000).toISOString(), '2001-01-01T00:00:00Z']) {
      const res = await svc.post(`/v1/users/${u.id}/api-keys`, { name: 'stale', expires_at });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    const bad = await svc.post(`/v1/users/${u.id}/api-keys`, { name: 'stale', expires_at: 'tomorrow' });
    expect(bad.status).toBe(400);
    expect(await listKeys(u.id)).toEqual([]);
  });

  it('a key past its expiry no longer authenticates', async () => {
    const u = await makeUser(app);
    const created = await makeApiKey(app, u.id, { name: 'short', expires_at: new Date(Date.now() + 1_000).toISOString() });
    // Used once: from here on the key is served from memory (docs/auth.md, "API key cache"), and
    // its expiry must still apply there.
    expect((await as(created.key).get('/v1/me')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1_100));
    const res = await as(created.key).get('/v1/me');
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('unauthenticated');
    // A refused key is not counted as used.
    await app.services.keyUses.flush();
    expect(must((await listKeys(u.id))[0], '(await listKeys(u.id))[0]').request_count).toBe(1);
  });

  it('DELETE /v1/api-keys/:id revokes; revoking again is fine and keeps the first revoked_at', async () => {
    const u = await makeUser(app);
    const created = await makeApiKey(app, u.id);
    const keep = await makeApiKey(app, u.id, { name: 'kept' });
    expect((await as(created.key).get('/v1/me')).status).toBe(200);

    const first = await svc.del(`/v1/api-keys/${created.id}`);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ id: created.id, user_id: u.id });
    expect(first.body.revoked_at).not.toBeNull();

    const afterRevoke = await as(created.key).get('/v1/me');
    expect(afterRevoke.status).toBe(401);
    expect(afterRevoke.body.error.code).toBe('unauthenticated');

    await sleep(20);
    const second = await svc.del(`/v1/api-keys/${created.id}`);
    expect(second.status).toBe(200);
    expect(second.body.revoked_at).toBe(first.body.revoked_at);
    expect(must((await listKeys(u.id)).find((k) => k.id === created.id), 'a matching item').revoked_at).toBe(first.body.revoked_at);

    // Other keys of the user are untouched.
    expect((await as(keep.key).get('/v1/me')).status).toBe(200);
    expect((await svc.del('/v1/api-keys/key_doesnotexist')).status).toBe(404);
  });

  it('a user manages their own keys with their JWT, and not another user\'s', async () => {
    const a = await signUp(app);
    const b = await signUp(app);
    const bKey = await makeApiKey(app, b.user.id, { name: 'b' });

    const mine = await a.api.post(`/v1/users/${a.user.id}/api-keys`, { name: 'mine' });
    expect(mine.status).toBe(201);
    expect((await as(mine.body.key).get('/v1/me')).body.id).toBe(a.user.id);
    const own = await a.api.get(`/v1/users/${a.user.id}/api-keys`);
    expect(own.status).toBe(200);
    expect(own.body.data.map((k: { id: string }) => k.id)).toEqual([mine.body.id]);

    const createForB = await a.api.post(`/v1/users/${b.user.id}/api-keys`, { name: 'not mine' });
    expect(createForB.status).toBe(403);
    expect(createForB.body.error.code).toBe('forbidden');
    expect((await a.api.get(`/v1/users/${b.user.id}/api-keys`)).status).toBe(403);
    const revokeB = await a.api.del(`/v1/api-keys/${bKey.id}`);
    expect([403, 404]).toContain(revokeB.status);
    // b's keys are exactly as before, and b's key still works.
    const bKeys = await listKeys(b.user.id);
    expect(bKeys.map((k) => k.id)).toEqual([bKey.id]);
    expect(must(bKeys[0], 'bKeys[0]').revoked_at).toBeNull();
    expect((await as(bKey.key).get('/v1/me')).status).toBe(200);
    // Nor with a key of a's that has every scope.
    expect([403, 404]).toContain((await as(mine.body.key).del(`/v1/api-keys/${bKey.id}`)).status);
    expect(must((await listKeys(b.user.id))[0], '(await listKeys(b.user.id))[0]').revoked_at).toBeNull();

    const revokeMine = await a.api.del(`/v1/api-keys/${mine.body.id}`);
    expect(revokeMine.status).toBe(200);
    expect((await as(mine.body.key).get('/v1/me')).status).toBe(401);
  });

  it('the service creates, lists and revokes keys for any user; an unknown user is a 404', async () => {
    const a = await makeUser(app);
    const b = await makeUser(app);
    const ka = await svc.post(`/v1/users/${a.id}/api-keys`, { name: 'a' });
    const kb = await svc.post(`/v1/users/${b.id}/api-keys`, { name: 'b', scopes: ['credits:read'] });
    expect([ka.status, kb.status]).toEqual([201, 201]);
    expect((await as(ka.body.key).get('/v1/me')).body.id).toBe(a.id);
    expect((await as(kb.body.key).get('/v1/me')).body.id).toBe(b.id);
    expect((await listKeys(a.id)).map((k) => k.id)).toEqual([ka.body.id]);
    expect((await listKeys(b.id)).map((k) => k.id)).toEqual([kb.body.id]);
    expect((await svc.del(`/v1/api-keys/${kb.body.id}`)).status).toBe(200);
    expect((await as(kb.body.key).get('/v1/me')).status).toBe(401);
    expect((await as(ka.body.key).get('/v1/me')).status).toBe(200);

    const unknown = await svc.post('/v1/users/usr_doesnotexist/api-keys', { name: 'ghost' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');
  });

  it('the keys of a disabled user stop working', async () => {
    const u = await makeUser(app);
    const k1 = await makeApiKey(app, u.id, { name: 'one' });
    const k2 = await makeApiKey(app, u.id, { name: 'two', scopes: ['users:read'] });
    expect((await as(k1.key).get('/v1/me')).status).toBe(200);
    expect((await as(k2.key).get(`/v1/users/${u.id}`)).status).toBe(200);

    const disable = await svc.patch(`/v1/users/${u.id}`, { is_active: false });
    expect(disable.status).toBe(200);
    expect(disable.body.is_active).toBe(false);

    for (const key of [k1.key, k2.key]) {
      const res = await as(key).get('/v1/me');
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('unauthenticated');
    }
    // A user's own key cannot re-enable the user either.
    expect((await as(k1.key).patch(`/v1/users/${u.id}`, { is_active: true })).status).toBe(401);
    expect((await svc.get(`/v1/users/${u.id}`)).body.is_active).toBe(false);
  });

  it('the key list paginates newest first with limit=2, without duplicates or gaps', async () => {
    const u = await makeUser(app);
    const created: string[] = [];
    for (let i = 0; i < 5; i++) created.push((await makeApiKey(app, u.id, { name: `k${i}` })).id);

    const seen: Array<Record<string, Json>> = [];
    const pageSizes: number[] = [];
    let cursor: string | null = null;
    for (let guard = 0; guard < 10; guard++) {
      const url: string = `/v1/users/${u.id}/api-keys?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await svc.get(url);
      expect(res.status).toBe(200);
      pageSizes.push(res.body.data.length);
      seen.push(...res.body.data);
      cursor = res.body.next_cursor;
      if (cursor === null) break;
    }
    expect(cursor).toBeNull();
    expect(pageSizes).toEqual([2, 2, 1]);
    expect(seen.map((k) => k.id)).toEqual([...created].reverse());
    for (let i = 1; i < seen.length; i++) {
      expect(Date.parse(must(seen[i - 1], 'seen[i - 1]').created_at)).toBeGreaterThanOrEqual(Date.parse(must(seen[i], 'seen[i]').created_at));
    }

    // Exactly limit items: the last full page says there is no more.
    const two = await makeUser(app);
    await makeApiKey(app, two.id);
    await makeApiKey(app, two.id);
    const full = await svc.get(`/v1/users/${two.id}/api-keys?limit=2`);
    expect(full.body.data).toHaveLength(2);
    expect(full.body.next_cursor).toBeNull();

    expect((await svc.get(`/v1/users/${u.id}/api-keys?cursor=not-a-cursor`)).status).toBe(400);
  });
});
