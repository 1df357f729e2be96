import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEDGER_OPERATIONS } from '../src/modules/credits/credits.commands.js';
import { storedBody } from '../src/modules/credits/credits.stored-answers.js';
import { scopeOf } from '../src/modules/idempotency/idempotency.js';
import { idempotencyClaim, idempotencyComplete } from '../src/modules/idempotency/idempotency.repository.js';
import { legacyHashOf } from '../src/modules/idempotency/idempotency.legacy.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * One idempotency capability keyed by operation (issue 16): the routes, the SDK and the ledger's
 * batches build the same scope for the same request, a key answers one operation only, and records
 * made before migration 0017 (keyed by method and path) still replay.
 */
describe(`Idempotency keyed by operation (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  const key = () => `op-${randomBytes(8).toString('hex')}`;
  const available = async (userId: string) => (await svc.get(`/v1/users/${userId}/balance`)).body.available as number;
  const entries = async (userId: string) => ((await svc.get(`/v1/users/${userId}/transactions`)).body.data as unknown[]).length;
  const record = (k: string) =>
    app.database.db.selectFrom('idempotency_keys').select(['operation', 'method', 'path', 'status_code']).where('principal', '=', 'service').where('key', '=', k).executeTakeFirst();
  /** A record as Tally wrote them before 0017: method and path, no operation, the old request hash. */
  const legacyRecord = async (k: string, path: string, body: unknown, status: number, answer: unknown) => {
    const canonical = (v: unknown): string =>
      v === null || typeof v !== 'object'
        ? JSON.stringify(v)
        : Array.isArray(v)
          ? `[${v.map(canonical).join(',')}]`
          : `{${Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)).map(([x, y]) => `${JSON.stringify(x)}:${canonical(y)}`).join(',')}}`;
    const hash = createHash('sha256').update(`POST ${path}\n${canonical(body)}`).digest('hex');
    await app.database.db
      .insertInto('idempotency_keys')
      .values({ principal: 'service', key: k, user_id: null, method: 'POST', path, request_hash: hash, status_code: status, response_body: JSON.stringify(answer) })
      .execute();
    return hash;
  };

  beforeAll(async () => {
    app = await createTestApp();
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app.close();
  });

  it('a key answers one operation: the same key on another operation is refused (409), never replayed, and moves nothing', async () => {
    const u = await makeUser(app);
    const k = key();
    const body = { user_id: u.id, amount: 5, reason: 'op' };
    const grant = await svc.post('/v1/credits/grant', body, { idempotencyKey: k });
    expect(grant.status).toBe(201);
    expect(await record(k)).toMatchObject({ operation: 'credits.grant', method: null, path: null, status_code: 201 });
    const before = await available(u.id);
    const n = await entries(u.id);

    // The same key and body on other ledger operations (HTTP, the SDK, a hold), usage and a plain route.
    const debit = await svc.post('/v1/credits/debit', body, { idempotencyKey: k });
    expect(debit.status).toBe(409);
    expect(debit.body.error.code).toBe('idempotency_key_reused');
    await expect(app.services.sdk.credits.debit(body, { idempotencyKey: k })).rejects.toMatchObject({ code: 'idempotency_key_reused' });
    await expect(app.services.sdk.credits.hold({ user_id: u.id, amount: 5 }, { idempotencyKey: k })).rejects.toMatchObject({ code: 'idempotency_key_reused' });
    const event = await svc.post('/v1/events', { user_id: u.id, metric: 'none', quantity: 1, action_hash: k }, { idempotencyKey: k });
    expect(event.status).toBe(409);
    const user = await svc.post('/v1/users', { email: `${k}@example.com` }, { idempotencyKey: k });
    expect(user.status).toBe(409);

    expect(await available(u.id)).toBe(before);
    expect(await entries(u.id)).toBe(n);
    // The record still answers its own operation.
    const again = await svc.post('/v1/credits/grant', body, { idempotencyKey: k });
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toEqual(grant.body);
  });

  it('the same key and operation with another body is refused, over HTTP, through the SDK and inside one batch', async () => {
    const u = await makeUser(app);
    await svc.post('/v1/credits/grant', { user_id: u.id, amount: 100, reason: 'fund' }, { idempotencyKey: key() });
    const k = key();
    const first = await app.services.sdk.credits.debit({ user_id: u.id, amount: 10, reason: 'a' }, { idempotencyKey: k });
    const viaHttp = await svc.post('/v1/credits/debit', { user_id: u.id, amount: 11, reason: 'a' }, { idempotencyKey: k });
    expect(viaHttp.status).toBe(409);
    expect(viaHttp.body.error.code).toBe('idempotency_key_reused');
    await expect(app.services.sdk.credits.debit({ user_id: u.id, amount: 10, reason: 'b' }, { idempotencyKey: k })).rejects.toMatchObject({
      code: 'idempotency_key_reused',
    });
    // The same request through the other door replays.
    const replay = await svc.post('/v1/credits/debit', { user_id: u.id, amount: 10, reason: 'a' }, { idempotencyKey: k });
    expect(replay.status).toBe(201);
    expect(replay.body).toEqual(first);

    // Concurrent requests with one key land in one batch: one leads, the same request replays it, another is refused.
    const k2 = key();
    const before = await available(u.id);
    const results = await Promise.all([
      svc.post('/v1/credits/debit', { user_id: u.id, amount: 3, reason: 'c' }, { idempotencyKey: k2 }),
      svc.post('/v1/credits/debit', { user_id: u.id, amount: 3, reason: 'c' }, { idempotencyKey: k2 }),
      svc.post('/v1/credits/debit', { user_id: u.id, amount: 4, reason: 'c' }, { idempotencyKey: k2 }),
    ]);
    // Whichever request led, the one debit it made is every 201's answer; the others are refused.
    const ok = results.filter((r) => r.status === 201);
    const moved = ok[0]?.body.transaction.amount as number;
    expect(ok.length).toBe(moved === -3 || moved === 3 ? 2 : 1);
    for (const r of ok) expect(r.body).toEqual(ok[0]?.body);
    for (const r of results.filter((x) => x.status !== 201)) expect(r.body.error.code).toBe('idempotency_key_reused');
    expect(before - (await available(u.id))).toBe(Math.abs(moved));
  });

  it('the batched form and the single form agree: a record made by one is replayed (or refused) by the other', async () => {
    const u = await makeUser(app);
    await svc.post('/v1/credits/grant', { user_id: u.id, amount: 50, reason: 'fund' }, { idempotencyKey: key() });

    // Batched (the ledger, through the SDK) → single (claim in a transaction, as the routes do).
    const k1 = key();
    const body1 = { user_id: u.id, amount: 7, reason: 'batched' };
    const moved = await app.services.sdk.credits.debit(body1, { idempotencyKey: k1 });
    const same = scopeOf(LEDGER_OPERATIONS.debit, { principal: 'service' }, k1, { body: body1 });
    const claim = await idempotencyClaim(app.database.db, same);
    // The ledger stores a movement compact (docs/ledger.md, "Speed"): the record the single form
    // finds is that one, and with its ledger row it is exactly the batched answer.
    if (claim.kind !== 'replay') throw new Error(`expected a replay, got ${claim.kind}`);
    expect(claim.response.status).toBe(201);
    const text = JSON.stringify(claim.response.body);
    const entry = await app.database.db.selectFrom('credit_ledger').selectAll().where('id', '=', moved.transaction.id).executeTakeFirstOrThrow();
    expect(storedBody(text, entry)).toEqual(moved);
    const other = scopeOf(LEDGER_OPERATIONS.debit, { principal: 'service' }, k1, { body: { ...body1, amount: 8 } });
    expect(await idempotencyClaim(app.database.db, other)).toEqual({ kind: 'mismatch' });
    const otherOperation = scopeOf(LEDGER_OPERATIONS.grant, { principal: 'service' }, k1, { body: body1 });
    expect(await idempotencyClaim(app.database.db, otherOperation)).toEqual({ kind: 'mismatch' });

    // Single → batched: a record made by the single form is what the ledger answers, and nothing moves.
    const k2 = key();
    const body2 = { user_id: u.id, amount: 9, reason: 'single' };
    const scope = scopeOf(LEDGER_OPERATIONS.debit, { principal: 'service' }, k2, { body: body2 });
    // A real answer (the response schema must hold), of another request: the replay is the record's.
    const stored = (await svc.post('/v1/credits/debit', { user_id: u.id, amount: 1, reason: 'other' }, { idempotencyKey: key() })).body;
    await app.database.db.transaction().execute(async (trx) => {
      expect(await idempotencyClaim(trx, scope)).toEqual({ kind: 'claimed' });
      await idempotencyComplete(trx, scope, { status: 201, body: stored });
    });
    const before = await available(u.id);
    const replay = await svc.post('/v1/credits/debit', body2, { idempotencyKey: k2 });
    expect(replay.status).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toEqual(stored);
    expect(await app.services.sdk.credits.debit(body2, { idempotencyKey: k2 })).toEqual(stored);
    expect((await svc.post('/v1/credits/debit', { ...body2, amount: 1 }, { idempotencyKey: k2 })).status).toBe(409);
    expect(await available(u.id)).toBe(before);
  });

  it('records made before 0017 (method and path, no operation) still replay to the same request and refuse another', async () => {
    const u = await makeUser(app);
    await svc.post('/v1/credits/grant', { user_id: u.id, amount: 40, reason: 'fund' }, { idempotencyKey: key() });
    // A real answer (the response schema must hold), of another request: the replay is the record's.
    const answer1 = (await svc.post('/v1/credits/debit', { user_id: u.id, amount: 1, reason: 'an earlier one' }, { idempotencyKey: key() })).body;
    const before = await available(u.id);
    const n = await entries(u.id);

    // A money route (the ledger's batched form).
    const k1 = key();
    const body1 = { user_id: u.id, amount: 6, reason: 'legacy' };
    const hash = await legacyRecord(k1, '/v1/credits/debit', body1, 201, answer1);
    expect(legacyHashOf(LEDGER_OPERATIONS.debit.legacyPath ?? '', {}, body1)).toBe(hash);
    const r1 = await svc.post('/v1/credits/debit', body1, { idempotencyKey: k1 });
    expect(r1.status).toBe(201);
    expect(r1.headers['idempotent-replayed']).toBe('true');
    expect(r1.body).toEqual(answer1);
    expect(await app.services.sdk.credits.debit(body1, { idempotencyKey: k1 })).toEqual(answer1);
    expect((await svc.post('/v1/credits/debit', { ...body1, amount: 7 }, { idempotencyKey: k1 })).status).toBe(409);
    expect((await svc.post('/v1/credits/grant', body1, { idempotencyKey: k1 })).status).toBe(409);

    expect(await available(u.id)).toBe(before);
    expect(await entries(u.id)).toBe(n);

    // An operation with a parameter (a hold's id) maps its old path; a stored refusal replays as that refusal.
    const hold = await svc.post('/v1/holds', { user_id: u.id, amount: 5 }, { idempotencyKey: key() });
    expect(hold.status).toBe(201);
    const holdId = hold.body.id as string;
    const k2 = key();
    const answer2 = { error: { code: 'invalid_state', message: 'refused long ago', request_id: 'req_old' } };
    await legacyRecord(k2, `/v1/holds/${holdId}/capture`, { amount: 2 }, 409, answer2);
    const r2 = await svc.post(`/v1/holds/${holdId}/capture`, { amount: 2 }, { idempotencyKey: k2 });
    expect(r2.status).toBe(409);
    expect(r2.body).toEqual(answer2);
    await expect(app.services.sdk.credits.capture(holdId, { amount: 2 }, { idempotencyKey: k2 })).rejects.toMatchObject({
      code: 'invalid_state',
      message: 'refused long ago',
    });
    expect((await svc.get(`/v1/holds/${holdId}`)).body.status).toBe('held');
    const before2 = await available(u.id);
    const n2 = await entries(u.id);

    // A plain route (the single form, in the request's transaction).
    const k3 = key();
    const answer3 = (await svc.post('/v1/users', { email: `${k3}@example.com` })).body;
    await legacyRecord(k3, '/v1/users', { email: 'legacy@example.com' }, 201, answer3);
    const r3 = await svc.post('/v1/users', { email: 'legacy@example.com' }, { idempotencyKey: k3 });
    expect(r3.status).toBe(201);
    expect(r3.headers['idempotent-replayed']).toBe('true');
    expect(r3.body).toEqual(answer3);
    expect((await svc.post('/v1/users', { email: 'legacy2@example.com' }, { idempotencyKey: k3 })).status).toBe(409);

    expect(await available(u.id)).toBe(before2);
    expect(await entries(u.id)).toBe(n2);
  });

  it('payments and jobs name their operations; their old paths give the hashes their records were made with', () => {
    const old = (path: string, body: unknown) =>
      createHash('sha256').update(`POST ${path}\n${JSON.stringify(body)}`).digest('hex');
    // Bodies with keys already in canonical (sorted) order, so JSON.stringify is the canonical form.
    expect(legacyHashOf('/internal/payments/grant', {}, { credits: 5, payment_id: 'pay_1' })).toBe(old('/internal/payments/grant', { credits: 5, payment_id: 'pay_1' }));
    expect(legacyHashOf('/v1/jobs/:id/settle', { id: 'job_1' }, { hold_id: 'hold_1', kind: 'release' })).toBe(old('/v1/jobs/job_1/settle', { hold_id: 'hold_1', kind: 'release' }));
    expect(() => legacyHashOf('/v1/jobs/:id', {}, {})).toThrow(/no parameter "id"/);
  });
});
