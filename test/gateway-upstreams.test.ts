import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/** Upstream accounts: credentials are sealed at rest and never answered; health is visible. */
describe(`gateway upstream accounts (${TARGET})`, () => {
  let app: TestApp;
  const svc = () => client(app.server, app.serviceKey);

  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('credentials are write-only: sealed in the row, never in an answer', async () => {
    const secret = 'sk-live-abcdefghijklmnop1234';
    const res = await svc().post('/v1/gateway/upstreams', { type: 'openai', base_url: 'https://api.example.com/v1/', credentials: secret, models: ['gpt-4o*'], priority: 2, weight: 50 });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ type: 'openai', base_url: 'https://api.example.com/v1', credentials_hint: '1234', models: ['gpt-4o*'], priority: 2, weight: 50, is_active: true });
    expect(res.body.health).toMatchObject({ state: 'closed', success_count: 0, error_count: 0, cooldown_until: null, last_error: null });
    expect(JSON.stringify(res.body)).not.toContain(secret);
    const list = await svc().get('/v1/gateway/upstreams');
    expect(JSON.stringify(list.body)).not.toContain(secret);
    const row = await app.database.db.selectFrom('gateway_upstreams').select(['credentials_enc']).where('id', '=', res.body.id).executeTakeFirstOrThrow();
    expect(row.credentials_enc).not.toContain(secret);
    expect(app.services.secrets.open(row.credentials_enc, `gateway_upstreams:${res.body.id}`)).toBe(secret);
    // Bound to its row: the same ciphertext does not open as another upstream's.
    expect(app.services.secrets.open(row.credentials_enc, 'gateway_upstreams:ups_other')).toBeNull();
  });

  it('get, patch (a new credential re-enables a disabled upstream) and delete', async () => {
    const res = await svc().post('/v1/gateway/upstreams', { type: 'anthropic', base_url: 'http://127.0.0.1:9', credentials: 'sk-ant-0000000000000000' });
    const id = res.body.id as string;
    expect(res.body).toMatchObject({ models: ['*'], priority: 1, weight: 100 });
    await app.database.db.updateTable('gateway_upstreams').set({ state: 'disabled', last_error: 'credential refused: 401' }).where('id', '=', id).execute();
    expect((await svc().get(`/v1/gateway/upstreams/${id}`)).body.health.state).toBe('disabled');
    const patched = await svc().patch(`/v1/gateway/upstreams/${id}`, { credentials: 'sk-ant-1111111111111111', weight: 3 });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ weight: 3, credentials_hint: '1111', health: { state: 'closed' } });
    expect((await svc().del(`/v1/gateway/upstreams/${id}`)).status).toBe(200);
    expect((await svc().get(`/v1/gateway/upstreams/${id}`)).status).toBe(404);
  });

  it('refuses a type it cannot relay and unknown fields', async () => {
    expect((await svc().post('/v1/gateway/upstreams', { type: 'gemini', base_url: 'https://x.example', credentials: 'k' })).status).toBe(400);
    expect((await svc().post('/v1/gateway/upstreams', { type: 'openai', base_url: 'https://x.example', credentials: 'k', secret: 1 })).status).toBe(400);
  });
});
