import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reapStale } from '../src/modules/gateway/gateway.relay.service.js';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, balanceOf, fundedKey, type GatewayWorld, gatewayWorld, micros, priceModel } from './support/gateway-fixture.js';

/**
 * Routing: failover across upstream accounts (429 with Retry-After, 500, a dead address), the
 * circuit breaker, 401 disabling a credential — one charge per request whatever the attempts. And
 * the reaper's crash policy.
 */
describe(`gateway: failover, breaker and reaper (${TARGET})`, () => {
  let w: GatewayWorld;
  const openai = (apiKey: string) => new OpenAI({ baseURL: `${w.base}/gateway/v1`, apiKey, maxRetries: 0 });
  const health = async (id: string) => (await w.svc.get(`/v1/gateway/upstreams/${id}`)).body.health;

  beforeAll(async () => {
    w = await gatewayWorld({ gateway: { connectTimeoutMs: 1000, firstByteTimeoutMs: 1500, idleTimeoutMs: 2000, drainTimeoutMs: 2000, maxAttempts: 3, cooldownMs: 60_000, failureThreshold: 2, reapAfterMs: 3_600_000 } });
  });
  afterAll(async () => {
    await w.close();
  });

  it('one of three upstreams answering 429, one 500: every request is served by the third and charged once', async () => {
    await priceModel(w, 'fo-gpt');
    const limited = await addUpstream(w, 'openai', { models: ['fo-gpt'] });
    const broken = await addUpstream(w, 'openai', { models: ['fo-gpt'] });
    const good = await addUpstream(w, 'openai', { models: ['fo-gpt'] });
    w.fake.behave(limited.credential, { status: 429, retryAfter: '120' });
    w.fake.behave(broken.credential, { status: 500 });
    const { userId, key } = await fundedKey(w, 1000);
    for (let i = 0; i < 8; i++) {
      const r = await openai(key).chat.completions.create({ model: 'fo-gpt', messages: [{ role: 'user', content: 'a b' }], max_tokens: 4 });
      expect(r.choices[0]?.message.content).toBe('w1 w2 w3 w4');
    }
    const recs = await allSettled(w, userId);
    expect(recs).toHaveLength(8);
    for (const r of recs) expect(r).toMatchObject({ status: 'completed', charged: expect.any(Number), cost_micros: micros(2, 4), upstream_id: good.id });
    expect(recs.reduce((s, r) => s + r.charged, 0)).toBe(36); // 8 × 4.5
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 1003 - 36, held: 0 });
    // 429 with Retry-After opened its circuit at once; 500 twice in a row (threshold 2) opened it.
    expect(w.fake.hits(limited.credential)).toBe(1);
    expect(w.fake.hits(broken.credential)).toBeLessThanOrEqual(2);
    const h = await health(limited.id);
    expect(h).toMatchObject({ state: 'open', error_count: 1 });
    expect(h.cooldown_until).not.toBeNull();
    expect((await health(good.id)).success_count).toBe(8);
  });

  it('an upstream that is down (connection refused) fails over; when none can serve, 503 and nothing is charged', async () => {
    await priceModel(w, 'dead-gpt');
    const dead = await w.svc.post('/v1/gateway/upstreams', { type: 'openai', base_url: 'http://127.0.0.1:9/v1', credentials: 'sk-dead-000000000000', models: ['dead-gpt'], priority: 1 });
    const backup = await addUpstream(w, 'openai', { models: ['dead-gpt'], priority: 2 });
    const { userId, key } = await fundedKey(w, 100);
    const r = await openai(key).chat.completions.create({ model: 'dead-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    expect(r.choices[0]?.message.content).toBe('w1 w2');
    expect(w.fake.hits(backup.credential)).toBe(1);
    expect((await allSettled(w, userId))[0]).toMatchObject({ attempts: 2, upstream_id: backup.id });
    // Now the backup fails too: 503 in OpenAI format, the hold released, nothing charged.
    w.fake.behave(backup.credential, { status: 503 });
    const before = await balanceOf(w, userId);
    const err = await openai(key).chat.completions.create({ model: 'dead-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as { status: number }).status).toBeGreaterThanOrEqual(500);
    await allSettled(w, userId);
    expect(await balanceOf(w, userId)).toMatchObject({ balance: before.balance, held: 0 });
    expect(dead.status).toBe(201);
  });

  it('401 from an upstream disables that credential and says so; a new credential re-enables it', async () => {
    await priceModel(w, 'auth-gpt');
    const revoked = await addUpstream(w, 'openai', { models: ['auth-gpt'], priority: 1 });
    const other = await addUpstream(w, 'openai', { models: ['auth-gpt'], priority: 2 });
    w.fake.behave(revoked.credential, { status: 401 });
    const { key } = await fundedKey(w, 100);
    await openai(key).chat.completions.create({ model: 'auth-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    await openai(key).chat.completions.create({ model: 'auth-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    expect(w.fake.hits(revoked.credential)).toBe(1);
    expect(w.fake.hits(other.credential)).toBe(2);
    await new Promise((r) => setTimeout(r, 100));
    expect(await health(revoked.id)).toMatchObject({ state: 'disabled', last_error: 'credential refused: HTTP 401' });
    const fixed = await w.svc.patch(`/v1/gateway/upstreams/${revoked.id}`, { credentials: 'sk-fixed-000000000000' });
    expect(fixed.body.health.state).toBe('closed');
  });

  it('the reaper settles a request its process never settled, once, by the written policy', async () => {
    await priceModel(w, 'hang-gpt');
    const hang = await addUpstream(w, 'openai', { models: ['hang-gpt'] });
    w.fake.behave(hang.credential, { hang: true });
    const { userId, key } = await fundedKey(w, 1000);
    const pending = openai(key).chat.completions.create({ model: 'hang-gpt', messages: [{ role: 'user', content: 'are you there' }], max_tokens: 4 }).catch((e: unknown) => e);
    // While it hangs upstream (a stand-in for a dead process), the reaper comes by an hour later.
    let reaped = 0;
    for (let i = 0; i < 50 && reaped === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      reaped = await reapStale(w.app.services.gateway.relay, w.app.database.db, new Date(Date.now() + 2 * 3_600_000), 3_600_000);
    }
    expect(reaped).toBe(1);
    const [rec] = await allSettled(w, userId);
    expect(rec).toMatchObject({ status: 'failed', usage_source: 'estimated' });
    expect(rec?.charged).toBeGreaterThan(0);
    // The live request then times out; its own settlement finds the record final and moves nothing.
    await pending;
    await new Promise((r) => setTimeout(r, 200));
    const after = await balanceOf(w, userId);
    expect(after).toMatchObject({ balance: 1003 - (rec?.charged ?? 0), held: 0 });
    expect(await allSettled(w, userId)).toHaveLength(1);
  });
  it('reconcile is clean: ledger and gateway invariants (carries, captures) hold after everything above', async () => {
    const res = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(res.status).toBe(200);
    expect(res.body.drift).toEqual([]);
    expect(res.body.ok).toBe(true);
  });
});

describe(`gateway: the circuit breaker opens, cools down and closes after a half-open probe (${TARGET})`, () => {
  let w: GatewayWorld;
  const openai = (apiKey: string) => new OpenAI({ baseURL: `${w.base}/gateway/v1`, apiKey, maxRetries: 0 });

  beforeAll(async () => {
    w = await gatewayWorld({ gateway: { connectTimeoutMs: 1000, firstByteTimeoutMs: 1500, idleTimeoutMs: 2000, drainTimeoutMs: 2000, maxAttempts: 3, cooldownMs: 400, failureThreshold: 2, reapAfterMs: 3_600_000 } });
  });
  afterAll(async () => {
    await w.close();
  });

  it('closed → open after 2 failures (skipped while open) → half-open probe after the cooldown → closed', async () => {
    await priceModel(w, 'cb-gpt');
    const flaky = await addUpstream(w, 'openai', { models: ['cb-gpt'], priority: 1 });
    const backup = await addUpstream(w, 'openai', { models: ['cb-gpt'], priority: 2 });
    w.fake.behave(flaky.credential, { status: 502 });
    const { key } = await fundedKey(w, 500);
    const ask = () => openai(key).chat.completions.create({ model: 'cb-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });
    await ask();
    await ask();
    expect(w.fake.hits(flaky.credential)).toBe(2);
    await ask(); // open: not tried
    expect(w.fake.hits(flaky.credential)).toBe(2);
    expect(w.fake.hits(backup.credential)).toBe(3);
    await new Promise((r) => setTimeout(r, 150));
    expect((await w.svc.get(`/v1/gateway/upstreams/${flaky.id}`)).body.health).toMatchObject({ state: 'open', consecutive_failures: 2 });
    w.fake.behave(flaky.credential, {});
    await new Promise((r) => setTimeout(r, 450));
    await ask(); // cooldown over: one half-open probe, which succeeds
    expect(w.fake.hits(flaky.credential)).toBe(3);
    expect(w.fake.hits(backup.credential)).toBe(3);
    await new Promise((r) => setTimeout(r, 150));
    expect((await w.svc.get(`/v1/gateway/upstreams/${flaky.id}`)).body.health).toMatchObject({ state: 'closed', consecutive_failures: 0, cooldown_until: null });
  });
});
