import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { hashRefreshToken } from '../src/modules/auth/auth.refresh.js';

/** Refresh tokens (docs/auth.md, "Refresh"): rotation, reuse ends the family, expiry, logout. */
describe(`auth refresh (${TARGET})`, () => {
  let app: TestApp;
  let anon: ReturnType<typeof client>;
  let svc: ReturnType<typeof client>;
  let offsetMs = 0;
  const clock = () => new Date(Date.now() + offsetMs);
  const DAY = 86_400_000;

  beforeAll(async () => {
    app = await createTestApp({}, { clock });
    anon = client(app.server, null);
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app.close();
  });

  const login = async (email: string) => {
    await signUp(app, email, 'a long password');
    const res = await anon.post('/v1/auth/login', { email, password: 'a long password' });
    expect(res.status).toBe(200);
    return res.body as { user: { id: string }; access_token: string; refresh_token: string };
  };
  const refresh = (token: unknown) => anon.post('/v1/auth/refresh', { refresh_token: token });
  const me = (token: string) => client(app.server, token).get('/v1/me');

  it('sign-up and login hand out a refresh token that is stored only as its SHA-256', async () => {
    const s = await login('rf-stored@example.com');
    expect(s.refresh_token).toMatch(/^tlyr_[A-Za-z0-9_-]{43}$/);
    const rows = await app.database.db.selectFrom('refresh_tokens').selectAll().where('user_id', '=', s.user.id).execute();
    expect(rows).toHaveLength(2); // sign-up's session and login's
    expect(rows.map((r) => r.token_hash)).toContain(hashRefreshToken(s.refresh_token));
    expect(JSON.stringify(rows)).not.toContain(s.refresh_token.slice(5));
  });

  it('a refresh rotates: a new pair for the same session, the old refresh token spent, the new one works once more', async () => {
    const s = await login('rf-rotate@example.com');
    const r1 = await refresh(s.refresh_token);
    expect(r1.status).toBe(200);
    expect(r1.body).toMatchObject({ token_type: 'bearer', expires_in: 3600, user: { id: s.user.id } });
    expect(r1.body.refresh_token).not.toBe(s.refresh_token);
    expect((await me(r1.body.access_token)).body.id).toBe(s.user.id);
    const r2 = await refresh(r1.body.refresh_token);
    expect(r2.status).toBe(200);
    const sessions = await app.database.db.selectFrom('user_sessions').select(['id', 'revoked_at']).where('user_id', '=', s.user.id).execute();
    expect(sessions).toHaveLength(2); // sign-up + login; refreshes start none
    const family = await app.database.db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', hashRefreshToken(r2.body.refresh_token)).executeTakeFirstOrThrow();
    const chain = await app.database.db.selectFrom('refresh_tokens').selectAll().where('session_id', '=', family.session_id).orderBy('created_at').execute();
    expect(chain).toHaveLength(3);
    expect(chain.filter((t) => t.used_at === null)).toHaveLength(1);
    expect(chain[2]?.parent_id).toBe(chain[1]?.id);
  });

  it('presenting a spent refresh token ends the whole session: the thief and the owner are both signed out', async () => {
    const s = await login('rf-reuse@example.com');
    const owner = await refresh(s.refresh_token);
    expect(owner.status).toBe(200);
    const replay = await refresh(s.refresh_token);
    expect(replay.status).toBe(401);
    expect(replay.body.error).toMatchObject({ code: 'unauthenticated', details: { reason: 'reused' } });
    // Every token of the family is dead, including the newest pair.
    expect((await refresh(owner.body.refresh_token)).body.error.details.reason).toBe('session_ended');
    expect((await me(owner.body.access_token)).status).toBe(401);
    expect((await me(s.access_token)).status).toBe(401);
    const session = await app.database.db
      .selectFrom('refresh_tokens as r')
      .innerJoin('user_sessions as s', 's.id', 'r.session_id')
      .select(['s.revoked_reason', 's.revoked_at'])
      .where('r.token_hash', '=', hashRefreshToken(s.refresh_token))
      .executeTakeFirstOrThrow();
    expect(session.revoked_reason).toBe('refresh_reuse');
    // The user's other sessions are untouched.
    expect((await anon.post('/v1/auth/login', { email: 'rf-reuse@example.com', password: 'a long password' })).status).toBe(200);
  });

  it('two exchanges of one token at once: one wins, the other is a reuse and ends the session', async () => {
    const s = await login('rf-race@example.com');
    const [a, b] = await Promise.all([refresh(s.refresh_token), refresh(s.refresh_token)]);
    expect([a.status, b.status].sort()).toEqual([200, 401]);
    const winner = a.status === 200 ? a : b;
    expect((await me(winner.body.access_token)).status).toBe(401);
  });

  it('logout ends the refresh tokens too', async () => {
    const s = await login('rf-logout@example.com');
    expect((await client(app.server, s.access_token).post('/v1/auth/logout', {})).status).toBe(200);
    const res = await refresh(s.refresh_token);
    expect(res.status).toBe(401);
    expect(res.body.error.details.reason).toBe('session_ended');
  });

  it('an expired refresh token is refused and changes nothing; a refresh extends the session', async () => {
    const s = await login('rf-expiry@example.com');
    offsetMs = 29 * DAY;
    const r1 = await refresh(s.refresh_token);
    expect(r1.status).toBe(200);
    const row = await app.database.db
      .selectFrom('refresh_tokens as r')
      .innerJoin('user_sessions as s', 's.id', 'r.session_id')
      .select(['s.expires_at', 'r.expires_at as token_expires_at'])
      .where('r.token_hash', '=', hashRefreshToken(r1.body.refresh_token))
      .executeTakeFirstOrThrow();
    expect(row.expires_at.getTime()).toBe(row.token_expires_at.getTime());
    expect(row.expires_at.getTime()).toBeGreaterThan(Date.now() + 58 * DAY);
    offsetMs = 60 * DAY;
    const late = await refresh(r1.body.refresh_token);
    expect(late.status).toBe(401);
    expect(late.body.error.details.reason).toBe('expired');
    const after = await app.database.db.selectFrom('refresh_tokens').select('used_at').where('token_hash', '=', hashRefreshToken(r1.body.refresh_token)).executeTakeFirstOrThrow();
    expect(after.used_at).toBeNull();
    offsetMs = 0;
  });

  it('a disabled account cannot refresh (403), and garbage is a 401 or a 400', async () => {
    const s = await login('rf-disabled@example.com');
    expect((await svc.patch(`/v1/users/${s.user.id}`, { is_active: false })).status).toBe(200);
    expect((await refresh(s.refresh_token)).status).toBe(403);
    const unknown = await refresh(`tlyr_${'A'.repeat(43)}`);
    expect(unknown.status).toBe(401);
    expect(unknown.body.error.details.reason).toBe('invalid');
    expect((await refresh('tly_not-a-refresh-token')).status).toBe(401);
    expect((await refresh(42)).status).toBe(400);
    expect((await anon.post('/v1/auth/refresh', {})).status).toBe(400);
    // An access token is not a refresh token.
    expect((await refresh(s.access_token)).status).toBe(401);
  });
});
