import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCOPES } from '../src/modules/api-keys/api-keys.scopes.js';
import { client } from './support/client.js';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, balanceOf, fundedKey, type GatewayWorld, gatewayWorld, micros, priceModel, settledRecord } from './support/gateway-fixture.js';

/**
 * The OpenAI-compatible relay, driven by the official `openai` package against a fake provider:
 * hold before the call, capture the provider's own usage exactly once, errors in OpenAI's format.
 */
describe(`gateway: OpenAI chat completions, JSON (${TARGET})`, () => {
  let w: GatewayWorld;
  let upstream: { id: string; credential: string };
  const openai = (apiKey: string) => new OpenAI({ baseURL: `${w.base}/gateway/v1`, apiKey, maxRetries: 0 });

  beforeAll(async () => {
    w = await gatewayWorld();
    await priceModel(w, 'fake-gpt');
    upstream = await addUpstream(w, 'openai', { models: ['fake-*'] });
  });
  afterAll(async () => {
    await w.close();
  });

  it('a completion is charged exactly what the provider reported, once, and the hold is gone', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    const before = w.fake.bill(upstream.credential);
    const res = await openai(key)
      .chat.completions.create({ model: 'fake-gpt', messages: [{ role: 'user', content: 'one two three four' }], max_tokens: 16 })
      .withResponse();
    expect(res.data.choices[0]?.message.content).toBe('w1 w2 w3 w4 w5');
    expect(res.data.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 5 });
    const requestId = res.response.headers.get('x-request-id') as string;
    expect(requestId).toMatch(/^req_/);
    const rec = await settledRecord(w, requestId);
    const after = w.fake.bill(upstream.credential);
    expect(after.input - before.input).toBe(4);
    expect(after.output - before.output).toBe(5);
    // 4 × 0.25 + 5 × 1 = 6 credits exactly.
    expect(rec).toMatchObject({ status: 'completed', usage_source: 'provider', cost_micros: micros(4, 5), charged: 6, upstream_id: upstream.id, attempts: 1, model: 'fake-gpt', endpoint: 'chat.completions' });
    expect(rec.tokens).toMatchObject({ input: 4, output: 5 });
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 6, held: 0 });
  });

  it('fractions of a credit carry per account: many small requests charge floor(exact total)', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    let exact = 0;
    for (let i = 0; i < 6; i++) {
      // 1 input word (0.25) + 1 output word (1) = 1.25 credits each.
      const r = await openai(key).chat.completions.create({ model: 'fake-gpt', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }).withResponse();
      await settledRecord(w, r.response.headers.get('x-request-id') as string);
      exact += micros(1, 1);
    }
    expect(exact).toBe(7_500_000);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 7, held: 0 });
  });

  it('GET /models lists only priced models an upstream serves', async () => {
    const { key } = await fundedKey(w, 0);
    await priceModel(w, 'unserved-model');
    const list = await openai(key).models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids).toContain('fake-gpt');
    expect(ids).not.toContain('unserved-model');
  });

  it('not enough credits: 402 in OpenAI format, and nothing is sent upstream', async () => {
    const { userId, key } = await fundedKey(w, 0); // 3 credits (sign-up bonus)
    const hits = w.fake.hits(upstream.credential);
    const err = await openai(key)
      .chat.completions.create({ model: 'fake-gpt', messages: [{ role: 'user', content: 'hello' }], max_tokens: 100 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(402);
    expect(await allSettled(w, userId)).toEqual([]);
    expect((err as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ type: 'insufficient_quota', code: 'insufficient_credits' });
    expect(w.fake.hits(upstream.credential)).toBe(hits);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 3, held: 0 });
  });

  it('a bad, revoked or missing key is 401 and an unpriced model is 400, in OpenAI format (typed errors)', async () => {
    await expect(openai('tly_nope').chat.completions.create({ model: 'fake-gpt', messages: [] })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(openai(w.app.serviceKey).chat.completions.create({ model: 'fake-gpt', messages: [] })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const { key } = await fundedKey(w, 10);
    await expect(openai(key).chat.completions.create({ model: 'fake-free', messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('a key without the gateway scope may not spend through the gateway (403 in OpenAI format, nothing held or sent)', async () => {
    const { userId } = await fundedKey(w, 10);
    // Every scope but `gateway` (and `*`): a key made for the rest of the API.
    const others = SCOPES.filter((s) => s !== '*' && s !== 'gateway');
    const narrow = await w.svc.post(`/v1/users/${userId}/api-keys`, { name: 'narrow', scopes: others });
    expect(narrow.status).toBe(201);
    const hits = w.fake.hits(upstream.credential);
    const err = await openai(narrow.body.key).chat.completions.create({ model: 'fake-gpt', messages: [{ role: 'user', content: 'hi' }], stream: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((err as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ type: 'permission_error', code: 'forbidden', message: expect.stringContaining('"gateway" scope') });
    await expect(openai(narrow.body.key).models.list()).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(w.fake.hits(upstream.credential)).toBe(hits);
    expect(await allSettled(w, userId)).toEqual([]);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 13, held: 0 });
  });

  it('a key with only the gateway scope spends through the gateway and reaches nothing else that needs a scope', async () => {
    const { userId } = await fundedKey(w, 100);
    const gw = await w.svc.post(`/v1/users/${userId}/api-keys`, { name: 'gateway only', scopes: ['gateway'] });
    expect(gw.status).toBe(201);
    expect(gw.body.scopes).toEqual(['gateway']);
    const res = await openai(gw.body.key).chat.completions.create({ model: 'fake-gpt', messages: [{ role: 'user', content: 'one two three four' }], max_tokens: 16 }).withResponse();
    expect(await settledRecord(w, res.response.headers.get('x-request-id') as string)).toMatchObject({ status: 'completed', charged: 6 });
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 103 - 6, held: 0 });
    expect((await client(w.app.server, gw.body.key).get(`/v1/users/${userId}/balance`)).status).toBe(403);
  });

  it('the upstream refusing the request (400) is passed through and costs nothing', async () => {
    const { userId, key } = await fundedKey(w, 100);
    const bad = await addUpstream(w, 'openai', { models: ['refusing-model'] });
    await priceModel(w, 'refusing-model');
    w.fake.behave(bad.credential, { status: 400 });
    const err = await openai(key).chat.completions.create({ model: 'refusing-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(await allSettled(w, userId)).toMatchObject([{ status: 'failed', charged: 0, cost_micros: 0 }]);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 103, held: 0 });
  });

  it('an Idempotency-Key replays the answer and charges once', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    const body = { model: 'fake-gpt', messages: [{ role: 'user' as const, content: 'a b' }], max_tokens: 3 };
    const opts = { headers: { 'Idempotency-Key': 'same-key-1' } };
    const a = await openai(key).chat.completions.create(body, opts).withResponse();
    await settledRecord(w, a.response.headers.get('x-request-id') as string);
    const b = await openai(key).chat.completions.create(body, opts).withResponse();
    expect(b.response.headers.get('idempotent-replayed')).toBe('true');
    expect(b.data).toEqual(a.data);
    // 2 × 0.25 + 3 × 1 = 3.5 → 3 charged, 0.5 carried.
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 3, held: 0 });
    const other = await openai(key).chat.completions.create({ ...body, max_tokens: 4 }, opts).catch((e: unknown) => e);
    expect(other).toBeInstanceOf(OpenAI.ConflictError);
  });

  it("a workspace key spends from the workspace's pool, not from its user's balance", async () => {
    const { userId, key, keyId } = await fundedKey(w, 50);
    const ws = await w.svc.post('/v1/workspaces', { name: 'gw pool', owner_id: userId });
    expect(ws.status).toBe(201);
    const g = await w.svc.post('/v1/credits/grant', { workspace_id: ws.body.id, amount: 500, reason: 'pool' }, { idempotencyKey: `wsg-${keyId}` });
    expect(g.status).toBe(201);
    // The API does not issue workspace keys yet: the column is set directly, as a future route would.
    await w.app.database.db.updateTable('api_keys').set({ workspace_id: ws.body.id }).where('id', '=', keyId).execute();
    const res = await openai(key).chat.completions.create({ model: 'fake-gpt', messages: [{ role: 'user', content: 'one two three four' }], max_tokens: 16 }).withResponse();
    const rec = await settledRecord(w, res.response.headers.get('x-request-id') as string);
    expect(rec).toMatchObject({ workspace_id: ws.body.id, charged: 6 });
    expect((await w.svc.get(`/v1/workspaces/${ws.body.id}/balance`)).body).toMatchObject({ balance: 494, held: 0 });
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 53, held: 0 });
    // The pool's capture names the key's user as the member who spent (docs/ledger.md, "Workspace pools").
    const entries = (await w.svc.get(`/v1/workspaces/${ws.body.id}/transactions?type=capture`)).body.data;
    expect(entries).toMatchObject([{ amount: -6, member_id: userId }]);

    // A viewer's workspace key never spends the pool: refused before any upstream call, nothing held.
    const viewer = await fundedKey(w, 50);
    expect((await w.svc.post(`/v1/workspaces/${ws.body.id}/members`, { user_id: viewer.userId, role: 'viewer' })).status).toBe(201);
    await w.app.database.db.updateTable('api_keys').set({ workspace_id: ws.body.id }).where('id', '=', viewer.keyId).execute();
    const refused = await openai(viewer.key).chat.completions.create({ model: 'fake-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((await w.svc.get(`/v1/workspaces/${ws.body.id}/balance`)).body).toMatchObject({ balance: 494, held: 0 });
  });

  it('embeddings are priced on input tokens', async () => {
    const { userId, key } = await fundedKey(w, 100);
    const res = await openai(key).embeddings.create({ model: 'fake-gpt', input: 'one two three four five six seven eight' }).withResponse();
    const rec = await settledRecord(w, res.response.headers.get('x-request-id') as string);
    expect(rec).toMatchObject({ endpoint: 'embeddings', cost_micros: micros(8, 0), charged: 2, usage_source: 'provider' });
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 101, held: 0 });
  });
  it('reconcile is clean: ledger and gateway invariants (carries, captures) hold after everything above', async () => {
    const res = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(res.status).toBe(200);
    expect(res.body.drift).toEqual([]);
    expect(res.body.ok).toBe(true);
    // And it sees a carry that drifted from the records (one micro-credit is enough).
    const carry = await w.app.database.db.selectFrom('gateway_carries').select(['account_id', 'total_micros']).executeTakeFirstOrThrow();
    await w.app.database.db.updateTable('gateway_carries').set({ total_micros: Number(carry.total_micros) + 1 }).where('account_id', '=', carry.account_id).execute();
    const drifted = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(drifted.body.ok).toBe(false);
    expect(drifted.body.drift).toContainEqual(expect.objectContaining({ account_id: carry.account_id, check: 'gateway: total_micros = sum(cost_micros)' }));
    await w.app.database.db.updateTable('gateway_carries').set({ total_micros: carry.total_micros }).where('account_id', '=', carry.account_id).execute();
  });
});
