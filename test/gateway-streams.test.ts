import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, balanceOf, fundedKey, type GatewayWorld, gatewayWorld, micros, priceModel, settledRecord } from './support/gateway-fixture.js';

/**
 * Streams (SSE) through the OpenAI-compatible relay: usage is always asked of the upstream and
 * billed from the stream; a client that leaves is billed what the upstream billed; a stream that
 * never reports usage is billed an estimate capped at the hold; concurrent streams on one budget
 * never overspend.
 */
describe(`gateway: OpenAI streams (${TARGET})`, () => {
  let w: GatewayWorld;
  let up: { id: string; credential: string };
  const openai = (apiKey: string) => new OpenAI({ baseURL: `${w.base}/gateway/v1`, apiKey, maxRetries: 0 });
  const ask = (content: string, max = 64) => ({ model: 'fake-gpt', messages: [{ role: 'user' as const, content }], max_tokens: max, stream: true as const });

  beforeAll(async () => {
    w = await gatewayWorld();
    await priceModel(w, 'fake-gpt');
    up = await addUpstream(w, 'openai', { models: ['fake-gpt'] });
  });
  afterAll(async () => {
    await w.close();
  });

  it('charges equal the provider bill, with and without the client asking for usage; the injected usage chunk is stripped', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    const before = w.fake.bill(up.credential);
    w.fake.behave(up.credential, { words: 7 });
    // Without include_usage: the client sees text only.
    const s1 = await openai(key).chat.completions.create(ask('a b c')).withResponse();
    let text = '';
    let sawUsage = false;
    for await (const chunk of s1.data) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) sawUsage = true;
    }
    expect(text).toBe('w1 w2 w3 w4 w5 w6 w7');
    expect(sawUsage).toBe(false);
    // Tally asked the upstream for usage anyway.
    expect(w.fake.lastBody(up.credential)?.['stream_options']).toEqual({ include_usage: true });
    // With include_usage: the client gets the usage chunk.
    const s2 = await openai(key).chat.completions.create({ ...ask('d e'), stream_options: { include_usage: true } }).withResponse();
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const chunk of s2.data) if (chunk.usage) usage = chunk.usage;
    expect(usage).toMatchObject({ prompt_tokens: 2, completion_tokens: 7 });

    const r1 = await settledRecord(w, s1.response.headers.get('x-request-id') as string);
    const r2 = await settledRecord(w, s2.response.headers.get('x-request-id') as string);
    expect(r1).toMatchObject({ status: 'completed', usage_source: 'provider', cost_micros: micros(3, 7), stream: true });
    expect(r2).toMatchObject({ status: 'completed', usage_source: 'provider', cost_micros: micros(2, 7) });
    expect(typeof r1['ttft_ms']).toBe('number');
    const after = w.fake.bill(up.credential);
    const billed = micros(after.input - before.input, after.output - before.output);
    expect(r1.cost_micros + r2.cost_micros).toBe(billed);
    // 7.75 + 7.5 = 15.25 credits: 15 charged (the first request's 0.75 carried into the second).
    expect(r1.charged + r2.charged).toBe(15);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 15, held: 0 });
  });

  it('a client that aborts mid-stream is billed what the upstream billed (Tally reads on to the usage)', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    w.fake.behave(up.credential, { words: 12, eventGapMs: 15 });
    const before = w.fake.bill(up.credential);
    const controller = new AbortController();
    const s = await openai(key).chat.completions.create(ask('abort me now'), { signal: controller.signal }).withResponse();
    let n = 0;
    try {
      for await (const _ of s.data) {
        if (++n === 3) controller.abort();
      }
    } catch {
      // the SDK raises on abort
    }
    const rec = await settledRecord(w, s.response.headers.get('x-request-id') as string);
    const after = w.fake.bill(up.credential);
    expect(after.completedStreams - before.completedStreams).toBe(1);
    expect(rec).toMatchObject({ status: 'aborted', usage_source: 'provider', cost_micros: micros(after.input - before.input, after.output - before.output) });
    expect(rec.cost_micros).toBe(micros(3, 12));
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 12, held: 0 }); // 12.75 → 12, 0.75 carried
    w.fake.behave(up.credential, {});
  });

  it('random client aborts, concurrent: every stream is billed exactly what the upstream billed', async () => {
    const { userId, key } = await fundedKey(w, 5000);
    w.fake.behave(up.credential, { words: 10, eventGapMs: 10 });
    const before = w.fake.bill(up.credential);
    await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const controller = new AbortController();
        const stopAt = i % 4 === 0 ? Infinity : 1 + Math.floor(Math.random() * 8);
        const s = await openai(key).chat.completions.create(ask(`abort number ${i}`), { signal: controller.signal });
        let n = 0;
        try {
          for await (const _ of s) if (++n === stopAt) controller.abort();
        } catch {
          // aborted
        }
      }),
    );
    const recs = await allSettled(w, userId);
    const after = w.fake.bill(up.credential);
    expect(recs).toHaveLength(12);
    expect(after.completedStreams - before.completedStreams).toBe(12);
    for (const r of recs) expect(r.usage_source).toBe('provider');
    expect(recs.reduce((sum, r) => sum + r.cost_micros, 0)).toBe(micros(after.input - before.input, after.output - before.output));
    const charged = recs.reduce((sum, r) => sum + r.charged, 0);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 5003 - charged, held: 0 });
    w.fake.behave(up.credential, {});
  });

  it('a stream that never reports usage is billed an estimate capped at the hold, marked estimated (never 0, never a full refund)', async () => {
    const { userId, key } = await fundedKey(w, 1000);
    w.fake.behave(up.credential, { words: 40, noUsage: true });
    const s = await openai(key).chat.completions.create(ask('no usage here please', 64)).withResponse();
    for await (const _ of s.data) {
      // read to the end
    }
    const rec = await settledRecord(w, s.response.headers.get('x-request-id') as string);
    expect(rec).toMatchObject({ status: 'completed', usage_source: 'estimated' });
    expect(rec.cost_micros).toBeGreaterThan(0);
    expect(rec.charged).toBeGreaterThan(0);
    expect(rec.charged).toBeLessThanOrEqual(rec['held'] as number);
    expect((await balanceOf(w, userId)).held).toBe(0);
    w.fake.behave(up.credential, {});
  });

  it('an upstream that resets mid-stream is billed an estimate of what was streamed', async () => {
    const { key } = await fundedKey(w, 1000);
    w.fake.behave(up.credential, { words: 20, resetAfterWords: 4, eventGapMs: 10 });
    const s = await openai(key).chat.completions.create(ask('reset please', 64)).withResponse();
    try {
      for await (const _ of s.data) {
        // read until the reset
      }
    } catch {
      // the connection ends early
    }
    const rec = await settledRecord(w, s.response.headers.get('x-request-id') as string);
    expect(rec).toMatchObject({ status: 'failed', usage_source: 'estimated' });
    expect(rec.charged).toBeGreaterThan(0);
    // The estimate counts the output that was streamed before the reset, and stays within the hold.
    expect(rec.tokens['output']).toBeGreaterThan(0);
    expect(rec.charged).toBeLessThanOrEqual(rec['held'] as number);
    w.fake.behave(up.credential, {});
  });

  it('200 concurrent streams on one budget admit exactly floor(available / hold) and never overspend', async () => {
    const slow = await addUpstream(w, 'openai', { models: ['slow-gpt'] });
    await priceModel(w, 'slow-gpt');
    w.fake.behave(slow.credential, { words: 3 });
    const body = { model: 'slow-gpt', messages: [{ role: 'user' as const, content: 'race race race' }], max_tokens: 8, stream: true as const };
    // Learn the hold of this exact body on a throwaway account.
    const probe = await fundedKey(w, 1000);
    const p = await openai(probe.key).chat.completions.create(body).withResponse();
    for await (const _ of p.data) {
      // drain
    }
    const hold = (await settledRecord(w, p.response.headers.get('x-request-id') as string))['held'] as number;
    expect(hold).toBeGreaterThan(1);
    const { userId, key } = await fundedKey(w, 10 * hold + Math.floor(hold / 2) - 3); // + 3 sign-up bonus
    const available = (await balanceOf(w, userId)).available;
    const before = w.fake.bill(slow.credential);
    const hitsBefore = w.fake.hits(slow.credential);
    // The upstream answers nobody until every request has either been refused or reached it, so
    // no hold is released while others are still being decided.
    let open!: () => void;
    w.fake.behave(slow.credential, { words: 3, gate: new Promise<void>((r) => (open = r)) });
    let refused = 0;
    const all = Promise.all(
      Array.from({ length: 200 }, async () => {
        try {
          const s = await openai(key).chat.completions.create(body);
          for await (const _ of s) {
            // drain
          }
          return 200;
        } catch (e) {
          refused++;
          return (e as { status?: number }).status ?? -1;
        }
      }),
    );
    while (refused + w.fake.hits(slow.credential) - hitsBefore < 200) await new Promise((r) => setTimeout(r, 20));
    open();
    const results = await all;
    expect(results.filter((s) => s === 200).length).toBe(Math.floor(available / hold));
    expect(results.filter((s) => s === 402).length).toBe(200 - Math.floor(available / hold));
    const recs = await allSettled(w, userId);
    const after = w.fake.bill(slow.credential);
    const charged = recs.reduce((s, r) => s + r.charged, 0);
    expect(recs.reduce((s, r) => s + r.cost_micros, 0)).toBe(micros(after.input - before.input, after.output - before.output));
    expect(await balanceOf(w, userId)).toMatchObject({ balance: available - charged, held: 0 });
  }, 60_000);
  it('reconcile is clean: ledger and gateway invariants (carries, captures) hold after everything above', async () => {
    const res = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(res.status).toBe(200);
    expect(res.body.drift).toEqual([]);
    expect(res.body.ok).toBe(true);
  });
});
