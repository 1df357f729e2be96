import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { addUpstream, fundedKey, type GatewayWorld, gatewayWorld, priceModel } from './support/gateway-fixture.js';

/** Attacker review: the half-open probe of the circuit breaker (gateway.router.ts). */
describe(`gateway: half-open probes a client cannot jam (attacker review 3, F1–F2) (${TARGET})`, () => {
  let w: GatewayWorld;
  const chat = (key: string, model: string) =>
    fetch(`${w.base}/gateway/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }) });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeAll(async () => {
    w = await gatewayWorld({ gateway: { connectTimeoutMs: 1000, firstByteTimeoutMs: 2000, idleTimeoutMs: 2000, drainTimeoutMs: 1000, maxAttempts: 3, cooldownMs: 200, failureThreshold: 2, reapAfterMs: 3_600_000 } });
  });
  afterAll(async () => {
    await w.close();
  });

  it('F1: a 403 answered to the half-open probe does not take the upstream out of service for good', async () => {
    const model = 'probe-403';
    await priceModel(w, model);
    const main = await addUpstream(w, 'openai', { models: [model], priority: 1 });
    await addUpstream(w, 'openai', { models: [model], priority: 2 }); // the backup that serves meanwhile
    const { key } = await fundedKey(w, 1000);
    // main fails twice (threshold 2): its circuit opens; backup serves.
    w.fake.behave(main.credential, { status: 500 });
    for (let i = 0; i < 2; i++) expect((await chat(key, model)).status).toBe(200);
    await sleep(300); // cooldown over: the next request is main's half-open probe
    // The client's request is one this credential may not make: 403 (any client can provoke one, docs G11).
    w.fake.behave(main.credential, { status: 403 });
    expect((await chat(key, model)).status).toBe(200);
    const hitsAfterProbe = w.fake.hits(main.credential);
    // main is healthy again; well past any cooldown, requests must reach it again.
    w.fake.behave(main.credential, {});
    await sleep(2500); // the router re-reads its list every 2 s: that must not matter either
    for (let i = 0; i < 5; i++) expect((await chat(key, model)).status).toBe(200);
    expect(w.fake.hits(main.credential)).toBeGreaterThan(hitsAfterProbe);
  });

  it('F2: a half-open upstream listed but never called does not stay "probing" for good', async () => {
    const model = 'probe-untried';
    await priceModel(w, model);
    const first = await addUpstream(w, 'openai', { models: [model], priority: 1 });
    const second = await addUpstream(w, 'openai', { models: [model], priority: 2 });
    const { key } = await fundedKey(w, 1000);
    // Both fail twice: both circuits open (the client gets 5xx, pays nothing).
    w.fake.behave(first.credential, { status: 500 });
    w.fake.behave(second.credential, { status: 500 });
    for (let i = 0; i < 2; i++) await (await chat(key, model)).text();
    w.fake.behave(first.credential, {});
    w.fake.behave(second.credential, {});
    await sleep(300);
    // One request: candidates() marks BOTH half-open and probing; `first` serves it, `second` is never called.
    expect((await chat(key, model)).status).toBe(200);
    // Later `first` fails; `second` is healthy and must take over.
    w.fake.behave(first.credential, { status: 500 });
    const secondHits = w.fake.hits(second.credential);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await chat(key, model);
      await res.text();
      statuses.push(res.status);
      await sleep(300);
    }
    expect(w.fake.hits(second.credential)).toBeGreaterThan(secondHits);
    expect(statuses.every((s) => s === 200)).toBe(true);
  });
});
