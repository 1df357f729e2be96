import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

describe(`users (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  beforeAll(async () => {
    app = await createTestApp();
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app.close();
  });

  it('the service creates a user with a prefixed id and the API shape', async () => {
    const res = await svc.post('/v1/users', { email: 'ada@example.com', name: 'Ada', metadata: { plan: 'pro' } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ email: 'ada@example.com', name: 'Ada', metadata: { plan: 'pro' }, role: 'user', level: 1 });
    expect(res.body.id).toMatch(/^usr_[0-9a-z]{26}$/);
    expect(new Date(res.body.created_at).toISOString()).toBe(res.body.created_at);
    expect(res.body).not.toHaveProperty('password_hash');
  });

  it('a user may be created with a caller-chosen id (a Supabase auth.users uuid)', async () => {
    const id = '8f14e45f-ceea-467a-9af0-2f5f1d2c1b0e';
    const res = await svc.post('/v1/users', { id, email: 'supa@example.com' });
    expect(res.status).toBe(201);
    expect((await svc.get(`/v1/users/${id}`)).body.id).toBe(id);
  });

  it('an existing id or e-mail (in any case) is a 409 conflict and changes nothing', async () => {
    const u = await makeUser(app);
    const byEmail = await svc.post('/v1/users', { email: u.email.toUpperCase() });
    expect(byEmail.status).toBe(409);
    expect(byEmail.body.error).toMatchObject({ code: 'conflict', details: { field: 'email' } });
    const byId = await svc.post('/v1/users', { id: u.id, email: 'other@example.com' });
    expect(byId.status).toBe(409);
    expect(byId.body.error.details.field).toBe('id');
    expect((await svc.get('/v1/users?email=other@example.com')).body.data).toEqual([]);
  });

  it('concurrent creations of one e-mail make exactly one user', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, () => svc.post('/v1/users', { email: 'race@example.com' })),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 409)).toHaveLength(7);
  });

  it('GET /v1/users/:id is for the service or that user only', async () => {
    const a = await signUp(app);
    const b = await signUp(app);
    expect((await a.api.get(`/v1/users/${a.user.id}`)).status).toBe(200);
    const other = await a.api.get(`/v1/users/${b.user.id}`);
    expect(other.status).toBe(403);
    expect(other.body.error.code).toBe('forbidden');
    expect((await svc.get('/v1/users/usr_doesnotexist')).status).toBe(404);
  });

  it('GET /v1/me returns the caller', async () => {
    const a = await signUp(app);
    const me = await a.api.get('/v1/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: a.user.id, email: a.user.email, provider: 'email' });
    expect((await svc.get('/v1/me')).status).toBe(403);
  });

  it('users edit their profile but never their role, level, status or metadata', async () => {
    const a = await signUp(app);
    const ok = await a.api.patch(`/v1/users/${a.user.id}`, { name: 'Grace', bio: 'hi', preferences: { theme: 'dark' } });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ name: 'Grace', bio: 'hi', preferences: { theme: 'dark' } });
    for (const patch of [{ role: 'admin' }, { level: 99 }, { is_active: false }, { metadata: { vip: true } }, { email: 'x@y.io' }]) {
      const res = await a.api.patch(`/v1/users/${a.user.id}`, patch);
      expect(res.status, JSON.stringify(patch)).toBe(403);
    }
    const after = await svc.get(`/v1/users/${a.user.id}`);
    expect(after.body).toMatchObject({ role: 'user', level: 1, is_active: true, metadata: {}, email: a.user.email });
    const bySvc = await svc.patch(`/v1/users/${a.user.id}`, { role: 'admin', level: 3, is_email_verified: true });
    expect(bySvc.body).toMatchObject({ role: 'admin', level: 3, is_email_verified: true });
    expect(bySvc.body.email_verified_at).not.toBeNull();
  });

  it('lists page newest first with cursors that neither skip nor repeat', async () => {
    const made: string[] = [];
    for (let i = 0; i < 7; i++) made.push((await makeUser(app, { name: `pager-${i}` })).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: { status: number; body: { data: { id: string }[]; next_cursor: string | null } } = await svc.get(
        `/v1/users?limit=3${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(res.status).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(3);
      seen.push(...res.body.data.map((u) => u.id));
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    const positions = made.map((id) => seen.indexOf(id));
    expect(positions.every((p) => p >= 0)).toBe(true);
    expect([...positions].sort((x, y) => y - x)).toEqual(positions); // newest first
    const total = await app.database.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    expect(seen.length).toBe(Number(total.n));
  });

  it('search by e-mail fragment, name or id', async () => {
    await makeUser(app, { email: 'findme-123@example.com', name: 'Needle' });
    const byQ = await svc.get('/v1/users?q=findme');
    expect(byQ.body.data.map((u: { email: string }) => u.email)).toEqual(['findme-123@example.com']);
    expect((await svc.get('/v1/users?q=Needle')).body.data).toHaveLength(1);
    expect((await svc.get('/v1/users?q=%25')).body.data.every((u: { email: string }) => u.email.includes('%'))).toBe(true);
  });

  it('the list shows each user\'s balance and held credits as the balance read does, in one query', async () => {
    const rich = await makeUser(app, { name: 'listbal-rich' });
    const key = () => ({ idempotencyKey: `k_${randomBytes(8).toString('hex')}` });
    expect((await svc.post('/v1/credits/grant', { user_id: rich.id, amount: 40, reason: 'load' }, key())).status).toBe(201);
    expect((await svc.post('/v1/holds', { user_id: rich.id, amount: 15 }, key())).status).toBe(201);
    const plain = await makeUser(app, { name: 'listbal-plain' });
    // A user whose account no money movement has opened yet (the bonus opens one for API-made users).
    const bare = `usr_listbal_${randomBytes(4).toString('hex')}`;
    await app.database.db.insertInto('users').values({ id: bare, email: `${bare}@example.com`, name: 'listbal-bare' }).execute();

    const res = await svc.get('/v1/users?q=listbal-&limit=200');
    expect(res.status).toBe(200);
    const byId = new Map(res.body.data.map((u: { id: string }) => [u.id, u]));
    expect(res.body.data).toHaveLength(3); // the join adds no rows
    expect(byId.get(rich.id)).toMatchObject({ id: rich.id, email: rich.email, balance: 43, held: 15 });
    expect(byId.get(plain.id)).toMatchObject({ balance: 3, held: 0 });
    expect(byId.get(bare)).toMatchObject({ balance: 0, held: 0 });
    for (const id of [rich.id, plain.id, bare]) {
      const b = (await svc.get(`/v1/users/${id}/balance`)).body;
      expect(byId.get(id)).toMatchObject({ balance: b.balance, held: b.held });
    }
    // Still the list's paging and filters: by e-mail, and a one-row page with a cursor.
    expect((await svc.get(`/v1/users?email=${encodeURIComponent(rich.email)}`)).body.data).toEqual([expect.objectContaining({ id: rich.id, balance: 43, held: 15 })]);
    const first = await svc.get('/v1/users?q=listbal-&limit=1');
    expect(first.body.data).toHaveLength(1);
    expect((await svc.get(`/v1/users?q=listbal-&limit=5&cursor=${first.body.next_cursor}`)).body.data).toHaveLength(2);
    // The single-user read keeps its shape.
    expect((await svc.get(`/v1/users/${rich.id}`)).body).not.toHaveProperty('balance');
  });
});
