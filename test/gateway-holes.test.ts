import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { makeApiKey } from './support/fixtures.js';
import { addUpstream, allSettled, balanceOf, fundedKey, type GatewayWorld, gatewayWorld, priceModel, settledRecord } from './support/gateway-fixture.js';

/**
 * Money holes from the gateway's second attacker review (G1–G9, #12): each test here failed before
 * its fix (docs/threat-model.md names them).
 */
describe(`gateway: money holes of attacker review 2 (${TARGET})`, () => {
  let w: GatewayWorld;
  const post = (path: string, key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    fetch(`${w.base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'x-api-key': key, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const chat = (key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) => post('/gateway/v1/chat/completions', key, body, headers);
  const messages = (key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) => post('/gateway/anthropic/v1/messages', key, body, headers);
  /** Sends a request and reads its answer to the end; answers its settled record. */
  const settled = async (res: Response) => {
    await res.text();
    return settledRecord(w, res.headers.get('x-request-id') as string);
  };

  beforeAll(async () => {
    w = await gatewayWorld({ gateway: { connectTimeoutMs: 1000, firstByteTimeoutMs: 400, idleTimeoutMs: 400, drainTimeoutMs: 1000, maxAttempts: 3, cooldownMs: 60_000, failureThreshold: 5, reapAfterMs: 3_600_000, standardTierHosts: ['127.0.0.1'] } });
  });
  afterAll(async () => {
    await w.close();
  });

  describe('G7: a request an upstream took is never sent to another one, and never costs 0', () => {
    for (const [name, behaviour, stream] of [
      ['a first-byte timeout (no headers)', { hang: true }, false],
      ['an idle timeout in a JSON body', { stallAfterHeaders: true }, false],
      ['an idle timeout before a stream’s first event', { stallAfterHeaders: true }, true],
    ] as const) {
      it(`${name}: the backup upstream is not called; the input is billed as estimated`, async () => {
        const model = `g7-${Math.random().toString(36).slice(2, 8)}`;
        await priceModel(w, model);
        const first = await addUpstream(w, 'openai', { models: [model], priority: 1 });
        const backup = await addUpstream(w, 'openai', { models: [model], priority: 2 });
        w.fake.behave(first.credential, behaviour);
        const { userId, key } = await fundedKey(w, 1000);
        const res = await chat(key, { model, messages: [{ role: 'user', content: 'please answer this question' }], max_tokens: 8, stream });
        expect(res.status).toBe(503);
        expect((await res.json()).error.type).toBe('server_error');
        expect(w.fake.hits(first.credential)).toBe(1);
        expect(w.fake.hits(backup.credential)).toBe(0);
        const [rec] = await allSettled(w, userId);
        expect(rec).toMatchObject({ status: 'failed', usage_source: 'estimated', upstream_id: first.id });
        expect(rec?.cost_micros).toBeGreaterThan(0);
        expect(rec?.charged).toBeGreaterThan(0);
        expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - (rec?.charged ?? 0), held: 0 });
      });
    }

    it('connect errors, 429 and 5xx still fail over (nothing was billed by them)', async () => {
      const model = 'g7-failover';
      await priceModel(w, model);
      const dead = await w.svc.post('/v1/gateway/upstreams', { type: 'openai', base_url: 'http://127.0.0.1:9/v1', credentials: 'sk-dead-000000000000', models: [model], priority: 1 });
      expect(dead.status).toBe(201);
      const busy = await addUpstream(w, 'openai', { models: [model], priority: 2 });
      const good = await addUpstream(w, 'openai', { models: [model], priority: 3 });
      w.fake.behave(busy.credential, { status: 500 });
      const { userId, key } = await fundedKey(w, 1000);
      const res = await chat(key, { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
      expect(res.status).toBe(200);
      expect(w.fake.hits(busy.credential)).toBe(1);
      expect(w.fake.hits(good.credential)).toBe(1);
      expect((await allSettled(w, userId))[0]).toMatchObject({ status: 'completed', attempts: 3, upstream_id: good.id, usage_source: 'provider' });
    });
  });

  describe('#12: a key budget counts the key’s own exact spend', () => {
    it('a key whose half-credit requests another key of the same account always "crosses" cannot pass its budget', async () => {
      const model = 'k12-gpt';
      // 0.1 credit a token: 2 words in + 3 out = 0.5 credit a request.
      await priceModel(w, model, { input: 100_000, output: 100_000 });
      await addUpstream(w, 'openai', { models: [model] });
      const body = { model, messages: [{ role: 'user', content: 'a b' }], max_tokens: 3 };
      const probe = await fundedKey(w, 1000);
      const p = await chat(probe.key, body);
      const held = (await settledRecord(w, p.headers.get('x-request-id') as string))['held'] as number;
      const budget = held + 1; // room for one credit of spend beyond an open hold
      const { userId } = await fundedKey(w, 1000);
      const limited = await makeApiKey(w.app, userId, { name: 'budgeted', credit_budget: budget });
      const other = await makeApiKey(w.app, userId, { name: 'other' });
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) {
        // The limited key leaves half a credit on the account; the other key's request completes it.
        for (const [k, record] of [[limited.key, true], [other.key, false]] as const) {
          const res = await chat(k, body);
          if (record) statuses.push(res.status);
          if (res.status === 200) await settledRecord(w, res.headers.get('x-request-id') as string);
        }
      }
      // Spent 0, 0.5, 1.0 → admitted (spend + hold ≤ budget); at 1.5 the budget is reached.
      expect(statuses).toEqual([200, 200, 200, 402, 402, 402, 402, 402]);
      const keys = (await w.svc.get(`/v1/users/${userId}/api-keys`)).body.data as { id: string; credits_used: number }[];
      expect(keys.find((k) => k.id === limited.id)?.credits_used).toBe(1); // 1.5 credits exactly, its own fraction carried
      expect(keys.find((k) => k.id === other.id)?.credits_used).toBe(4); // 8 × 0.5
      const recs = await allSettled(w, userId);
      const spent = recs.reduce((s, r) => s + r.cost_micros, 0);
      expect(spent).toBe(11 * 500_000);
      expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 5, held: 0 }); // 5.5 → 5 charged, 0.5 carried
    });
  });

  describe('G1: usage without token counts is no usage (estimated), never 0', () => {
    for (const [name, wire, stream, usageAs] of [
      ['OpenAI JSON, usage with no completion_tokens', 'openai', false, { prompt_tokens: 3 }],
      ['OpenAI stream, usage chunk with no completion_tokens', 'openai', true, { prompt_tokens: 3, total_tokens: 3 }],
      ['Anthropic JSON, usage: {}', 'anthropic', false, {}],
      ['Anthropic stream, usage: {} in message_start and message_delta', 'anthropic', true, {}],
    ] as const) {
      it(name, async () => {
        const model = `g1-${wire}-${stream}`;
        await priceModel(w, model);
        const up = await addUpstream(w, wire, { models: [model] });
        w.fake.behave(up.credential, { words: 20, usageAs });
        const { key } = await fundedKey(w, 1000);
        const body = { model, messages: [{ role: 'user', content: 'count my tokens please' }], max_tokens: 64, stream };
        const res = await (wire === 'openai' ? chat(key, body) : messages(key, body));
        expect(res.status).toBe(200);
        const rec = await settled(res);
        expect(rec).toMatchObject({ status: 'completed', usage_source: 'estimated' });
        expect(rec.tokens.output).toBeGreaterThan(0);
        expect(rec.tokens.input).toBeGreaterThan(0);
        expect(rec.charged).toBeGreaterThan(0);
      });
    }
  });

  describe('G4: a cut OpenAI stream’s output estimate counts every kind of generated delta', () => {
    for (const deltaAs of ['tool_calls', 'reasoning_content', 'refusal'] as const) {
      it(`${deltaAs} deltas`, async () => {
        const model = `g4-${deltaAs}`;
        await priceModel(w, model);
        const up = await addUpstream(w, 'openai', { models: [model] });
        // 30 words of "w1 w2 …" (≈ 90 characters) streamed, then the connection is reset: no usage.
        w.fake.behave(up.credential, { words: 60, resetAfterWords: 30, eventGapMs: 2, deltaAs });
        const { key } = await fundedKey(w, 1000);
        const rec = await settled(await chat(key, { model, messages: [{ role: 'user', content: 'use the tool' }], max_tokens: 100, stream: true }));
        expect(rec).toMatchObject({ status: 'failed', usage_source: 'estimated' });
        expect(rec.tokens.output).toBeGreaterThanOrEqual(20);
      });
    }
  });

  describe('G5: a cut stream bills the input the provider reported; estimates count media parts', () => {
    it('a cut Anthropic stream bills message_start’s input (cache reads included), not bytes ÷ 4', async () => {
      const model = 'g5-claude';
      await priceModel(w, model);
      const up = await addUpstream(w, 'anthropic', { models: [model] });
      // message_start reports the input (a big cached system prompt, an image …); then the connection drops.
      w.fake.behave(up.credential, { words: 40, resetAfterWords: 10, eventGapMs: 2, usageAs: { input_tokens: 77, cache_read_input_tokens: 50, output_tokens: 1 } });
      const { key } = await fundedKey(w, 1000);
      const rec = await settled(await messages(key, { model, messages: [{ role: 'user', content: 'x' }], max_tokens: 64, stream: true }));
      expect(rec).toMatchObject({ status: 'failed', usage_source: 'estimated' });
      expect(rec.tokens).toMatchObject({ input: 77, cached_input: 50 });
      expect(rec.tokens.output).toBeGreaterThan(1);
    });

    it('an answer without usage that had an image part is estimated with the image’s tokens', async () => {
      const model = 'g5-vision';
      await priceModel(w, model, { max_tokens_per_image: 1000 });
      const up = await addUpstream(w, 'openai', { models: [model] });
      w.fake.behave(up.credential, { noUsage: true });
      const { key } = await fundedKey(w, 1000);
      const content = [{ type: 'text', text: 'what is this' }, { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }];
      const rec = await settled(await chat(key, { model, messages: [{ role: 'user', content }], max_tokens: 8 }));
      expect(rec).toMatchObject({ status: 'completed', usage_source: 'estimated' });
      expect(rec.tokens.input).toBeGreaterThanOrEqual(1000);
    });
  });

  describe('G2/G3: the output limit held is the one the provider obeys', () => {
    it('OpenAI: max_completion_tokens 2 with max_tokens 100 → held for 100, and both are sent as 100', async () => {
      const model = 'g2-gpt';
      await priceModel(w, model);
      const up = await addUpstream(w, 'openai', { models: [model] });
      w.fake.behave(up.credential, { words: 100 }); // the fake obeys max_tokens first
      const { key } = await fundedKey(w, 1000);
      const rec = await settled(await chat(key, { model, messages: [{ role: 'user', content: 'a b' }], max_completion_tokens: 2, max_tokens: 100 }));
      expect(w.fake.lastBody(up.credential)).toMatchObject({ max_tokens: 100, max_completion_tokens: 100 });
      expect(rec).toMatchObject({ status: 'completed', usage_source: 'provider', uncharged_micros: 0 });
      expect(rec.cost_micros).toBe(2 * 250_000 + 100 * 1_000_000);
    });

    it('Anthropic: max_completion_tokens is not Anthropic’s field: the hold never follows it (and since G6 it is refused)', async () => {
      const model = 'g3-claude';
      await priceModel(w, model);
      const up = await addUpstream(w, 'anthropic', { models: [model] });
      w.fake.behave(up.credential, { words: 100 });
      const { userId, key } = await fundedKey(w, 1000);
      const res = await messages(key, { model, messages: [{ role: 'user', content: 'a b' }], max_tokens: 100, max_completion_tokens: 2 });
      if (res.status === 400) {
        // G6: not an Anthropic field, not relayed; nothing held or sent.
        expect(w.fake.hits(up.credential)).toBe(0);
        expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003, held: 0 });
        return;
      }
      const rec = await settled(res);
      expect(rec).toMatchObject({ status: 'completed', usage_source: 'provider', uncharged_micros: 0 });
      expect(rec.cost_micros).toBe(2 * 250_000 + 100 * 1_000_000);
    });

    it('an output limit that is not a positive integer is refused (400), nothing held or sent', async () => {
      const { key } = await fundedKey(w, 1000);
      const res = await chat(key, { model: 'g2-gpt', messages: [{ role: 'user', content: 'a' }], max_tokens: 10.5 });
      expect(res.status).toBe(400);
      expect((await res.json()).error.param).toBe(null);
    });
  });

  describe('G6: fields and headers that buy a dearer service are refused, in the client’s format, nothing sent', () => {
    const cases: [string, 'openai' | 'anthropic', Record<string, unknown>, Record<string, string>][] = [
      ['OpenAI service_tier "priority"', 'openai', { service_tier: 'priority' }, {}],
      ['OpenRouter models (a fallback list of other models)', 'openai', { models: ['gpt-4.5', 'o1-pro'] }, {}],
      ['OpenRouter plugins', 'openai', { plugins: [{ id: 'web' }] }, {}],
      ['an unknown field', 'openai', { provider: { order: ['x'] } }, {}],
      ['anthropic-beta context-1m', 'anthropic', {}, { 'anthropic-beta': 'context-1m-2025-08-07' }],
      ['anthropic-beta with an allowed and a refused flag', 'anthropic', {}, { 'anthropic-beta': 'prompt-caching-2024-07-31, context-1m-2025-08-07' }],
      ['Anthropic service_tier "auto" (may use priority capacity)', 'anthropic', { service_tier: 'auto' }, {}],
    ];
    for (const [i, [name, wire, extra, headers]] of cases.entries()) {
      it(name, async () => {
        const model = `g6-${wire}-${i}`;
        await priceModel(w, model);
        const up = await addUpstream(w, wire, { models: [model] });
        const { userId, key } = await fundedKey(w, 1000);
        const body = { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, ...extra };
        const res = await (wire === 'openai' ? chat(key, body, headers) : messages(key, body, headers));
        expect(res.status).toBe(400);
        const err = await res.json();
        if (wire === 'openai') expect(err.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_request' });
        else expect(err).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
        expect(w.fake.hits(up.credential)).toBe(0);
        expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003, held: 0 });
      });
    }

    it('the standard tier and harmless beta flags still pass', async () => {
      await priceModel(w, 'g6-ok-gpt');
      await priceModel(w, 'g6-ok-claude');
      const o = await addUpstream(w, 'openai', { models: ['g6-ok-gpt'] });
      const a = await addUpstream(w, 'anthropic', { models: ['g6-ok-claude'] });
      const { key } = await fundedKey(w, 1000);
      expect((await chat(key, { model: 'g6-ok-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, service_tier: 'auto', seed: 1 })).status).toBe(200);
      expect((await messages(key, { model: 'g6-ok-claude', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }, { 'anthropic-beta': 'prompt-caching-2024-07-31' })).status).toBe(200);
      // 'auto' may mean the project's default tier: to a host that sells tiers it goes as 'default' (G10).
      expect(w.fake.lastBody(o.credential)).toMatchObject({ service_tier: 'default' });
      expect(w.fake.hits(a.credential)).toBe(1);
    });
  });

  describe('G8: one-hour cache writes are priced as such, or refused', () => {
    const system = [{ type: 'text', text: 'rule '.repeat(800), cache_control: { type: 'ephemeral', ttl: '1h' } }];

    it('with cache_write_1h in the price, the 1 h writes the provider reports cost that price', async () => {
      const model = 'g8-claude';
      // cache_write_1h 0.5 credit a token (twice the input price of 0.25).
      await priceModel(w, model, { cache_write_1h: 500_000 });
      const up = await addUpstream(w, 'anthropic', { models: [model] });
      w.fake.behave(up.credential, { usageAs: { input_tokens: 10, cache_creation_input_tokens: 1000, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1000 }, output_tokens: 5 } });
      const { key } = await fundedKey(w, 5000);
      const rec = await settled(await messages(key, { model, system, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 }));
      expect(rec).toMatchObject({ status: 'completed', usage_source: 'provider', uncharged_micros: 0 });
      expect(rec.cost_micros).toBe(10 * 250_000 + 1000 * 500_000 + 5 * 1_000_000);
    });

    it('a request that asks for no 1 h cache is held at the plain input price, even where cache_write_1h is priced', async () => {
      const plain = [{ type: 'text', text: 'rule '.repeat(800), cache_control: { type: 'ephemeral' } }];
      const { key } = await fundedKey(w, 5000);
      const one = await settled(await messages(key, { model: 'g8-claude', system, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 }));
      const five = await settled(await messages(key, { model: 'g8-claude', system: plain, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 }));
      // The same size of body, held at 0.5 and at 0.25 credit an input token.
      expect(five['held'] as number).toBeLessThan(((one['held'] as number) * 2) / 3);
    });

    it('without cache_write_1h in the price, a request asking for ttl 1h is refused (400), nothing held or sent', async () => {
      const model = 'g8-claude-unpriced';
      await priceModel(w, model);
      const up = await addUpstream(w, 'anthropic', { models: [model] });
      const { userId, key } = await fundedKey(w, 5000);
      const res = await messages(key, { model, system, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 });
      expect(res.status).toBe(400);
      expect((await res.json()).error.type).toBe('invalid_request_error');
      expect(w.fake.hits(up.credential)).toBe(0);
      expect(await balanceOf(w, userId)).toMatchObject({ balance: 5003, held: 0 });
    });
  });

  describe('G9: images are held only at a per-image figure the operator set', () => {
    const content = [{ type: 'text', text: 'describe' }, { type: 'image_url', image_url: { url: 'https://example.com/huge.png', detail: 'high' } }];

    it('a model whose price sets no max_tokens_per_image refuses image parts (400), nothing held or sent', async () => {
      const model = 'g9-unpriced-images';
      await priceModel(w, model);
      const up = await addUpstream(w, 'openai', { models: [model] });
      const { userId, key } = await fundedKey(w, 1000);
      const res = await chat(key, { model, messages: [{ role: 'user', content }], max_tokens: 4 });
      expect(res.status).toBe(400);
      expect((await res.json()).error.message).toMatch(/max_tokens_per_image/);
      expect(w.fake.hits(up.credential)).toBe(0);
      expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003, held: 0 });
    });

    it('with max_tokens_per_image set, images are held at that figure each', async () => {
      const model = 'g9-priced-images';
      await priceModel(w, model, { max_tokens_per_image: 8000 });
      await addUpstream(w, 'openai', { models: [model] });
      const { key } = await fundedKey(w, 5000);
      const rec = await settled(await chat(key, { model, messages: [{ role: 'user', content }], max_tokens: 4 }));
      expect(rec.status).toBe('completed');
      expect(rec['held'] as number).toBeGreaterThanOrEqual(2000); // 8,000 tokens at 0.25 credit
    });
  });

  describe('G10: a host that sells dearer tiers by default is always sent the standard tier', () => {
    it('OpenAI gets service_tier "default" (absent or "auto"), Anthropic "standard_only"; embeddings and other hosts are left as sent', async () => {
      for (const m of ['g10-gpt', 'g10-claude', 'g10-embed', 'g10-local']) await priceModel(w, m);
      const o = await addUpstream(w, 'openai', { models: ['g10-gpt', 'g10-embed'] });
      const a = await addUpstream(w, 'anthropic', { models: ['g10-claude'] });
      // The same fake under a host name the deployment does not list (an OpenAI-compatible server).
      const local = await addUpstream(w, 'openai', { models: ['g10-local'], base_url: w.fake.openaiBase.replace('127.0.0.1', 'localhost') });
      const { key } = await fundedKey(w, 1000);
      const hi = [{ role: 'user', content: 'hi' }];
      expect((await chat(key, { model: 'g10-gpt', messages: hi, max_tokens: 4 })).status).toBe(200);
      expect(w.fake.lastBody(o.credential)).toMatchObject({ service_tier: 'default' });
      expect((await chat(key, { model: 'g10-gpt', messages: hi, max_tokens: 4, service_tier: 'auto', stream: true })).status).toBe(200);
      expect(w.fake.lastBody(o.credential)).toMatchObject({ service_tier: 'default', stream: true });
      expect((await messages(key, { model: 'g10-claude', messages: hi, max_tokens: 4 })).status).toBe(200);
      expect(w.fake.lastBody(a.credential)).toMatchObject({ service_tier: 'standard_only' });
      expect((await post('/gateway/v1/embeddings', key, { model: 'g10-embed', input: 'two words' })).status).toBe(200);
      expect(w.fake.lastBody(o.credential)).not.toHaveProperty('service_tier');
      expect((await chat(key, { model: 'g10-local', messages: hi, max_tokens: 4 })).status).toBe(200);
      expect(w.fake.lastBody(local.credential)).not.toHaveProperty('service_tier');
    });
  });

  describe('G11: a 403 refuses one request, not the credential (a client must not be able to disable upstreams)', () => {
    it('the request fails over; the refusing upstream stays closed and keeps serving, its last error says why', async () => {
      const model = 'g11-gpt';
      await priceModel(w, model);
      const strict = await addUpstream(w, 'openai', { models: [model], priority: 1 });
      const backup = await addUpstream(w, 'openai', { models: [model], priority: 2 });
      w.fake.behave(strict.credential, { status: 403 });
      const { userId, key } = await fundedKey(w, 1000);
      // More refusals than the failure threshold (5): a breaker counting them would open.
      for (let i = 0; i < 7; i++) expect((await chat(key, { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })).status).toBe(200);
      expect(w.fake.hits(strict.credential)).toBe(7);
      expect(w.fake.hits(backup.credential)).toBe(7);
      await new Promise((r) => setTimeout(r, 100));
      const health = (await w.svc.get(`/v1/gateway/upstreams/${strict.id}`)).body.health;
      expect(health.state).toBe('closed');
      expect(health.last_error).toMatch(/^request refused: HTTP 403/);
      w.fake.behave(strict.credential, {});
      expect((await chat(key, { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })).status).toBe(200);
      expect(w.fake.hits(strict.credential)).toBe(8);
      expect((await allSettled(w, userId)).every((r) => r.status === 'completed')).toBe(true);
    });

    it('with no other upstream the client gets the 403 in its own format, and it costs nothing', async () => {
      const model = 'g11-claude';
      await priceModel(w, model);
      const only = await addUpstream(w, 'anthropic', { models: [model] });
      w.fake.behave(only.credential, { status: 403 });
      const { userId, key } = await fundedKey(w, 1000);
      const res = await messages(key, { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
      expect(res.status).toBe(403);
      expect((await res.json()).type).toBe('error');
      const [rec] = await allSettled(w, userId);
      expect(rec).toMatchObject({ status: 'failed', charged: 0 });
      expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003, held: 0 });
    });
  });

  describe('G12: a request billed as sent (503) is not retried by the official clients', () => {
    it('OpenAI and Anthropic clients with their default retries send it once and it is charged once', async () => {
      await priceModel(w, 'g12-gpt');
      await priceModel(w, 'g12-claude');
      const o = await addUpstream(w, 'openai', { models: ['g12-gpt'] });
      const a = await addUpstream(w, 'anthropic', { models: ['g12-claude'] });
      w.fake.behave(o.credential, { hang: true });
      w.fake.behave(a.credential, { hang: true });
      const { userId, key } = await fundedKey(w, 1000);
      // Default maxRetries (2): without `x-should-retry: false` each would be sent three times.
      const oErr = await new OpenAI({ baseURL: `${w.base}/gateway/v1`, apiKey: key }).chat.completions.create({ model: 'g12-gpt', messages: [{ role: 'user', content: 'hi there' }], max_tokens: 4 }).catch((e: unknown) => e);
      const aErr = await new Anthropic({ baseURL: `${w.base}/gateway/anthropic`, apiKey: key }).messages.create({ model: 'g12-claude', messages: [{ role: 'user', content: 'hi there' }], max_tokens: 4 }).catch((e: unknown) => e);
      expect(oErr).toBeInstanceOf(OpenAI.APIError);
      expect((oErr as { status: number }).status).toBe(503);
      expect(aErr).toBeInstanceOf(Anthropic.APIError);
      expect((aErr as { status: number }).status).toBe(503);
      expect(w.fake.hits(o.credential)).toBe(1);
      expect(w.fake.hits(a.credential)).toBe(1);
      const recs = await allSettled(w, userId);
      expect(recs).toHaveLength(2);
      expect(recs.every((r) => r.status === 'failed' && r.usage_source === 'estimated' && (r.charged as number) > 0)).toBe(true);
    });
  });

  it('reconcile is clean after everything above', async () => {
    const res = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(res.status).toBe(200);
    expect(res.body.drift).toEqual([]);
    expect(res.body.ok).toBe(true);
  });
});
