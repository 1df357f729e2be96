import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, TEST_PASSWORD_HASHING, type TestApp } from './support/harness.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.js';
import { must } from '../src/lib/must.js';

describe(`auth (${TARGET})`, () => {
  let app: TestApp;
  let anon: ReturnType<typeof client>;
  let svc: ReturnType<typeof client>;
  const sign = (claims: Record<string, unknown>, secret: string, expiresIn: number | string = '1h') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(expiresIn).sign(new TextEncoder().encode(secret));

  beforeAll(async () => {
    app = await createTestApp();
    anon = client(app.server, null);
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app.close();
  });

  it('sign-up returns the user and a bearer token; the password is stored as argon2id', async () => {
    const res = await anon.post('/v1/auth/signup', { email: 'New@Example.com', password: 'hunter2hunter2' });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ token_type: 'bearer', expires_in: 3600, user: { email: 'New@Example.com' } });
    const row = await app.database.db.selectFrom('users').select('password_hash').where('id', '=', res.body.user.id).executeTakeFirstOrThrow();
    expect(row.password_hash).toMatch(/^\$argon2id\$/);
    expect(row.password_hash).not.toContain('hunter2');
    const session = await app.database.db.selectFrom('user_sessions').selectAll().where('user_id', '=', res.body.user.id).execute();
    expect(session).toHaveLength(1);
  });

  it("a deployment hashes with argon2id's production cost (m=64 MiB, t=3, p=4); only the test harness sets a cheaper one", async () => {
    // The environment cannot lower the cost: loadConfig never sets one, in production or elsewhere.
    const dir = mkdtempSync(join(tmpdir(), 'tally-auth-'));
    try {
      const env = { TALLY_DATA_DIR: dir, TALLY_JWT_SECRET: 'x'.repeat(40), TALLY_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'), TALLY_SERVICE_KEY: 's'.repeat(40) };
      expect(loadConfig({ ...env, NODE_ENV: 'production' }).config.auth.passwordHashing).toBeUndefined();
      expect(loadConfig(env).config.auth.passwordHashing).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // An app configured without a cost (as every deployment is) stores production-cost hashes...
    const { passwordHashing: _cheap, ...auth } = app.config.auth;
    const prod = await createTestApp({ auth });
    try {
      const res = await client(prod.server, null).post('/v1/auth/signup', { email: 'prod-cost@example.com', password: 'hunter2hunter2' });
      expect(res.status).toBe(201);
      const row = await prod.database.db.selectFrom('users').select('password_hash').where('id', '=', res.body.user.id).executeTakeFirstOrThrow();
      expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=65536,p=4,t=3\$/);
      // ...and logs in against them.
      expect((await client(prod.server, null).post('/v1/auth/login', { email: 'prod-cost@example.com', password: 'hunter2hunter2' })).status).toBe(200);
    } finally {
      await prod.close();
    }
    // The harness's own apps hash with its cheap cost (so this test is what keeps production's honest).
    const mine = await signUp(app, 'cheap-cost@example.com', 'hunter2hunter2');
    const row = await app.database.db.selectFrom('users').select('password_hash').where('id', '=', mine.user.id).executeTakeFirstOrThrow();
    const { memoryKib, timeCost, parallelism } = TEST_PASSWORD_HASHING;
    expect(row.password_hash).toMatch(new RegExp(`^\\$argon2id\\$v=19\\$m=${memoryKib},p=${parallelism},t=${timeCost}\\$`));
  });

  it('login with the right password works in any e-mail case and records the session', async () => {
    const s = await signUp(app, 'login-me@example.com', 'a long password');
    const res = await anon.post('/v1/auth/login', { email: 'LOGIN-me@example.com', password: 'a long password' }, {
      headers: { 'user-agent': 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/537.36 Chrome/126.0 Safari/537.36' },
    });
    expect(res.status).toBe(200);
    expect(res.body.user.id).toBe(s.user.id);
    expect(res.body.user.last_login_at).not.toBeNull();
    const me = await client(app.server, res.body.access_token).get('/v1/me');
    expect(me.body.id).toBe(s.user.id);
    const sessions = await app.database.db.selectFrom('user_sessions').selectAll().where('user_id', '=', s.user.id).orderBy('created_at').execute();
    expect(sessions).toHaveLength(2);
    expect(sessions[1]).toMatchObject({ browser: 'Chrome', os: 'macOS', device_type: 'desktop' });
  });

  it('a wrong password or unknown e-mail is the same 401', async () => {
    await signUp(app, 'wrong-pw@example.com', 'the right one');
    const wrong = await anon.post('/v1/auth/login', { email: 'wrong-pw@example.com', password: 'the wrong one' });
    const unknown = await anon.post('/v1/auth/login', { email: 'nobody@example.com', password: 'the wrong one' });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.body.error.code).toBe('unauthenticated');
    expect(wrong.body.error.message).toBe(unknown.body.error.message);
  });

  it('signing up twice with one e-mail is a 409', async () => {
    await signUp(app, 'twice@example.com');
    const res = await anon.post('/v1/auth/signup', { email: 'TWICE@example.com', password: 'another password' });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('conflict');
  });

  it('a disabled account cannot log in', async () => {
    const s = await signUp(app, 'disabled@example.com', 'password password');
    await svc.patch(`/v1/users/${s.user.id}`, { is_active: false });
    const res = await anon.post('/v1/auth/login', { email: 'disabled@example.com', password: 'password password' });
    expect(res.status).toBe(403);
  });

  it('accepts Supabase Auth tokens signed with the configured secret', async () => {
    const id = 'c0ffee00-1111-4222-8333-444455556666';
    await svc.post('/v1/users', { id, email: 'supabase-user@example.com' });
    const token = await sign(
      { sub: id, role: 'authenticated', aud: 'authenticated', email: 'supabase-user@example.com', session_id: 'abc' },
      app.config.auth.jwtSecret,
    );
    const me = await client(app.server, token).get('/v1/me');
    expect(me.status).toBe(200);
    expect(me.body.id).toBe(id);
  });

  it('a Supabase service_role token acts as the service; an anon token is anonymous', async () => {
    const serviceToken = await sign({ role: 'service_role', sub: 'service' }, app.config.auth.jwtSecret);
    expect((await client(app.server, serviceToken).get('/v1/users?limit=1')).status).toBe(200);
    const anonToken = await sign({ role: 'anon', sub: 'anon' }, app.config.auth.jwtSecret);
    expect((await client(app.server, anonToken).get('/v1/me')).status).toBe(401);
  });

  it('tokens with a wrong signature, an unknown role, or past expiry are 401', async () => {
    const s = await signUp(app);
    const forged = await sign({ sub: s.user.id, role: 'authenticated' }, 'not-the-secret-not-the-secret-not-the-secret');
    const expired = await sign({ sub: s.user.id, role: 'authenticated' }, app.config.auth.jwtSecret, Math.floor(Date.now() / 1000) - 10);
    const weird = await sign({ sub: s.user.id, role: 'superuser' }, app.config.auth.jwtSecret);
    const tampered = s.token.slice(0, -3) + (s.token.endsWith('abc') ? 'abd' : 'abc');
    for (const [name, token] of Object.entries({ forged, expired, weird, tampered })) {
      const res = await client(app.server, token).get('/v1/me');
      expect(res.status, name).toBe(401);
      expect(res.body.error.code, name).toBe('unauthenticated');
    }
    const exp = await client(app.server, expired).get('/v1/me');
    expect(exp.body.error.message).toMatch(/expired/i);
  });

  it('the HS256 token carries sub, role and email', async () => {
    const s = await signUp(app);
    const payload = JSON.parse(Buffer.from(must(s.token.split('.')[1], 'a JWT has a payload'), 'base64url').toString());
    expect(payload).toMatchObject({ sub: s.user.id, role: 'authenticated', email: s.user.email, aud: 'authenticated' });
    expect(payload.exp - payload.iat).toBe(3600);
    expect(JSON.parse(Buffer.from(must(s.token.split('.')[0], 'a JWT has a header'), 'base64url').toString()).alg).toBe('HS256');
  });
});

describe(`sessions (${TARGET})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('logging out ends the session: its token stops working, other sessions do not', async () => {
    const s = await signUp(app, 'logout@example.com', 'password password');
    const second = await client(app.server, null).post('/v1/auth/login', { email: 'logout@example.com', password: 'password password' });
    const out = await s.api.post('/v1/auth/logout');
    expect(out.status).toBe(200);
    expect((await s.api.get('/v1/me')).status).toBe(401);
    expect((await client(app.server, second.body.access_token).get('/v1/me')).status).toBe(200);
  });

  it('disabling an account stops its live tokens at once', async () => {
    const s = await signUp(app);
    expect((await s.api.get('/v1/me')).status).toBe(200);
    await client(app.server, app.serviceKey).patch(`/v1/users/${s.user.id}`, { is_active: false });
    const res = await s.api.get('/v1/me');
    expect(res.status).toBe(401);
    expect(res.body.error.message).toMatch(/disabled/);
  });
});

describe(`session activity (${TARGET})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('using a session token records its last activity, at most once a minute', async () => {
    const s = await signUp(app);
    const db = app.database.db;
    const session = () => db.selectFrom('user_sessions').select(['id', 'last_activity_at']).where('user_id', '=', s.user.id).executeTakeFirstOrThrow();
    const { id } = await session();
    await db.updateTable('user_sessions').set({ last_activity_at: new Date(Date.now() - 3_600_000) }).where('id', '=', id).execute();
    await s.api.get('/v1/me');
    const first = (await session()).last_activity_at as Date;
    expect(Date.now() - first.getTime()).toBeLessThan(60_000);
    await s.api.get('/v1/me');
    expect(((await session()).last_activity_at as Date).getTime()).toBe(first.getTime());
  });
});
