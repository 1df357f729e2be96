import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

describe(`Idempotency-Key (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  const countUsers = async (email: string) =>
    must((await sql<{ n: number }>`select count(*)::int as n from ${sql.table(`${app.database.schema}.users`)} where lower(email) = ${email}`.execute(
      app.database.root,
    )).rows[0], 'the query returns a row').n;

  beforeAll(async () => {
    app = await createTestApp();
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app.close();
  });

  it('a replay returns the first response (same status, same body) and writes nothing', async () => {
    const first = await svc.post('/v1/users', { email: 'idem1@example.com' }, { idempotencyKey: 'create-idem1' });
    const again = await svc.post('/v1/users', { email: 'idem1@example.com' }, { idempotencyKey: 'create-idem1' });
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await countUsers('idem1@example.com')).toBe(1);
  });

  it('the same key with another body is 409 idempotency_key_reused and writes nothing', async () => {
    await svc.post('/v1/users', { email: 'idem2@example.com' }, { idempotencyKey: 'create-idem2' });
    const other = await svc.post('/v1/users', { email: 'idem3@example.com' }, { idempotencyKey: 'create-idem2' });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('idempotency_key_reused');
    expect(await countUsers('idem3@example.com')).toBe(0);
  });

  it('the same key on another path is a different request (409)', async () => {
    const u = await svc.post('/v1/users', { email: 'idem4@example.com' }, { idempotencyKey: 'shared-key' });
    const k = await svc.post(`/v1/users/${u.body.id}/api-keys`, { name: 'k' }, { idempotencyKey: 'shared-key' });
    expect(k.status).toBe(409);
    expect(k.body.error.code).toBe('idempotency_key_reused');
  });

  it('body key order does not matter: the request is compared by meaning', async () => {
    const a = await svc.post('/v1/users', { email: 'order@example.com', name: 'N' }, { idempotencyKey: 'order-key' });
    const b = await svc.post('/v1/users', { name: 'N', email: 'order@example.com' }, { idempotencyKey: 'order-key' });
    expect(b.status).toBe(201);
    expect(b.body.id).toBe(a.body.id);
  });

  it('concurrent requests with one key have one effect and all see the same answer', async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, () => svc.post('/v1/users', { email: 'concurrent@example.com' }, { idempotencyKey: 'concurrent-key' })),
    );
    expect(new Set(results.map((r) => r.status))).toEqual(new Set([201]));
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    expect(await countUsers('concurrent@example.com')).toBe(1);
  });

  it('a 4xx answer is replayed too, even after the conflict is gone', async () => {
    await svc.post('/v1/users', { email: 'taken@example.com' });
    const first = await svc.post('/v1/users', { id: 'custom-taken', email: 'taken@example.com' }, { idempotencyKey: 'err-key' });
    expect(first.status).toBe(409);
    const again = await svc.post('/v1/users', { id: 'custom-taken', email: 'taken@example.com' }, { idempotencyKey: 'err-key' });
    expect(again.status).toBe(409);
    expect(again.body).toEqual(first.body);
  });

  it('keys belong to their caller: two users may use the same key independently', async () => {
    const a = await signUp(app);
    const b = await signUp(app);
    const ka = await a.api.post(`/v1/users/${a.user.id}/api-keys`, { name: 'a' }, { idempotencyKey: 'my-key' });
    const kb = await b.api.post(`/v1/users/${b.user.id}/api-keys`, { name: 'b' }, { idempotencyKey: 'my-key' });
    expect(ka.status).toBe(201);
    expect(kb.status).toBe(201);
    expect(kb.body.id).not.toBe(ka.body.id);
    // An end user's replay returns their own first response.
    const again = await a.api.post(`/v1/users/${a.user.id}/api-keys`, { name: 'a' }, { idempotencyKey: 'my-key' });
    expect(again.body).toEqual(ka.body);
  });

  it('a malformed Idempotency-Key is a 400 and writes nothing', async () => {
    const res = await svc.post('/v1/users', { email: 'badkey@example.com' }, { idempotencyKey: 'x'.repeat(256) });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(await countUsers('badkey@example.com')).toBe(0);
  });
});
