import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, balanceOf, fundedKey, type GatewayWorld, gatewayWorld, micros, priceModel, settledRecord } from './support/gateway-fixture.js';

/** The Anthropic-compatible relay, driven by the official `@anthropic-ai/sdk` (key in x-api-key). */
describe(`gateway: Anthropic messages (${TARGET})`, () => {
  let w: GatewayWorld;
  let up: { id: string; credential: string };
  const anthropic = (apiKey: string) => new Anthropic({ baseURL: `${w.base}/gateway/anthropic`, apiKey, maxRetries: 0 });

  beforeAll(async () => {
    w = await gatewayWorld();
    await priceModel(w, 'fake-claude');
    up = await addUpstream(w, 'anthropic', { models: ['fake-claude'] });
  });
  afterAll(async () => {
    await w.close();
  });

  it('a JSON message is charged exactly the provider usage; the upstream got its credential, not the tly_ key', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    const res = await anthropic(key).messages.create({ model: 'fake-claude', max_tokens: 32, messages: [{ role: 'user', content: 'one two three' }] }).withResponse();
    expect(res.data.content[0]).toMatchObject({ type: 'text', text: 'w1 w2 w3 w4 w5' });
    const rec = await settledRecord(w, res.response.headers.get('x-request-id') as string);
    expect(rec).toMatchObject({ status: 'completed', usage_source: 'provider', cost_micros: micros(3, 5), charged: 5, endpoint: 'messages' });
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 5, held: 0 });
    expect(w.fake.hits(up.credential)).toBeGreaterThan(0);
    expect(w.fake.hits(key)).toBe(0);
  });

  it('a stream is billed from message_start + cumulative message_delta, equal to the provider bill', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    w.fake.behave(up.credential, { words: 9 });
    const before = w.fake.bill(up.credential);
    const stream = anthropic(key).messages.stream({ model: 'fake-claude', max_tokens: 64, messages: [{ role: 'user', content: 'stream this one' }] });
    const final = await stream.finalMessage();
    expect(final.usage).toMatchObject({ input_tokens: 3, output_tokens: 9 });
    const recs = await allSettled(w, userId);
    const after = w.fake.bill(up.credential);
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ status: 'completed', usage_source: 'provider', cost_micros: micros(after.input - before.input, after.output - before.output) });
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 9, held: 0 }); // 9.75 → 9
    w.fake.behave(up.credential, {});
  });

  it('an Anthropic stream that never reports its final usage, or resets mid-stream, is billed an estimate of what was streamed: never 0, at most the hold, marked estimated', async () => {
    // Both end without message_delta's cumulative usage; message_start's input-only usage must not settle it.
    for (const behaviour of [{ words: 12, noUsage: true }, { words: 40, resetAfterWords: 6, eventGapMs: 5 }]) {
      const { userId, key } = await fundedKey(w, 1000);
      w.fake.behave(up.credential, behaviour);
      const res = await fetch(`${w.base}/gateway/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify({ model: 'fake-claude', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'stream then vanish' }] }),
      });
      expect(res.status).toBe(200);
      const streamed = await res.text().catch(() => '');
      if (behaviour.noUsage) expect(streamed).toContain('message_stop');
      const rec = await settledRecord(w, res.headers.get('x-request-id') as string);
      expect(rec.usage_source, JSON.stringify(behaviour)).toBe('estimated');
      expect(rec.status).toBe(behaviour.noUsage ? 'completed' : 'failed');
      // What was streamed is counted (output > 0), the input too: never billed as if nothing was served.
      expect(rec.tokens['output']).toBeGreaterThan(0);
      expect(rec.tokens['input']).toBeGreaterThan(0);
      expect(rec.cost_micros).toBeGreaterThan(0);
      expect(rec.charged).toBeGreaterThan(0);
      expect(rec.charged).toBeLessThanOrEqual(rec['held'] as number);
      expect(rec.cost_micros).toBeLessThanOrEqual((rec['held'] as number) * 1_000_000);
      expect((await balanceOf(w, userId)).held).toBe(0);
    }
    w.fake.behave(up.credential, {});
  });

  it('errors come back in Anthropic format: 401 bad key, 402 not enough credits (nothing sent upstream)', async () => {
    await expect(anthropic('tly_wrong').messages.create({ model: 'fake-claude', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
    const { key } = await fundedKey(w, 0);
    const hits = w.fake.hits(up.credential);
    const err = await anthropic(key).messages.create({ model: 'fake-claude', max_tokens: 500, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect((err as InstanceType<typeof Anthropic.APIError>).status).toBe(402);
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: 'error', error: { type: 'billing_error' } });
    expect(w.fake.hits(up.credential)).toBe(hits);
  });

  it('a key without the gateway scope gets 403 in Anthropic format, nothing held or sent; a gateway-only key spends', async () => {
    const { userId } = await fundedKey(w, 100);
    const narrow = await w.svc.post(`/v1/users/${userId}/api-keys`, { name: 'narrow', scopes: ['credits:read', 'users:write'] });
    const hits = w.fake.hits(up.credential);
    const err = await anthropic(narrow.body.key).messages.create({ model: 'fake-claude', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: 'error', error: { type: 'permission_error', message: expect.stringContaining('"gateway" scope') } });
    expect(w.fake.hits(up.credential)).toBe(hits);
    expect(await allSettled(w, userId)).toEqual([]);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 103, held: 0 });
    const gw = await w.svc.post(`/v1/users/${userId}/api-keys`, { name: 'gateway', scopes: ['gateway'] });
    const ok = await anthropic(gw.body.key).messages.create({ model: 'fake-claude', max_tokens: 32, messages: [{ role: 'user', content: 'one two three' }] });
    expect(ok.usage).toMatchObject({ input_tokens: 3, output_tokens: 5 });
    expect(await allSettled(w, userId)).toMatchObject([{ status: 'completed', charged: 5 }]);
  });

  it('two streams under one Idempotency-Key: the second replays the first (same events), one upstream call, one charge', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    w.fake.behave(up.credential, { words: 6 });
    const hits = w.fake.hits(up.credential);
    const body = { model: 'fake-claude', max_tokens: 64, messages: [{ role: 'user' as const, content: 'replay this one' }] };
    const events = async () => {
      const out: unknown[] = [];
      const s = anthropic(key).messages.stream(body, { headers: { 'Idempotency-Key': 'anthropic-stream-1' } });
      for await (const e of s) out.push(e);
      return { out, final: await s.finalMessage() };
    };
    const a = await events();
    await allSettled(w, userId);
    const b = await events();
    expect(b.out).toEqual(a.out);
    expect(b.final.usage).toMatchObject({ input_tokens: 3, output_tokens: 6 });
    expect(w.fake.hits(up.credential) - hits).toBe(1);
    expect(await allSettled(w, userId)).toMatchObject([{ status: 'completed', charged: 6 }]); // 3 × 0.25 + 6 = 6.75
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 6, held: 0 });
    w.fake.behave(up.credential, {});
  });

  it('the key is accepted as Authorization: Bearer too', async () => {
    const { key } = await fundedKey(w, 100);
    const res = await fetch(`${w.base}/gateway/anthropic/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'fake-claude', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
  });
  it('reconcile is clean: ledger and gateway invariants (carries, captures) hold after everything above', async () => {
    const res = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(res.status).toBe(200);
    expect(res.body.drift).toEqual([]);
    expect(res.body.ok).toBe(true);
  });
});
