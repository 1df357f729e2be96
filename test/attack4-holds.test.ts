/**
 * Attacker review 4: holds and refunds around expiry, concurrency and replays (docs/ledger.md,
 * "Rules", "Capture and release", "Workspace pools"). The clock is the test's, so expiry is exact.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client, type Json } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

const key = () => `k_${randomBytes(8).toString('hex')}`;

describe(`attack 4: holds and refunds (${TARGET})`, () => {
  let app: TestApp;
  let now = Date.now();
  const svc = () => client(app.server, app.serviceKey);
  const post = (url: string, body: unknown, idempotencyKey = key()) => svc().post(url, body, { idempotencyKey });
  const balanceOf = async (path: string) => (await svc().get(`${path}/balance`)).body as Json;
  const ledgerCount = async (path: string) => ((await svc().get(`${path}/transactions?limit=200`)).body.data as Json[]).length;
  const expectReconciled = async () => expect((await reconcile(app.database)).drift).toEqual([]);
  const at = (ms: number) => new Date(now + ms).toISOString();

  beforeAll(async () => {
    app = await createTestApp({ credits: { balanceCap: null, signupBonus: 0 } }, { clock: () => new Date(now) });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('a capture and a release of one hold at once: exactly one settles it, the other is 409, and the money moves once', async () => {
    const u = await makeUser(app);
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 100, reason: 'top-up' })).status).toBe(201);
    const holds = await Promise.all(Array.from({ length: 5 }, () => post('/v1/holds', { user_id: u.id, amount: 10 })));
    const settled = await Promise.all(
      holds.flatMap((h) => [
        post(`/v1/holds/${h.body.id}/capture`, { user_id: u.id, amount: 7 }),
        post(`/v1/holds/${h.body.id}/release`, { user_id: u.id }),
        post(`/v1/holds/${h.body.id}/capture`, { user_id: u.id }),
      ]),
    );
    let spent = 0;
    for (let i = 0; i < holds.length; i++) {
      const three = settled.slice(i * 3, i * 3 + 3);
      expect(three.filter((r) => r.status === 200)).toHaveLength(1);
      expect(three.filter((r) => r.status === 409).map((r) => r.body.error.code)).toEqual(['invalid_state', 'invalid_state']);
      spent += Number(three.find((r) => r.status === 200)?.body.captured ?? 0);
    }
    expect(await balanceOf(`/v1/users/${u.id}`)).toMatchObject({ balance: 100 - spent, held: 0, available: 100 - spent });
    await expectReconciled();
  });

  it('a hold past its expiry cannot be captured (409) and its credits are free again; a capture above the hold is 400; nothing moves', async () => {
    const u = await makeUser(app);
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 50, reason: 'top-up' })).status).toBe(201);
    const h = await post('/v1/holds', { user_id: u.id, amount: 30, expires_in_seconds: 60 });
    const over = await post(`/v1/holds/${h.body.id}/capture`, { user_id: u.id, amount: 31 });
    expect(over.status).toBe(400);
    const entries = await ledgerCount(`/v1/users/${u.id}`);
    now += 61_000;
    const late = await post(`/v1/holds/${h.body.id}/capture`, { user_id: u.id });
    expect(late.status).toBe(409);
    expect(late.body.error).toMatchObject({ code: 'invalid_state' });
    expect(await balanceOf(`/v1/users/${u.id}`)).toMatchObject({ balance: 50, held: 0, available: 50 });
    expect(await ledgerCount(`/v1/users/${u.id}`)).toBe(entries);
    await expectReconciled();
  });

  it("a pool's hold is settled only by naming the pool: the member's own account is 404; a member removed meanwhile leaves the hold capturable, and cannot hold again", async () => {
    const owner = await signUp(app);
    const member = await signUp(app);
    const ws = (await owner.api.post('/v1/workspaces', { name: 'Team' })).body.id as string;
    expect((await owner.api.post(`/v1/workspaces/${ws}/members`, { user_id: member.user.id, role: 'member' })).status).toBe(201);
    expect((await post('/v1/credits/grant', { workspace_id: ws, amount: 100, reason: 'pool' })).status).toBe(201);
    expect((await post('/v1/credits/grant', { user_id: member.user.id, amount: 100, reason: 'own' })).status).toBe(201);
    const h = await post('/v1/holds', { workspace_id: ws, user_id: member.user.id, amount: 40 });
    expect(h.status).toBe(201);
    for (const op of ['capture', 'release']) {
      expect((await post(`/v1/holds/${h.body.id}/${op}`, { user_id: member.user.id })).status).toBe(404);
    }
    expect((await owner.api.del(`/v1/workspaces/${ws}/members/${member.user.id}`)).status).toBe(200);
    expect((await post('/v1/holds', { workspace_id: ws, user_id: member.user.id, amount: 1 })).status).toBe(404);
    const captured = await post(`/v1/holds/${h.body.id}/capture`, { workspace_id: ws, amount: 25 });
    expect(captured.body).toMatchObject({ status: 'captured', captured: 25, member_id: member.user.id });
    expect(await balanceOf(`/v1/workspaces/${ws}`)).toMatchObject({ balance: 75, held: 0 });
    expect(await balanceOf(`/v1/users/${member.user.id}`)).toMatchObject({ balance: 100, held: 0 });
    await expectReconciled();
  });

  it('concurrent refunds of a debit whose grant expired: never more than the debit, and only what returns to unexpired grants is spendable', async () => {
    const u = await makeUser(app);
    const short = await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'promo', expires_at: at(60_000) });
    expect(short.status).toBe(201);
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'long', expires_at: at(3_600_000) })).status).toBe(201);
    const d = await post('/v1/credits/debit', { user_id: u.id, amount: 15, reason: 'job' });
    expect(d.status).toBe(201);
    now += 61_000;
    const refunds = await Promise.all(Array.from({ length: 25 }, () => post('/v1/credits/refund', { user_id: u.id, amount: 1, reason: 'failed job', transaction_id: d.body.transaction.id })));
    expect(refunds.filter((r) => r.status === 201)).toHaveLength(15);
    expect(refunds.filter((r) => r.status === 409)).toHaveLength(10);
    // 5 went back to the live grant; the expired grant's 10 came back and left again.
    expect(await balanceOf(`/v1/users/${u.id}`)).toMatchObject({ balance: 10, available: 10, total_spent: 0 });
    expect((await post('/v1/credits/debit', { user_id: u.id, amount: 11, reason: 'more' })).status).toBe(402);
    await expectReconciled();
  });

  it('a refund that came back partly expired replays its first answer byte for byte, after the account moved on, and moves nothing', async () => {
    const u = await makeUser(app);
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'promo', expires_at: at(60_000) })).status).toBe(201);
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'long', expires_at: at(3_600_000) })).status).toBe(201);
    const d = await post('/v1/credits/debit', { user_id: u.id, amount: 15, reason: 'job', metadata: { job: 'j1' } });
    now += 61_000;
    const k = key();
    const body = { user_id: u.id, amount: 12, reason: 'failed job', transaction_id: d.body.transaction.id, metadata: { why: 'timeout' } };
    const first = await post('/v1/credits/refund', body, k);
    expect(first.status).toBe(201);
    expect((await post('/v1/credits/debit', { user_id: u.id, amount: 2, reason: 'next' })).status).toBe(201);
    const entries = await ledgerCount(`/v1/users/${u.id}`);
    const again = await post('/v1/credits/refund', body, k);
    expect(again.status).toBe(201);
    expect(JSON.stringify(again.body)).toBe(JSON.stringify(first.body));
    expect(await ledgerCount(`/v1/users/${u.id}`)).toBe(entries);
    // Another body under the key is refused.
    expect((await post('/v1/credits/refund', { ...body, amount: 3 }, k)).status).toBe(409);
    await expectReconciled();
  });

  it('a capture that spent past-due credits, refunded, gives them back only to expire again: no credits made', async () => {
    const u = await makeUser(app);
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'promo', expires_at: at(60_000) })).status).toBe(201);
    const h = await post('/v1/holds', { user_id: u.id, amount: 10, expires_in_seconds: 600 });
    now += 61_000;
    const c = await post(`/v1/holds/${h.body.id}/capture`, { user_id: u.id });
    expect(c.body).toMatchObject({ status: 'captured', captured: 10 });
    const r = await post('/v1/credits/refund', { user_id: u.id, amount: 10, reason: 'job failed', transaction_id: c.body.transaction_id });
    expect(r.status).toBe(201);
    expect(await balanceOf(`/v1/users/${u.id}`)).toMatchObject({ balance: 0, available: 0, held: 0 });
    expect((await post('/v1/credits/debit', { user_id: u.id, amount: 1, reason: 'x' })).status).toBe(402);
    await expectReconciled();
  });
});
