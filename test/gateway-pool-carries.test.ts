import { randomBytes } from 'node:crypto';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, fundedKey, type GatewayWorld, gatewayWorld, priceModel } from './support/gateway-fixture.js';

/**
 * Review R9: in a workspace pool, each member's sub-credit fraction is carried apart, so what the
 * pool's captures charge a member (the capture names the member who spent: docs/ledger.md,
 * "Workspace pools") stays within one credit of that member's exact spend, however the members'
 * requests interleave. Before, one fraction was carried per pool and a member whose request crossed
 * a whole credit was charged for the others' fractions.
 */
describe(`gateway: a pool carries each member's fraction (R9, ${TARGET})`, () => {
  let w: GatewayWorld;
  const openai = (apiKey: string) => new OpenAI({ baseURL: `${w.base}/gateway/v1`, apiKey, maxRetries: 0 });

  beforeAll(async () => {
    w = await gatewayWorld();
    // 0.05 credit a token, in and out.
    await priceModel(w, 'pool-gpt', { input: 50_000, output: 50_000 });
    const up = await addUpstream(w, 'openai', { models: ['pool-gpt'] });
    w.fake.behave(up.credential, { words: 9 });
  });
  afterAll(async () => {
    await w.close();
  });

  it("two members' many tiny requests, interleaved and concurrent: each is charged floor(their exact spend), never another's fraction", async () => {
    const a = await fundedKey(w, 0);
    const b = await fundedKey(w, 0);
    const ws = (await w.svc.post('/v1/workspaces', { name: 'r9 pool', owner_id: a.userId })).body.id as string;
    expect((await w.svc.post(`/v1/workspaces/${ws}/members`, { user_id: b.userId, role: 'member' })).status).toBe(201);
    expect((await w.svc.post('/v1/credits/grant', { workspace_id: ws, amount: 1000, reason: 'pool' }, { idempotencyKey: `r9-${randomBytes(6).toString('hex')}` })).status).toBe(201);
    // The API does not issue workspace keys yet: the column is set directly, as a future route would.
    for (const k of [a, b]) await w.app.database.db.updateTable('api_keys').set({ workspace_id: ws }).where('id', '=', k.keyId).execute();

    // A: 9 words in, 9 out = 0.9 credit; B: 1 in, 1 out = 0.1. Interleaved A, B, A, B …, the pool's
    // one running total crossed a whole credit on every B request: B was charged 1 a request for 0.1.
    const askA = () => openai(a.key).chat.completions.create({ model: 'pool-gpt', messages: [{ role: 'user', content: 'a b c d e f g h i' }], max_tokens: 9 });
    const askB = () => openai(b.key).chat.completions.create({ model: 'pool-gpt', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 });
    for (let i = 0; i < 15; i++) {
      await askA();
      await askB();
    }
    // And in any order: pairs at once.
    for (let i = 0; i < 10; i++) await Promise.all([askA(), askB()]);

    const recsA = await allSettled(w, a.userId);
    const recsB = await allSettled(w, b.userId);
    expect(recsA).toHaveLength(25);
    expect(recsB).toHaveLength(25);
    const exactA = recsA.reduce((s, r) => s + r.cost_micros, 0);
    const exactB = recsB.reduce((s, r) => s + r.cost_micros, 0);
    expect([exactA, exactB]).toEqual([25 * 900_000, 25 * 100_000]);

    // What the pool's ledger charged each member: its captures, which name the member.
    const captures = (await w.svc.get(`/v1/workspaces/${ws}/transactions?type=capture&limit=200`)).body.data as { amount: number; member_id: string }[];
    const chargedTo = (user: string) => -captures.filter((c) => c.member_id === user).reduce((s, c) => s + c.amount, 0);
    expect(chargedTo(a.userId)).toBe(Math.floor(exactA / 1_000_000)); // 22.5 → 22
    expect(chargedTo(b.userId)).toBe(Math.floor(exactB / 1_000_000)); // 2.5 → 2
    for (const [charged, exact] of [[chargedTo(a.userId), exactA], [chargedTo(b.userId), exactB]] as const) {
      expect(exact - charged * 1_000_000).toBeGreaterThanOrEqual(0);
      expect(exact - charged * 1_000_000).toBeLessThan(1_000_000);
    }
    // The records agree with the ledger, and the pool paid the sum.
    expect(recsA.reduce((s, r) => s + r.charged, 0)).toBe(22);
    expect(recsB.reduce((s, r) => s + r.charged, 0)).toBe(2);
    expect((await w.svc.get(`/v1/workspaces/${ws}/balance`)).body).toMatchObject({ balance: 1000 - 24, held: 0 });

    const rec = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(rec.body.drift).toEqual([]);
    // The member carries are checked on their own: one drifted micro-credit is reported, naming the member.
    const db = w.app.database.db;
    const carry = await db.selectFrom('gateway_carries').select(['total_micros']).where('account_id', '=', `acc_w_${ws}`).where('member_id', '=', b.userId).executeTakeFirstOrThrow();
    await db.updateTable('gateway_carries').set({ total_micros: Number(carry.total_micros) + 1 }).where('account_id', '=', `acc_w_${ws}`).where('member_id', '=', b.userId).execute();
    const drifted = await w.svc.post('/v1/admin/reconcile', undefined);
    expect(drifted.body.drift).toContainEqual(expect.objectContaining({ account_id: `acc_w_${ws}`, check: `gateway: total_micros = sum(cost_micros) [member ${b.userId}]` }));
    await db.updateTable('gateway_carries').set({ total_micros: carry.total_micros }).where('account_id', '=', `acc_w_${ws}`).where('member_id', '=', b.userId).execute();
    expect((await w.svc.post('/v1/admin/reconcile', undefined)).body.drift).toEqual([]);
  }, 60_000);
});
