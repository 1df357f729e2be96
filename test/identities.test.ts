import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

describe(`linked logins (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  beforeAll(async () => {
    app = await createTestApp();
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app.close();
  });

  it('OAuth tokens are encrypted at rest, never returned, and readable by the server', async () => {
    const u = await makeUser(app);
    const res = await svc.post(`/v1/users/${u.id}/identities`, {
      provider: 'github', provider_user_id: '12345', email: 'gh@example.com',
      access_token: 'gho_plaintext_secret', refresh_token: 'ghr_refresh_secret', scopes: ['repo'], raw_profile: { login: 'octo' },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ provider: 'github', provider_user_id: '12345', has_access_token: true, has_refresh_token: true, scopes: ['repo'] });
    expect(JSON.stringify(res.body)).not.toContain('secret');
    const row = await sql<{ a: string; r: string }>`select access_token_enc a, refresh_token_enc r
      from ${sql.table(`${app.database.schema}.user_identities`)} where user_id = ${u.id}`.execute(app.database.root);
    expect(must(row.rows[0], 'row.rows[0]').a).toMatch(/^v1\./);
    expect(must(row.rows[0], 'row.rows[0]').a).not.toContain('plaintext');
    expect(await app.services.identities.tokens(app.database.db, u.id, 'github')).toEqual({
      accessToken: 'gho_plaintext_secret', refreshToken: 'ghr_refresh_secret',
    });
    const found = await svc.get('/v1/identities/github/12345');
    expect(found.body.user_id).toBe(u.id);
  });

  it('a provider account belongs to one user; re-linking refreshes the link', async () => {
    const a = await makeUser(app);
    const b = await makeUser(app);
    await svc.post(`/v1/users/${a.id}/identities`, { provider: 'google', provider_user_id: 'g-1', access_token: 't1' });
    const clash = await svc.post(`/v1/users/${b.id}/identities`, { provider: 'google', provider_user_id: 'g-1' });
    expect(clash.status).toBe(409);
    const relink = await svc.post(`/v1/users/${a.id}/identities`, { provider: 'google', provider_user_id: 'g-1', scopes: ['email'] });
    expect(relink.body).toMatchObject({ has_access_token: true, scopes: ['email'] });
    expect((await svc.get(`/v1/users/${a.id}/identities`)).body.data).toHaveLength(1);
    expect((await svc.call('DELETE', `/v1/users/${a.id}/identities/google`)).status).toBe(200);
    expect((await svc.get('/v1/identities/google/g-1')).status).toBe(404);
  });

  it('users list their own links without tokens and cannot link or unlink', async () => {
    const s = await signUp(app);
    await svc.post(`/v1/users/${s.user.id}/identities`, { provider: 'gitlab', provider_user_id: 'gl-9', access_token: 'tok' });
    const mine = await s.api.get(`/v1/users/${s.user.id}/identities`);
    expect(mine.status).toBe(200);
    expect(mine.body.data[0]).toMatchObject({ provider: 'gitlab', has_access_token: true });
    expect(mine.body.data[0]).not.toHaveProperty('access_token_enc');
    expect((await s.api.post(`/v1/users/${s.user.id}/identities`, { provider: 'x', provider_user_id: '1' })).status).toBe(403);
    expect((await s.api.call('DELETE', `/v1/users/${s.user.id}/identities/gitlab`)).status).toBe(403);
    const other = await signUp(app);
    expect((await other.api.get(`/v1/users/${s.user.id}/identities`)).status).toBe(403);
  });
});
