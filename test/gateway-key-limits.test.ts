import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeApiKey, signUp } from './support/fixtures.js';
import { TARGET } from './support/harness.js';
import { DEFAULT_GATEWAY } from '../src/config/config.js';
import { reapStale } from '../src/modules/gateway/gateway.relay.service.js';
import { addUpstream, allSettled, type GatewayWorld, gatewayWorld, micros, priceModel, settledRecord } from './support/gateway-fixture.js';

/**
 * Per-key gateway limits (issue 14, docs/gateway.md "Key limits"): a model allow-list, requests and
 * tokens per minute on a sliding window, requests in flight, and a credit budget — each checked
 * under the key's row lock before anything is held or sent upstream. And the hold bounds what a
 * provider can bill: answers (`n`), media parts, the output limit sent upstream (attacker review R1).
 */
describe(`gateway: per-key limits (${TARGET})`, () => {
  let w: GatewayWorld;
  let upstream: { id: string; credential: string };
  // The relay's clock: real time plus an offset the rate-limit tests set.
  let offset = 0;
  const MINUTE = 60_000;
  /** Sets the clock to `second` seconds into the `minute`-th minute after a fixed base. */
  let base = 0;
  const at = (minute: number, second: number) => {
    offset = base + minute * MINUTE + second * 1000 - Date.now();
  };

  const openai = (apiKey: string) => new OpenAI({ baseURL: `${w.base}/gateway/v1`, apiKey, maxRetries: 0 });
  const chat = (key: string, body: Record<string, unknown> = {}) =>
    fetch(`${w.base}/gateway/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'lim-gpt', messages: [{ role: 'user', content: 'x' }], max_tokens: 2, ...body }),
    });

  /** Resolves once `n` of the requests have answered (the refused ones answer while the rest wait at the gate). */
  async function answered(all: Promise<Response>[], n: number): Promise<void> {
    let done = 0;
    for (const p of all) void p.then(() => done++);
    for (let i = 0; i < 600 && done < n; i++) await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(n);
  }

  /** A funded user and a key with these limits (created by the service). */
  async function limitedKey(limits: Record<string, unknown>, credits = 20_000) {
    const u = await signUp(w.app);
    expect((await w.svc.post('/v1/credits/grant', { user_id: u.user.id, amount: credits, reason: 'limits' }, { idempotencyKey: `g-${randomBytes(6).toString('hex')}` })).status).toBe(201);
    const key = await makeApiKey(w.app, u.user.id, { name: 'limited', ...limits });
    return { ...u, key: key.key, keyId: key.id };
  }

  beforeAll(async () => {
    // A short lease, so one stream outlives many of them (review R4).
    w = await gatewayWorld({ gateway: { ...DEFAULT_GATEWAY, leaseMs: 300 } }, { clock: () => new Date(Date.now() + offset) });
    await priceModel(w, 'lim-gpt');
    await priceModel(w, 'other-gpt');
    await priceModel(w, 'img-gpt', { max_tokens_per_image: 1000, max_output_tokens: 50 });
    upstream = await addUpstream(w, 'openai', { models: ['lim-*', 'other-*', 'img-*'] });
    base = Math.ceil(Date.now() / MINUTE) * MINUTE + 10 * MINUTE;
  });
  afterAll(async () => {
    await w.close();
  });

  it('model allow-list: another model → 403 in OpenAI format (the client raises PermissionDeniedError), nothing held or sent; /models lists only allowed', async () => {
    const k = await limitedKey({ models: ['lim-*'] });
    const hits = w.fake.hits(upstream.credential);
    const err = await openai(k.key)
      .chat.completions.create({ model: 'other-gpt', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(w.fake.hits(upstream.credential)).toBe(hits);
    expect(await allSettled(w, k.user.id)).toHaveLength(0);
    expect((await openai(k.key).chat.completions.create({ model: 'lim-gpt', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 })).choices).toHaveLength(1);
    const ids = (await openai(k.key).models.list()).data.map((m) => m.id);
    expect(ids).toContain('lim-gpt');
    expect(ids).not.toContain('other-gpt');
  });

  it('RPM on a sliding window: the limit holds across a minute boundary (no double burst) and frees up as the last minute fades', async () => {
    const k = await limitedKey({ rpm_limit: 3 });
    at(0, 1);
    for (let i = 0; i < 3; i++) {
      const r = await chat(k.key);
      expect(r.status, await r.clone().text()).toBe(200);
    }
    const refused = await chat(k.key);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await refused.json()) as { error: { type: string } }).error.type).toBe('rate_limit_error');
    // One second into the next minute the last one still counts almost whole: 3 × 59/60 + 1 > 3.
    at(1, 1);
    expect((await chat(k.key)).status).toBe(429);
    // Half-way: 3 × 1/2 + 1 ≤ 3 → admitted; then 1.5 + 1 + 1 > 3 → refused.
    at(1, 30);
    expect((await chat(k.key)).status).toBe(200);
    at(1, 31);
    expect((await chat(k.key)).status).toBe(429);
    // Refusals are not counted: two minutes on, the key starts afresh.
    at(3, 1);
    expect((await chat(k.key)).status).toBe(200);
    const recs = await allSettled(w, k.user.id);
    expect(recs).toHaveLength(5);
  });

  it('TPM: a request bigger than the limit → 400; concurrent requests reserve their bound, and settlement trues the window up to the real tokens', async () => {
    // Each request reserves ⌈bytes/4⌉ + max_tokens ≈ 20 + 40 = 60 tokens, and really uses 1 + 5 = 6.
    const k = await limitedKey({ tpm_limit: 100 });
    at(5, 1);
    const big = await chat(k.key, { max_tokens: 500 });
    expect(big.status).toBe(400);
    // Two at once: the first one's reservation stands while it runs, so the second is refused.
    let open: () => void = () => {};
    w.fake.behave(upstream.credential, { gate: new Promise<void>((r) => (open = r)) });
    const hits = w.fake.hits(upstream.credential);
    const first = chat(k.key, { max_tokens: 40 });
    for (let i = 0; i < 600 && w.fake.hits(upstream.credential) === hits; i++) await new Promise((r) => setTimeout(r, 20));
    const second = await chat(k.key, { max_tokens: 40 });
    expect(second.status).toBe(429);
    w.fake.behave(upstream.credential, {});
    open();
    const done = await first;
    expect(done.status).toBe(200);
    await settledRecord(w, done.headers.get('x-request-id') as string);
    // Trued up to 6 tokens: two more sequential requests fit (6 + 60 ≤ 100, 12 + 60 ≤ 100).
    at(5, 2);
    for (let i = 0; i < 2; i++) {
      const r = await chat(k.key, { max_tokens: 40 });
      expect(r.status).toBe(200);
      await settledRecord(w, r.headers.get('x-request-id') as string);
    }
  });

  it('max concurrency: of 6 requests at once exactly 2 reach the upstream, the rest → 429; once they finish the key is free again', async () => {
    const k = await limitedKey({ max_concurrency: 2 });
    const cred = (await addUpstream(w, 'openai', { models: ['conc-gpt'] })).credential;
    await priceModel(w, 'conc-gpt');
    let open: () => void = () => {};
    w.fake.behave(cred, { gate: new Promise<void>((r) => (open = r)) });
    const all = Array.from({ length: 6 }, () => chat(k.key, { model: 'conc-gpt' }));
    // The refused ones answer; the admitted ones wait at the gate.
    await answered(all, 4);
    await new Promise((r) => setTimeout(r, 200));
    expect(w.fake.hits(cred)).toBe(2);
    open();
    const statuses = (await Promise.all(all)).map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 429, 429, 429, 429]);
    await allSettled(w, k.user.id);
    w.fake.behave(cred, {});
    expect((await chat(k.key, { model: 'conc-gpt' })).status).toBe(200);
  });

  it('credit budget: 20 requests at once on a budget admit exactly ⌊budget ÷ hold⌋; spend is counted on the key; past the budget → 402', async () => {
    const probe = await limitedKey({});
    const p = await chat(probe.key);
    const held = (await settledRecord(w, p.headers.get('x-request-id') as string)).held as number;
    expect(held).toBeGreaterThan(1);
    const budget = 3 * held + Math.floor(held / 2);
    const k = await limitedKey({ credit_budget: budget });
    const cred = (await addUpstream(w, 'openai', { models: ['budget-gpt'] })).credential;
    await priceModel(w, 'budget-gpt');
    let open: () => void = () => {};
    w.fake.behave(cred, { gate: new Promise<void>((r) => (open = r)) });
    // The same body as the probe (same bytes → same hold).
    const all = Array.from({ length: 20 }, () => chat(k.key, { model: 'budget-gpt' }));
    await answered(all, 17);
    await new Promise((r) => setTimeout(r, 200));
    expect(w.fake.hits(cred)).toBe(3);
    open();
    const res = await Promise.all(all);
    expect(res.filter((r) => r.status === 200)).toHaveLength(3);
    const refused = res.filter((r) => r.status !== 200);
    expect(new Set(refused.map((r) => r.status))).toEqual(new Set([402]));
    const recs = await allSettled(w, k.user.id);
    const charged = recs.reduce((n, r) => n + r.charged, 0);
    const keyRow = (await w.svc.get(`/v1/users/${k.user.id}/api-keys`)).body.data[0];
    expect(keyRow).toMatchObject({ credit_budget: budget, credits_used: charged });
    // Spend is far below the holds: more requests fit until used + hold passes the budget.
    w.fake.behave(cred, {});
    let admitted = 0;
    for (let i = 0; i < 100; i++) {
      const r = await chat(k.key, { model: 'budget-gpt' });
      if (r.status !== 200) {
        expect(r.status).toBe(402);
        break;
      }
      admitted++;
      await settledRecord(w, r.headers.get('x-request-id') as string);
    }
    const used = (await w.svc.get(`/v1/users/${k.user.id}/api-keys`)).body.data[0].credits_used as number;
    expect(admitted).toBeGreaterThan(0);
    expect(used + held).toBeGreaterThan(budget);
    expect(used).toBeLessThanOrEqual(budget);
  });

  it('limits belong to the service: PATCH by the service applies at once; an end user cannot PATCH, and a limited or expiring key cannot mint a looser key', async () => {
    const k = await limitedKey({});
    expect((await chat(k.key, { model: 'other-gpt' })).status).toBe(200);
    const patched = await w.svc.patch(`/v1/api-keys/${k.keyId}`, { models: ['lim-*'], rpm_limit: 100 });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ models: ['lim-*'], rpm_limit: 100, tpm_limit: null });
    expect((await chat(k.key, { model: 'other-gpt' })).status).toBe(403);
    expect((await k.api.patch(`/v1/api-keys/${k.keyId}`, { models: null })).status).toBe(403);
    const asKey = client(w.app.server, k.key);
    expect((await asKey.patch(`/v1/api-keys/${k.keyId}`, { models: null })).status).toBe(403);
    // The limited key cannot mint a fresh (unlimited) key.
    expect((await asKey.post(`/v1/users/${k.user.id}/api-keys`, { name: 'escape' })).status).toBe(403);
    // An end user may create a key with limits for itself (a limit only makes a key weaker).
    const own = await k.api.post(`/v1/users/${k.user.id}/api-keys`, { name: 'ci', models: ['lim-gpt'], credit_budget: 10 });
    expect(own.status).toBe(201);
    expect(own.body).toMatchObject({ models: ['lim-gpt'], credit_budget: 10 });
    // Attacker review R7: a key that expires cannot mint one that lives longer (or forever).
    const soon = new Date(Date.now() + offset + 3_600_000).toISOString();
    const expiring = await k.api.post(`/v1/users/${k.user.id}/api-keys`, { name: 'short', scopes: ['keys:write'], expires_at: soon });
    expect(expiring.status).toBe(201);
    const viaExpiring = client(w.app.server, expiring.body.key as string);
    expect((await viaExpiring.post(`/v1/users/${k.user.id}/api-keys`, { name: 'forever', scopes: ['keys:write'], expires_at: null })).status).toBe(403);
    const later = new Date(Date.now() + offset + 7_200_000).toISOString();
    expect((await viaExpiring.post(`/v1/users/${k.user.id}/api-keys`, { name: 'longer', scopes: ['keys:write'], expires_at: later })).status).toBe(403);
    const child = await viaExpiring.post(`/v1/users/${k.user.id}/api-keys`, { name: 'inherits', scopes: ['keys:write'] });
    expect(child.status).toBe(201);
    expect(child.body.expires_at).toBe(expiring.body.expires_at);
  });

  it('a workspace key spends the pool through the gateway; a non-member cannot make one', async () => {
    const owner = await signUp(w.app);
    const stranger = await signUp(w.app);
    const ws = (await owner.api.post('/v1/workspaces', { name: 'Team' })).body as { id: string };
    expect((await w.svc.post('/v1/credits/grant', { workspace_id: ws.id, amount: 1000, reason: 'pool' }, { idempotencyKey: `g-${randomBytes(6).toString('hex')}` })).status).toBe(201);
    expect((await stranger.api.post(`/v1/users/${stranger.user.id}/api-keys`, { name: 'x', workspace_id: ws.id })).status).toBe(404);
    const key = await owner.api.post(`/v1/users/${owner.user.id}/api-keys`, { name: 'team', workspace_id: ws.id });
    expect(key.status).toBe(201);
    const before = (await w.svc.get(`/v1/workspaces/${ws.id}/balance`)).body.balance as number;
    const r = await chat(key.body.key as string);
    expect(r.status).toBe(200);
    const rec = await settledRecord(w, r.headers.get('x-request-id') as string);
    expect(rec.workspace_id).toBe(ws.id);
    expect((await w.svc.get(`/v1/workspaces/${ws.id}/balance`)).body.balance).toBe(before - rec.charged);
  });

  it('the hold bounds what the provider can bill (review R1): n answers, image parts, an output limit sent upstream; unbillable parts refused', async () => {
    const k = await limitedKey({});
    const one = await chat(k.key, { max_tokens: 10 });
    const heldOne = (await settledRecord(w, one.headers.get('x-request-id') as string)).held as number;
    const four = await chat(k.key, { max_tokens: 10, n: 4 });
    const heldFour = (await settledRecord(w, four.headers.get('x-request-id') as string)).held as number;
    // 30 more output tokens at 1 credit each (the body is 6 bytes longer: ≤ 2 credits of input).
    expect(heldFour - heldOne).toBeGreaterThanOrEqual(30);
    expect(heldFour - heldOne).toBeLessThanOrEqual(32);
    expect((await chat(k.key, { n: 500 })).status).toBe(400);
    // No max_tokens from the client: the model's limit is held and sent upstream.
    const noMax = await chat(k.key, { model: 'img-gpt', max_tokens: undefined });
    expect(noMax.status).toBe(200);
    expect(w.fake.lastBody(upstream.credential)).toMatchObject({ max_completion_tokens: 50 });
    // Two images named by URL: 2 × 1,000 input tokens held on top of the bytes (at 0.25 credit).
    const img = (n: number) => ({
      model: 'img-gpt',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, ...Array.from({ length: n }, () => ({ type: 'image_url', image_url: { url: 'https://e.x/a.png' } }))] }],
    });
    const i0 = await chat(k.key, { ...img(0), max_tokens: 2 });
    const i2 = await chat(k.key, { ...img(2), max_tokens: 2 });
    const h0 = (await settledRecord(w, i0.headers.get('x-request-id') as string)).held as number;
    const h2 = (await settledRecord(w, i2.headers.get('x-request-id') as string)).held as number;
    expect(h2 - h0).toBeGreaterThanOrEqual(500);
    // A file part on a model whose cost model bounds no file, and a web search: refused, nothing sent.
    const hits = w.fake.hits(upstream.credential);
    const file = await chat(k.key, { messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'f1' } }] }] });
    expect(file.status).toBe(400);
    expect((await chat(k.key, { web_search_options: {} })).status).toBe(400);
    expect(w.fake.hits(upstream.credential)).toBe(hits);
  });

  it('a provider that bills beyond the hold: the charge stops at the hold and the excess is recorded in uncharged_micros; the output limit held is the one sent; Anthropic server tools are refused (review R1)', async () => {
    // An upstream that ignores the output limit and bills 500 output tokens whatever it is asked.
    let sent: Record<string, unknown> | null = null;
    const over = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        sent = JSON.parse(raw) as Record<string, unknown>;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'over-gpt', choices: [{ index: 0, message: { role: 'assistant', content: 'long answer' }, finish_reason: 'length' }], usage: { prompt_tokens: 3, completion_tokens: 500, total_tokens: 503 } }));
      });
    });
    await new Promise<void>((r) => over.listen(0, '127.0.0.1', r));
    try {
      await priceModel(w, 'over-gpt');
      await addUpstream(w, 'openai', { models: ['over-*'], base_url: `http://127.0.0.1:${(over.address() as AddressInfo).port}/v1` });
      const k = await limitedKey({});
      const res = await chat(k.key, { model: 'over-gpt', max_tokens: 2 });
      expect(res.status).toBe(200);
      expect(sent).toMatchObject({ max_tokens: 2 });
      const rec = await settledRecord(w, res.headers.get('x-request-id') as string);
      const held = rec['held'] as number;
      const exact = micros(3, 500);
      expect(held * 1_000_000).toBeLessThan(exact);
      expect(rec).toMatchObject({ status: 'completed', usage_source: 'provider', charged: held, cost_micros: held * 1_000_000, uncharged_micros: exact - held * 1_000_000 });
      expect((await w.svc.get(`/v1/users/${k.user.id}/balance`)).body).toMatchObject({ held: 0 });
    } finally {
      await new Promise((r) => over.close(r));
    }
    // Anthropic server tools are billed per use, outside tokens: refused, nothing sent.
    await priceModel(w, 'over-claude');
    const claude = await addUpstream(w, 'anthropic', { models: ['over-claude'] });
    const k = await limitedKey({});
    const tool = await fetch(`${w.base}/gateway/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': k.key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'over-claude', max_tokens: 8, messages: [{ role: 'user', content: 'search' }], tools: [{ type: 'web_search_20250305', name: 'web_search' }] }),
    });
    expect(tool.status).toBe(400);
    expect(w.fake.hits(claude.credential)).toBe(0);
  });

  it('a live stream that outlives its lease many times over is never reaped, and is billed its real usage (review R4)', async () => {
    const k = await limitedKey({});
    offset = 0;
    w.fake.behave(upstream.credential, { words: 20, eventGapMs: 100 });
    const stream = await openai(k.key).chat.completions.create({ model: 'lim-gpt', messages: [{ role: 'user', content: 'tell me' }], max_tokens: 64, stream: true });
    let reaped = 0;
    let text = '';
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      // The reaper comes by with every chunk (~2 s in all, the lease is 0.3 s).
      // Judged by age alone (0.2 s), as before leases, it would be reaped at once.
      reaped += await reapStale(w.app.services.gateway.relay, w.app.database.db, new Date(), 200);
    }
    w.fake.behave(upstream.credential, {});
    expect(text.trim().split(/\s+/)).toHaveLength(20);
    expect(reaped).toBe(0);
    const [rec] = await allSettled(w, k.user.id);
    expect(rec).toMatchObject({ status: 'completed', usage_source: 'provider' });
  });
});
