import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TallyError } from '../src/sdk/credits.sdk.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

describe(`in-process SDK (${TARGET})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });
  const key = () => randomBytes(8).toString('hex');

  it('each money call answers what the HTTP route answers', async () => {
    const sdk = app.services.sdk.credits;
    const u = await makeUser(app);
    const g = await sdk.grant({ user_id: u.id, amount: 50, reason: 'sdk grant' }, { idempotencyKey: key() });
    expect(g.transaction).toMatchObject({ type: 'grant', amount: 50, balance_after: 53 });
    const d = await sdk.debit({ user_id: u.id, amount: 20, reason: 'sdk debit' }, { idempotencyKey: key() });
    expect(d.balance.available).toBe(33);
    const r = await sdk.refund({ user_id: u.id, amount: 5, reason: 'sdk refund', transaction_id: d.transaction.id }, { idempotencyKey: key() });
    expect(r.transaction.balance_after).toBe(38);
    const a = await sdk.adjust({ user_id: u.id, amount: -8, reason: 'sdk adjust' }, { idempotencyKey: key() });
    expect(a.balance.balance).toBe(30);
    const h = await sdk.hold({ user_id: u.id, amount: 10 }, { idempotencyKey: key() });
    expect((await sdk.capture(h.id, { amount: 4 }, { idempotencyKey: key() })).captured).toBe(4);
    const h2 = await sdk.hold({ user_id: u.id, amount: 10 }, { idempotencyKey: key() });
    expect((await sdk.release(h2.id, { idempotencyKey: key() })).status).toBe('released');
    const http = await client(app.server, app.serviceKey).get(`/v1/users/${u.id}/balance`);
    expect(http.body).toMatchObject({ balance: 26, held: 0 });
  });

  it('an Idempotency-Key is one key across the SDK and HTTP', async () => {
    const u = await makeUser(app);
    const k = key();
    const body = { user_id: u.id, amount: 7, reason: 'shared key' };
    const viaSdk = await app.services.sdk.credits.grant(body, { idempotencyKey: k });
    const viaHttp = await client(app.server, app.serviceKey).post('/v1/credits/grant', body, { idempotencyKey: k });
    expect(viaHttp.status).toBe(201);
    expect(viaHttp.body).toEqual(viaSdk);
    expect(viaHttp.headers['idempotent-replayed']).toBe('true');
  });

  it('bad input is refused with the same catalogue codes, and nothing moves', async () => {
    const sdk = app.services.sdk.credits;
    const u = await makeUser(app);
    const cases: [unknown, string][] = [
      [{ user_id: u.id, amount: '10', reason: 'x' }, 'invalid_request'],
      [{ user_id: u.id, amount: 0, reason: 'x' }, 'invalid_request'],
      [{ user_id: u.id, amount: 1.5, reason: 'x' }, 'invalid_request'],
      [{ user_id: u.id, amount: 10, reason: 'x', extra: true }, 'invalid_request'],
      [{ user_id: 'usr_missing', amount: 1, reason: 'x' }, 'not_found'],
      [{ user_id: u.id, amount: 100, reason: 'x' }, 'insufficient_credits'],
    ];
    for (const [body, code] of cases) {
      const err = await sdk.debit(body as never, { idempotencyKey: key() }).catch((e: unknown) => e);
      expect(err, JSON.stringify(body)).toBeInstanceOf(TallyError);
      expect((err as TallyError).code, JSON.stringify(body)).toBe(code);
    }
    const missingKey = await sdk.debit({ user_id: u.id, amount: 1, reason: 'x' }, { idempotencyKey: '' }).catch((e: unknown) => e);
    expect((missingKey as TallyError).code).toBe('invalid_request');
    const b = await client(app.server, app.serviceKey).get(`/v1/users/${u.id}/balance`);
    expect(b.body.balance).toBe(3);
  });
});
