import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * Compact stored answers (issue 21, docs/ledger.md "Speed"): a movement's idempotency record keeps
 * only what its ledger row cannot give back, and a replay rebuilds the answer — byte for byte the
 * first one, whatever happened to the account since, over HTTP and in process.
 */
describe(`compact stored movements (${TARGET})`, () => {
  let app: TestApp;
  const key = () => `cmp-${randomBytes(8).toString('hex')}`;
  const post = (url: string, payload: Record<string, unknown>, k: string) =>
    app.server.inject({ method: 'POST', url, headers: { authorization: `Bearer ${app.serviceKey}`, 'idempotency-key': k }, payload });
  const stored = async (k: string) =>
    (await app.database.db.selectFrom('idempotency_keys').select(['response_body', 'status_code']).where('principal', '=', 'service').where('key', '=', k).executeTakeFirstOrThrow());

  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(() => app.close());

  it('grant, debit (with and without metadata), adjust and refund replay the very bytes of their first answer, after the account moved on', async () => {
    const u = await makeUser(app);
    // Keys out of order and nested: jsonb would reorder them, the replay must not.
    const metadata = { zeta: 1, alpha: { y: [3, 'x'], b: null }, 'ü é': 'ünïcode "quoted"' };
    const first = [
      { url: '/v1/credits/grant', body: { user_id: u.id, amount: 500, reason: 'grant', metadata }, k: key() },
      { url: '/v1/credits/grant', body: { user_id: u.id, amount: 70, reason: 'promo', class: 'promo', expires_at: '2099-01-02T03:04:05.678Z', priority: 5 }, k: key() },
      { url: '/v1/credits/debit', body: { user_id: u.id, amount: 120, reason: 'plain debit' }, k: key() },
      { url: '/v1/credits/debit', body: { user_id: u.id, amount: 3, reason: 'debit with metadata', metadata }, k: key() },
      { url: '/v1/credits/adjust', body: { user_id: u.id, amount: -4, reason: 'adjust' }, k: key() },
    ];
    const answers: string[] = [];
    for (const f of first) {
      const res = await post(f.url, f.body, f.k);
      expect(res.statusCode, res.body).toBe(201);
      answers.push(res.body);
    }
    const debitId = (JSON.parse(must(answers[2])) as { transaction: { id: string } }).transaction.id;
    const refund = { url: '/v1/credits/refund', body: { user_id: u.id, amount: 20, reason: 'refund', transaction_id: debitId }, k: key() };
    const refunded = await post(refund.url, refund.body, refund.k);
    expect(refunded.statusCode, refunded.body).toBe(201);
    first.push(refund);
    answers.push(refunded.body);

    // Every record is compact and far smaller than the answer it stands for.
    for (const [i, f] of first.entries()) {
      const record = await stored(f.k);
      expect(record.status_code).toBe(201);
      expect(record.response_body?.startsWith('{"$m":"')).toBe(true);
      expect(must(record.response_body).length).toBeLessThan(must(answers[i]).length / 2);
    }

    // The account moves on; each replay is still its first answer, byte for byte.
    expect((await post('/v1/credits/debit', { user_id: u.id, amount: 9, reason: 'later' }, key())).statusCode).toBe(201);
    for (const [i, f] of first.entries()) {
      const replay = await post(f.url, f.body, f.k);
      expect(replay.statusCode).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.body).toBe(answers[i]);
    }
  });

  it('replays of many keys at once (one batch) and in process give back the first answers', async () => {
    const u = await makeUser(app);
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 1000, reason: 'fund' }, key())).statusCode).toBe(201);
    const keys = Array.from({ length: 20 }, key);
    const body = (i: number) => ({ user_id: u.id, amount: i + 1, reason: `parallel ${i}`, ...(i % 2 ? { metadata: { i, odd: true } } : {}) });
    const firsts = await Promise.all(keys.map((k, i) => post('/v1/credits/debit', body(i), k)));
    expect(firsts.map((r) => r.statusCode)).toEqual(keys.map(() => 201));
    const replays = await Promise.all(keys.map((k, i) => post('/v1/credits/debit', body(i), k)));
    expect(replays.map((r) => r.body)).toEqual(firsts.map((r) => r.body));

    const sdk = app.services.sdk.credits;
    const k = key();
    const original = await sdk.debit({ user_id: u.id, amount: 2, reason: 'sdk', metadata: { b: 1, a: 2 } }, { idempotencyKey: k });
    const again = await sdk.debit({ user_id: u.id, amount: 2, reason: 'sdk', metadata: { b: 1, a: 2 } }, { idempotencyKey: k });
    expect(JSON.stringify(again)).toBe(JSON.stringify(original));
  });

  it('a refusal and a hold are stored whole, and replay as before', async () => {
    const u = await makeUser(app);
    const k = key();
    const refused = await post('/v1/credits/debit', { user_id: u.id, amount: 5, reason: 'broke' }, k);
    expect(refused.statusCode).toBe(402);
    expect((await stored(k)).response_body?.startsWith('{"error"')).toBe(true);
    const replay = await post('/v1/credits/debit', { user_id: u.id, amount: 5, reason: 'broke' }, k);
    expect(replay.statusCode).toBe(402);
    expect(replay.body).toBe(refused.body);

    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'fund' }, key())).statusCode).toBe(201);
    const hk = key();
    const hold = await post('/v1/holds', { user_id: u.id, amount: 4 }, hk);
    expect(hold.statusCode).toBe(201);
    expect((await stored(hk)).response_body?.startsWith('{"$m"')).toBe(false);
    expect((await post('/v1/holds', { user_id: u.id, amount: 4 }, hk)).body).toBe(hold.body);
  });
});

function must<T>(v: T | undefined | null): T {
  if (v === undefined || v === null) throw new Error('missing');
  return v;
}
