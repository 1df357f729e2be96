import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, fundedKey, type GatewayWorld, gatewayWorld, priceModel } from './support/gateway-fixture.js';

/**
 * A non-streaming answer's headers come only once the whole answer is generated, so a client asking
 * for a long one makes the upstream miss the first-byte timeout at will. gateway.relay.service.ts
 * counts that (`cut`) as a circuit failure: any client opens any upstream's circuit for everyone.
 */
describe(`gateway: a client cannot open an upstream's circuit (attacker review 3, F3) (${TARGET})`, () => {
  let w: GatewayWorld;
  let up: Server;
  let base = '';
  beforeAll(async () => {
    w = await gatewayWorld({ gateway: { connectTimeoutMs: 1000, firstByteTimeoutMs: 400, idleTimeoutMs: 400, drainTimeoutMs: 1000, maxAttempts: 3, cooldownMs: 30_000, failureThreshold: 3, reapAfterMs: 3_600_000 } });
    // A healthy provider: it answers after generating; a long answer takes long (here > 400 ms).
    up = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as { max_completion_tokens?: number; max_tokens?: number };
        const max = body.max_completion_tokens ?? body.max_tokens ?? 16;
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
        }, max > 1000 ? 1500 : 5);
      });
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(up.address() as AddressInfo).port}/v1`;
  });
  afterAll(async () => {
    await w.close();
    await new Promise((r) => up.close(r));
  });

  it('F3: long non-streaming requests that miss the first-byte timeout are billed as sent and do not open the circuit', async () => {
    await priceModel(w, 'slow-gpt', { input: 1000, output: 1000 });
    expect((await w.svc.post('/v1/gateway/upstreams', { type: 'openai', base_url: base, credentials: 'sk-slow-0000000000000000', models: ['slow-gpt'] })).status).toBe(201);
    const attacker = await fundedKey(w, 1000);
    const victim = await fundedKey(w, 1000);
    const send = (key: string, max: number) =>
      fetch(`${w.base}/gateway/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'slow-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: max }) });
    expect((await send(victim.key, 8)).status).toBe(200);
    const long = await Promise.all([send(attacker.key, 4000), send(attacker.key, 4000), send(attacker.key, 4000)]);
    expect(long.map((r) => r.status)).toEqual([503, 503, 503]);
    // Billed as sent (never 0), each once.
    const recs = await allSettled(w, attacker.userId);
    expect(recs).toHaveLength(3);
    const after = await send(victim.key, 8);
    await after.text();
    expect(after.status).toBe(200);
  });

  it('F3: streams the client leaves (the drain timeout) do not open the circuit', async () => {
    await priceModel(w, 'drain-gpt', { input: 1000, output: 1000 });
    const fake = await addUpstream(w, 'openai', { models: ['drain-gpt'] });
    // A healthy provider streaming a long answer (an event every 100 ms).
    w.fake.behave(fake.credential, { words: 200, eventGapMs: 100 });
    const attacker = await fundedKey(w, 1000);
    const victim = await fundedKey(w, 1000);
    const body = (stream: boolean, max: number) => JSON.stringify({ model: 'drain-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: max, stream });
    const leave = async () => {
      const ac = new AbortController();
      const res = await fetch(`${w.base}/gateway/v1/chat/completions`, { method: 'POST', signal: ac.signal, headers: { authorization: `Bearer ${attacker.key}`, 'content-type': 'application/json' }, body: body(true, 4000) });
      await res.body?.getReader().read(); // the first event, then gone
      ac.abort();
    };
    await Promise.all([leave(), leave(), leave()]);
    await allSettled(w, attacker.userId); // after the drain timeout (1 s) each is cut and counted as the upstream's failure
    w.fake.behave(fake.credential, { words: 2 });
    const res = await fetch(`${w.base}/gateway/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${victim.key}`, 'content-type': 'application/json' }, body: body(false, 8) });
    await res.text();
    expect(res.status).toBe(200);
  });
});
