import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, balanceOf, fundedKey, type GatewayWorld, gatewayWorld, priceModel } from './support/gateway-fixture.js';

/**
 * Opens and settlements are group-committed (docs/gateway.md, "Batched opens and settlements"):
 * requests arriving together share one transaction. Batching must change nothing a client or the
 * ledger can see: every request held and settled once, each carry's captures exactly
 * floor(its exact total), the balance equal to its ledger, one bad request failing alone.
 */
describe(`gateway: batched opens and settlements (${TARGET})`, () => {
  let w: GatewayWorld;
  const chat = (key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    fetch(`${w.base}/gateway/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  let upstream: { id: string; credential: string };

  beforeAll(async () => {
    w = await gatewayWorld();
    await priceModel(w, 'batch-gpt');
    upstream = await addUpstream(w, 'openai', { models: ['batch-gpt'] });
    // A little upstream latency lines requests up, as real load does.
    w.fake.behave(upstream.credential, { latencyMs: 5, words: 3 });
  });
  afterAll(async () => {
    await w.close();
  });

  it('120 concurrent requests of one account: batches run, each request is charged once, captures are floor(exact total)', async () => {
    const { userId, key } = await fundedKey(w, 5000);
    const before = w.app.services.gateway.relay.batching;
    const [opens0, settles0] = [before.opens.batches, before.settles.batches];
    // The upstream answers them all at once, so their settlements arrive together.
    let release = () => {};
    w.fake.behave(upstream.credential, { words: 3, gate: new Promise<void>((r) => (release = r)) });
    const hits0 = w.fake.hits(upstream.credential);
    // 1 to 3 words in (0.25 credit each) and 3 out (1 each): fractions on most requests.
    const pending = Promise.all(
      Array.from({ length: 120 }, (_, i) => chat(key, { model: 'batch-gpt', messages: [{ role: 'user', content: ['one', 'one two', 'one two three'][i % 3] }], max_tokens: 3 })),
    );
    for (let i = 0; i < 600 && w.fake.hits(upstream.credential) < hits0 + 120; i++) await new Promise((r) => setTimeout(r, 10));
    release();
    const answers = await pending;
    w.fake.behave(upstream.credential, { latencyMs: 5, words: 3 });
    expect(answers.map((a) => a.status)).toEqual(Array(120).fill(200));
    await Promise.all(answers.map((a) => a.text()));
    const recs = await allSettled(w, userId);
    expect(recs).toHaveLength(120);
    expect(recs.every((r) => r.status === 'completed' && r.usage_source === 'provider')).toBe(true);
    const exact = recs.reduce((s, r) => s + r.cost_micros, 0);
    const charged = recs.reduce((s, r) => s + r.charged, 0);
    expect(exact).toBe(40 * (250_000 + 3_000_000) + 40 * (500_000 + 3_000_000) + 40 * (750_000 + 3_000_000));
    expect(charged).toBe(Math.floor(exact / 1_000_000));
    expect(await balanceOf(w, userId)).toMatchObject({ balance: 5003 - charged, held: 0 });
    const after = w.app.services.gateway.relay.batching;
    // The point of it: requests shared transactions.
    expect(after.settles.batches).toBeGreaterThan(settles0);
    expect(after.settles.largest).toBeGreaterThan(1);
    // On PGlite (in process, one connection) requests reach the open one by one: each waits for its
    // key lookup, which waits behind the open before it. Their settlements batch there too.
    if (TARGET === 'postgres') expect(after.opens.batches).toBeGreaterThan(opens0);
    expect(after.opens.fallbacks + after.settles.fallbacks).toBe(before.opens.fallbacks + before.settles.fallbacks);
  });

  it('many accounts at once, with an Idempotency-Key raced twice among them: the twin gets 409 alone, the rest are served', async () => {
    const users = await Promise.all(Array.from({ length: 6 }, () => fundedKey(w, 1000)));
    const idem = `race-${randomBytes(6).toString('hex')}`;
    const [first] = users as [(typeof users)[number]];
    const body = { model: 'batch-gpt', messages: [{ role: 'user', content: 'one two' }], max_tokens: 3 };
    const answers = await Promise.all([
      chat(first.key, body, { 'idempotency-key': idem }),
      chat(first.key, body, { 'idempotency-key': idem }),
      ...users.flatMap((u) => Array.from({ length: 8 }, () => chat(u.key, body))),
    ]);
    const statuses = answers.map((a) => a.status);
    const bodies = await Promise.all(answers.map((a) => a.text()));
    const twins = `twins answered ${statuses[0]} ${bodies[0]?.slice(0, 300)} / ${statuses[1]} ${bodies[1]?.slice(0, 300)}`;
    // The two twins: one served, the other 409 (in flight) or a replay of the first (200).
    expect(statuses.slice(2)).toEqual(Array(48).fill(200));
    expect(statuses.slice(0, 2).filter((s) => s === 200).length, twins).toBeGreaterThanOrEqual(1);
    expect(statuses.slice(0, 2).every((s) => s === 200 || s === 409), twins).toBe(true);
    for (const [i, u] of users.entries()) {
      const recs = await allSettled(w, u.userId);
      expect(recs).toHaveLength(i === 0 ? 9 : 8);
      const charged = recs.reduce((s, r) => s + r.charged, 0);
      expect(charged).toBe(Math.floor(recs.reduce((s, r) => s + r.cost_micros, 0) / 1_000_000));
      expect(await balanceOf(w, u.userId)).toMatchObject({ balance: 1003 - charged, held: 0 });
    }
  });

  it('a request its account cannot cover is refused alone while the others of its batch go through', async () => {
    const rich = await fundedKey(w, 2000);
    const fallbacks0 = w.app.services.gateway.relay.batching.opens.fallbacks;
    const poor = await fundedKey(w, 0); // the sign-up bonus (3) covers no request's hold here
    const body = { model: 'batch-gpt', messages: [{ role: 'user', content: 'one' }], max_tokens: 3 };
    const answers = await Promise.all([...Array.from({ length: 10 }, () => chat(rich.key, body)), chat(poor.key, { ...body, max_tokens: 64 }), ...Array.from({ length: 10 }, () => chat(rich.key, body))]);
    const statuses = answers.map((a) => a.status);
    await Promise.all(answers.map((a) => a.text()));
    expect(statuses[10]).toBe(402);
    expect([...statuses.slice(0, 10), ...statuses.slice(11)]).toEqual(Array(20).fill(200));
    expect(await allSettled(w, poor.userId)).toHaveLength(0);
    // Refused inside its batch as a value: the batch did not fail and run again one by one.
    expect(w.app.services.gateway.relay.batching.opens.fallbacks).toBe(fallbacks0);
    expect(await balanceOf(w, poor.userId)).toMatchObject({ balance: 3, held: 0 });
  });

  it('reconcile is clean after everything above', async () => {
    const res = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(res.status).toBe(200);
    expect(res.body.drift).toEqual([]);
    expect(res.body.ok).toBe(true);
  });
});
