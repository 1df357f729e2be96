import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, balanceOf, fundedKey, type GatewayWorld, gatewayWorld, priceModel } from './support/gateway-fixture.js';

/**
 * Streams under one Idempotency-Key (docs/gateway.md, "Idempotency"), driven by the official `openai`
 * package: the first stream is the one charged; a retry with the key while it runs gets 409 with
 * Retry-After (which the client honours), and afterwards the events the first was shown, replayed
 * as one event stream. Charged once, one upstream call.
 */
describe(`gateway: idempotent streams (${TARGET})`, () => {
  let w: GatewayWorld;
  let up: { id: string; credential: string };
  const openai = (apiKey: string, maxRetries = 0) => new OpenAI({ baseURL: `${w.base}/gateway/v1`, apiKey, maxRetries });
  const ask = (content: string) => ({ model: 'fake-gpt', messages: [{ role: 'user' as const, content }], max_tokens: 64, stream: true as const });
  const idem = (key: string) => ({ headers: { 'Idempotency-Key': key } });

  /** Every chunk of a stream, as the client parsed it. */
  async function chunks(stream: AsyncIterable<OpenAI.ChatCompletionChunk>): Promise<OpenAI.ChatCompletionChunk[]> {
    const out: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) out.push(c);
    return out;
  }
  const text = (cs: OpenAI.ChatCompletionChunk[]) => cs.map((c) => c.choices[0]?.delta.content ?? '').join('');

  beforeAll(async () => {
    w = await gatewayWorld();
    await priceModel(w, 'fake-gpt');
    up = await addUpstream(w, 'openai', { models: ['fake-gpt'] });
  });
  afterAll(async () => {
    await w.close();
  });

  it('two streams with one key: the second replays the first one event for event, and the pair is charged once', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    w.fake.behave(up.credential, { words: 7 });
    const hits = w.fake.hits(up.credential);
    const a = await openai(key).chat.completions.create(ask('a b c'), idem('stream-once')).withResponse();
    const first = await chunks(a.data);
    expect(text(first)).toBe('w1 w2 w3 w4 w5 w6 w7');
    expect(await allSettled(w, userId)).toMatchObject([{ status: 'completed', charged: 7 }]); // 3 × 0.25 + 7 = 7.75
    const b = await openai(key).chat.completions.create(ask('a b c'), idem('stream-once')).withResponse();
    expect(b.response.headers.get('idempotent-replayed')).toBe('true');
    expect(b.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(await chunks(b.data)).toEqual(first);
    expect(w.fake.hits(up.credential) - hits).toBe(1);
    expect(await allSettled(w, userId)).toHaveLength(1);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 7, held: 0 });
    // The key belongs to that request: another body is refused for good (the client must not retry).
    const other = await openai(key, 2).chat.completions.create(ask('d e f'), idem('stream-once')).catch((e: unknown) => e);
    expect(other).toBeInstanceOf(OpenAI.ConflictError);
    expect((other as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ code: 'idempotency_key_reused' });
    expect((other as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry')).toBe('false');
    expect(w.fake.hits(up.credential) - hits).toBe(1);
    w.fake.behave(up.credential, {});
  });

  it('a retry while the first stream runs: 409 with Retry-After; the client retries and gets the replay; charged once', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    w.fake.behave(up.credential, { words: 12, eventGapMs: 80 }); // about a second: room for the 409 on a busy machine
    const hits = w.fake.hits(up.credential);
    const a = await openai(key).chat.completions.create(ask('slow one'), idem('stream-busy')).withResponse();
    const reading = chunks(a.data);
    // Without retries the client sees the 409 itself: in progress, come back in a second.
    const busy = await openai(key).chat.completions.create(ask('slow one'), idem('stream-busy')).catch((e: unknown) => e);
    expect(busy).toBeInstanceOf(OpenAI.ConflictError);
    expect((busy as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ code: 'conflict', message: expect.stringContaining('in progress') });
    expect((busy as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after')).toBe('1');
    expect((busy as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry')).toBe('true');
    // With its default retries, the same call waits and comes back with the first stream's events.
    const b = await openai(key, 3).chat.completions.create(ask('slow one'), idem('stream-busy')).withResponse();
    const first = await reading;
    expect(b.response.headers.get('idempotent-replayed')).toBe('true');
    expect(await chunks(b.data)).toEqual(first);
    expect(text(first)).toBe('w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12');
    expect(w.fake.hits(up.credential) - hits).toBe(1);
    expect(await allSettled(w, userId)).toMatchObject([{ status: 'completed', charged: 12 }]); // 2 × 0.25 + 12
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 12, held: 0 });
    w.fake.behave(up.credential, {});
  }, 20_000);

  it('a client that drops mid-stream and retries with its key gets the whole answer it paid for, charged once', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    w.fake.behave(up.credential, { words: 10, eventGapMs: 15 });
    const hits = w.fake.hits(up.credential);
    const controller = new AbortController();
    const a = await openai(key).chat.completions.create(ask('drop me'), { ...idem('stream-drop'), signal: controller.signal }).withResponse();
    let seen = 0;
    try {
      for await (const _ of a.data) if (++seen === 2) controller.abort();
    } catch {
      // the SDK raises on abort
    }
    // Tally reads the upstream on to its usage; the retry waits for that, then replays it all.
    const b = await openai(key, 3).chat.completions.create(ask('drop me'), idem('stream-drop')).withResponse();
    expect(b.response.headers.get('idempotent-replayed')).toBe('true');
    expect(text(await chunks(b.data))).toBe('w1 w2 w3 w4 w5 w6 w7 w8 w9 w10');
    expect(w.fake.hits(up.credential) - hits).toBe(1);
    expect(await allSettled(w, userId)).toMatchObject([{ status: 'aborted', charged: 10 }]); // 2 × 0.25 + 10
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 10, held: 0 });
    w.fake.behave(up.credential, {});
  }, 20_000);

  it('a stream the upstream cut is not replayed: its key answers 409 for good (no retry), and its charge stands alone', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    w.fake.behave(up.credential, { words: 20, resetAfterWords: 4, eventGapMs: 5 });
    const hits = w.fake.hits(up.credential);
    const a = await openai(key).chat.completions.create(ask('cut me'), idem('stream-cut')).withResponse();
    try {
      await chunks(a.data);
    } catch {
      // the connection ends early
    }
    const [rec] = await allSettled(w, userId);
    expect(rec).toMatchObject({ status: 'failed', usage_source: 'estimated' });
    const again = await openai(key, 2).chat.completions.create(ask('cut me'), idem('stream-cut')).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(OpenAI.ConflictError);
    expect((again as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ code: 'conflict', message: expect.stringContaining('not kept') });
    expect((again as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry')).toBe('false');
    expect(w.fake.hits(up.credential) - hits).toBe(1);
    expect(await allSettled(w, userId)).toHaveLength(1);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - (rec?.charged ?? 0), held: 0 });
    w.fake.behave(up.credential, {});
  });

  it('reconcile is clean after the replays', async () => {
    const res = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(res.body.drift).toEqual([]);
    expect(res.body.ok).toBe(true);
  });
});
