import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

const key = () => `k_${randomBytes(8).toString('hex')}`;

describe(`credits ledger over HTTP (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  const post = (url: string, body: unknown, idempotencyKey = key()) => svc.post(url, body, { idempotencyKey });
  const balanceOf = async (userId: string) => (await svc.get(`/v1/users/${userId}/balance`)).body;
  const expectReconciled = async () => {
    const report = await reconcile(app.database);
    expect(report.drift).toEqual([]);
  };

  beforeAll(async () => {
    app = await createTestApp();
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app.close();
  });

  it('a new user has the sign-up bonus, exactly once, as a visible grant', async () => {
    const u = await makeUser(app);
    const b = await balanceOf(u.id);
    expect(b).toMatchObject({ user_id: u.id, balance: 3, held: 0, available: 3, total_credited: 3, total_spent: 0 });
    expect(b.grants).toEqual([expect.objectContaining({ source: 'signup_bonus', remaining: 3, class: 'default' })]);
    const tx = (await svc.get(`/v1/users/${u.id}/transactions`)).body.data;
    expect(tx.map((t: { type: string; amount: number }) => [t.type, t.amount])).toEqual([['grant', 3]]);
    // The database refuses a second bonus whatever the code does.
    const again = await post('/v1/credits/grant', { user_id: u.id, amount: 3, reason: 'x', source: 'signup_bonus' });
    expect(again.status).toBe(400);
  });

  it("an API grant cannot pose as an imported opening balance or as debt (sources 'import' and 'debt' are reserved)", async () => {
    const u = await makeUser(app);
    for (const source of ['import', 'debt']) {
      const res = await post('/v1/credits/grant', { user_id: u.id, amount: 5, reason: 'x', source });
      expect(res.status, source).toBe(400);
      expect(res.body.error.details).toMatchObject({ field: 'source' });
    }
    expect((await balanceOf(u.id)).balance).toBe(3);
  });

  it('grant → debit → refund → hold → capture keep balance == sum(ledger)', async () => {
    const u = await makeUser(app);
    const g = await post('/v1/credits/grant', { user_id: u.id, amount: 100, reason: 'purchase', class: 'RC', metadata: { order: 'o1' } });
    expect(g.status).toBe(201);
    expect(g.body.transaction).toMatchObject({ type: 'grant', amount: 100, balance_after: 103, reason: 'purchase', metadata: { order: 'o1' } });
    expect(g.body.transaction.id).toMatch(/^txn_/);
    expect(g.body.balance).toMatchObject({ balance: 103, available: 103, total_credited: 103 });
    const d = await post('/v1/credits/debit', { user_id: u.id, amount: 40, reason: 'video' });
    expect(d.status).toBe(201);
    expect(d.body.transaction).toMatchObject({ type: 'debit', amount: -40, balance_after: 63 });
    const r = await post('/v1/credits/refund', { user_id: u.id, amount: 15, reason: 'failed render', transaction_id: d.body.transaction.id });
    expect(r.body.transaction).toMatchObject({ type: 'refund', amount: 15, balance_after: 78, refund_of: d.body.transaction.id });
    const h = await post('/v1/holds', { user_id: u.id, amount: 30, expires_in_seconds: 60 });
    expect(h.status).toBe(201);
    expect(h.body).toMatchObject({ status: 'held', amount: 30, user_id: u.id });
    expect(await balanceOf(u.id)).toMatchObject({ balance: 78, held: 30, available: 48 });
    const c = await post(`/v1/holds/${h.body.id}/capture`, { amount: 12 });
    expect(c.status).toBe(200);
    expect(c.body).toMatchObject({ status: 'captured', captured: 12 });
    expect(await balanceOf(u.id)).toMatchObject({ balance: 66, held: 0, available: 66, total_spent: 37 });
    const ledger = (await svc.get(`/v1/users/${u.id}/transactions`)).body.data as { amount: number }[];
    expect(ledger.reduce((s, t) => s + t.amount, 0)).toBe(66);
    await expectReconciled();
  });

  it('a refund can never exceed the debit it names, even split across requests', async () => {
    const u = await makeUser(app);
    await post('/v1/credits/grant', { user_id: u.id, amount: 50, reason: 'p' });
    const d = await post('/v1/credits/debit', { user_id: u.id, amount: 20, reason: 'x' });
    const id = d.body.transaction.id;
    expect((await post('/v1/credits/refund', { user_id: u.id, amount: 15, reason: 'r', transaction_id: id })).status).toBe(201);
    const over = await post('/v1/credits/refund', { user_id: u.id, amount: 6, reason: 'r', transaction_id: id });
    expect(over.status).toBe(409);
    expect(over.body.error).toMatchObject({ code: 'conflict', details: { refundable: 5 } });
    const parallel = await Promise.all(
      Array.from({ length: 10 }, () => post('/v1/credits/refund', { user_id: u.id, amount: 1, reason: 'r', transaction_id: id })),
    );
    expect(parallel.filter((p) => p.status === 201)).toHaveLength(5);
    expect(parallel.filter((p) => p.status === 409)).toHaveLength(5);
    // A grant cannot be refunded, and another user's debit is not found.
    const other = await makeUser(app);
    expect((await post('/v1/credits/refund', { user_id: other.id, amount: 1, reason: 'r', transaction_id: id })).status).toBe(404);
    await expectReconciled();
  });

  it('with 1,000 credits, 150 concurrent debits of 10 over HTTP: exactly 100 succeed', async () => {
    const u = await makeUser(app);
    await post('/v1/credits/grant', { user_id: u.id, amount: 997, reason: 'load' });
    const results = await Promise.all(
      Array.from({ length: 150 }, (_, i) => post('/v1/credits/debit', { user_id: u.id, amount: 10, reason: `call ${i}` })),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(100);
    expect(results.filter((r) => r.status === 402)).toHaveLength(50);
    expect(results.every((r) => r.status === 201 || r.body.error.code === 'insufficient_credits')).toBe(true);
    expect(await balanceOf(u.id)).toMatchObject({ balance: 0, total_spent: 1000 });
    const afters = results.filter((r) => r.status === 201).map((r) => r.body.transaction.balance_after as number);
    expect(new Set(afters).size).toBe(100);
    await expectReconciled();
  });

  it('with 1,000 credits, 150 concurrent in-process debits: exactly 100 succeed', async () => {
    const u = await makeUser(app);
    await post('/v1/credits/grant', { user_id: u.id, amount: 997, reason: 'load' });
    const credits = app.services.credits;
    const results = await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        credits.execute({ userId: u.id }, { kind: 'debit', requestId: `r${i}`, idem: null, amount: 10, reason: 'sdk', metadata: {} }),
      ),
    );
    expect(results.filter((r) => r.ok && r.created)).toHaveLength(100);
    expect(results.filter((r) => !r.ok && r.error.code === 'insufficient_credits')).toHaveLength(50);
    await expectReconciled();
  });

  it('concurrent replays of one idempotency key move money once and all get the same answer', async () => {
    const u = await makeUser(app);
    const k = key();
    const results = await Promise.all(
      Array.from({ length: 20 }, () => post('/v1/credits/grant', { user_id: u.id, amount: 25, reason: 'once' }, k)),
    );
    expect(new Set(results.map((r) => r.status))).toEqual(new Set([201]));
    expect(new Set(results.map((r) => r.body.transaction.id)).size).toBe(1);
    expect((await balanceOf(u.id)).balance).toBe(28);
    // Forever after, too; and the same key with another body is refused.
    const later = await post('/v1/credits/grant', { user_id: u.id, amount: 25, reason: 'once' }, k);
    expect(later.body).toEqual(must(results[0], 'results[0]').body);
    expect(later.headers['idempotent-replayed']).toBe('true');
    const other = await post('/v1/credits/grant', { user_id: u.id, amount: 26, reason: 'once' }, k);
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('idempotency_key_reused');
    expect((await balanceOf(u.id)).balance).toBe(28);
  });

  it('a 402 is replayed as a 402 even after the user is topped up', async () => {
    const u = await makeUser(app);
    const k = key();
    const first = await post('/v1/credits/debit', { user_id: u.id, amount: 10, reason: 'x' }, k);
    expect(first.status).toBe(402);
    await post('/v1/credits/grant', { user_id: u.id, amount: 100, reason: 'top-up' });
    const again = await post('/v1/credits/debit', { user_id: u.id, amount: 10, reason: 'x' }, k);
    expect(again.status).toBe(402);
    expect(again.body).toEqual(first.body);
    expect((await balanceOf(u.id)).balance).toBe(103);
  });

  it('a 404 for an owner that does not exist is replayed under its key, and another body gets 409', async () => {
    const k = key();
    const body = { user_id: 'usr_nobody_here', amount: 10, reason: 'x' };
    const first = await post('/v1/credits/debit', body, k);
    expect(first.status).toBe(404);
    const again = await post('/v1/credits/debit', body, k);
    expect(again.status).toBe(404);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toEqual(first.body);
    const other = await post('/v1/credits/debit', { ...body, amount: 11 }, k);
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('idempotency_key_reused');
  });

  it('the balance cap refuses grants over it with 422 and changes nothing', async () => {
    const u = await makeUser(app);
    const over = await post('/v1/credits/grant', { user_id: u.id, amount: 49_998, reason: 'big' });
    expect(over.status).toBe(422);
    expect(over.body.error.code).toBe('balance_cap_exceeded');
    expect((await balanceOf(u.id)).balance).toBe(3);
    expect((await post('/v1/credits/grant', { user_id: u.id, amount: 49_997, reason: 'big' })).status).toBe(201);
  });

  it('holds: release, double capture, unknown hold, over-capture', async () => {
    const u = await makeUser(app);
    await post('/v1/credits/grant', { user_id: u.id, amount: 100, reason: 'p' });
    const h = await post('/v1/holds', { user_id: u.id, amount: 60 });
    expect((await post('/v1/holds', { user_id: u.id, amount: 50 })).status).toBe(402);
    expect((await post(`/v1/holds/${h.body.id}/capture`, { amount: 61 })).status).toBe(400);
    const rel = await post(`/v1/holds/${h.body.id}/release`, {});
    expect(rel.body).toMatchObject({ status: 'released', captured: null });
    const again = await post(`/v1/holds/${h.body.id}/capture`, {});
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('invalid_state');
    expect((await post('/v1/holds/hold_nope/capture', {})).status).toBe(404);
    expect(await balanceOf(u.id)).toMatchObject({ balance: 103, held: 0 });
    const list = (await svc.get(`/v1/users/${u.id}/holds?status=released`)).body.data;
    expect(list.map((x: { id: string }) => x.id)).toEqual([h.body.id]);
    await expectReconciled();
  });

  it("a capture or release that names the hold's owner settles only that owner's hold (another's is 404, nothing changed)", async () => {
    const [owner, other] = [await makeUser(app), await makeUser(app)];
    const h = await post('/v1/holds', { user_id: owner.id, amount: 2 });
    expect(h.status).toBe(201);
    for (const [path, body] of [[`/v1/holds/${h.body.id}/capture`, { user_id: other.id }], [`/v1/holds/${h.body.id}/release`, { user_id: other.id }], [`/v1/holds/${h.body.id}/capture`, { workspace_id: 'wsp_nobody' }]] as const) {
      const refused = await post(path, body);
      expect(refused.status, path).toBe(404);
      expect(refused.body.error.code).toBe('not_found');
    }
    expect(await balanceOf(owner.id)).toMatchObject({ balance: 3, held: 2 });
    const captured = await post(`/v1/holds/${h.body.id}/capture`, { user_id: owner.id, amount: 1 });
    expect(captured.body).toMatchObject({ status: 'captured', captured: 1 });
    expect(await balanceOf(owner.id)).toMatchObject({ balance: 2, held: 0 });
    await expectReconciled();
  });

  it('grants expire visibly and are consumed soonest-expiry first', async () => {
    const u = await makeUser(app);
    const soon = new Date(Date.now() + 1500).toISOString();
    await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'short', expires_at: soon });
    await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'long', expires_at: new Date(Date.now() + 86_400_000).toISOString() });
    const d = await post('/v1/credits/debit', { user_id: u.id, amount: 4, reason: 'x' });
    expect(d.body.balance.grants[0]).toMatchObject({ remaining: 6, expires_at: soon });
    await new Promise((r) => setTimeout(r, 1600));
    expect(await app.services.credits.sweep()).toBeGreaterThanOrEqual(1);
    const tx = (await svc.get(`/v1/users/${u.id}/transactions?type=expiry`)).body.data;
    expect(tx).toEqual([expect.objectContaining({ type: 'expiry', amount: -6 })]);
    expect((await balanceOf(u.id)).balance).toBe(13);
    await expectReconciled();
  });

  it('end users read their own balance and ledger and can write none of it', async () => {
    const a = await signUp(app);
    const b = await signUp(app);
    expect((await a.api.get(`/v1/users/${a.user.id}/balance`)).body.balance).toBe(3);
    expect((await a.api.get(`/v1/users/${a.user.id}/transactions`)).status).toBe(200);
    expect((await a.api.get(`/v1/users/${b.user.id}/balance`)).status).toBe(403);
    for (const [url, body] of [
      ['/v1/credits/grant', { user_id: a.user.id, amount: 1000, reason: 'free money' }],
      ['/v1/credits/adjust', { user_id: a.user.id, amount: 1000, reason: 'free money' }],
      ['/v1/credits/refund', { user_id: a.user.id, amount: 1000, reason: 'free money' }],
      ['/v1/credits/debit', { user_id: b.user.id, amount: 1, reason: 'steal' }],
      ['/v1/holds', { user_id: a.user.id, amount: 1 }],
    ] as const) {
      const res = await a.api.post(url, body, { idempotencyKey: key() });
      expect(res.status, url).toBe(403);
    }
    expect((await balanceOf(a.user.id)).balance).toBe(3);
    // And the database refuses too, even with the request's role set directly.
    const denied = await app.database.db
      .transaction()
      .execute(async (trx) => {
        await sql`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify({ sub: a.user.id })}, true)`.execute(trx);
        await sql`update ${sql.table(`${app.database.schema}.credit_accounts`)} set balance = 1000000 where user_id = ${a.user.id}`.execute(trx);
        return 'ok';
      })
      .catch((e: { code?: string }) => e.code);
    expect(denied).toBe('42501');
  });

  it('workspace pools: members read, the service moves credits', async () => {
    const owner = await signUp(app);
    const ws = (await owner.api.post('/v1/workspaces', { name: 'Pool' })).body;
    expect((await owner.api.get(`/v1/workspaces/${ws.id}/balance`)).body).toMatchObject({ workspace_id: ws.id, balance: 0 });
    const g = await post('/v1/credits/grant', { workspace_id: ws.id, amount: 500, reason: 'team plan' });
    expect(g.status).toBe(201);
    expect((await post('/v1/credits/debit', { workspace_id: ws.id, amount: 200, reason: 'build' })).status).toBe(201);
    expect((await owner.api.get(`/v1/workspaces/${ws.id}/balance`)).body).toMatchObject({ balance: 300 });
    const stranger = await signUp(app);
    expect((await stranger.api.get(`/v1/workspaces/${ws.id}/balance`)).status).toBe(404);
    expect((await post('/v1/credits/grant', { workspace_id: 'wsp_nope', amount: 1, reason: 'x' })).status).toBe(404);
    expect((await post('/v1/credits/grant', { user_id: owner.user.id, workspace_id: ws.id, amount: 1, reason: 'x' })).status).toBe(400);
    // A pool with money history is kept: deleting it is a 409 and changes nothing.
    const del = await owner.api.del(`/v1/workspaces/${ws.id}`);
    expect(del.status).toBe(409);
    expect(del.body.error.code).toBe('conflict');
    expect((await owner.api.get(`/v1/workspaces/${ws.id}/balance`)).body.balance).toBe(300);
    await expectReconciled();
  });

  it('adjustments are signed and cannot take available below zero', async () => {
    const u = await makeUser(app);
    expect((await post('/v1/credits/adjust', { user_id: u.id, amount: -4, reason: 'correction' })).status).toBe(402);
    const neg = await post('/v1/credits/adjust', { user_id: u.id, amount: -2, reason: 'correction' });
    expect(neg.body.transaction).toMatchObject({ type: 'adjustment', amount: -2, balance_after: 1 });
    expect((await post('/v1/credits/adjust', { user_id: u.id, amount: 0, reason: 'noop' })).status).toBe(400);
    await expectReconciled();
  });

  it('one key used concurrently on two accounts: one movement, the other request gets 409', async () => {
    // Several rounds: on PostgreSQL the two requests often run in two transactions at once, and the
    // one that loses the key's insert must answer 409, not fail (CI once saw a 500 here).
    for (let round = 0; round < 12; round++) {
      const a = await makeUser(app);
      const b = await makeUser(app);
      const k = key();
      const [ra, rb] = await Promise.all([
        post('/v1/credits/grant', { user_id: a.id, amount: 5, reason: 'race' }, k),
        post('/v1/credits/grant', { user_id: b.id, amount: 5, reason: 'race' }, k),
      ]);
      expect([ra.status, rb.status].sort()).toEqual([201, 409]);
      const loser = ra.status === 409 ? ra : rb;
      expect(loser.body.error.code).toBe('idempotency_key_reused');
      const total = (await balanceOf(a.id)).balance + (await balanceOf(b.id)).balance;
      expect(total).toBe(3 + 3 + 5);
    }
    await expectReconciled();
  });

  it('a refund gives credits back to the grants the debit took them from, last-taken first', async () => {
    const u = await makeUser(app);
    const soon = new Date(Date.now() + 3_600_000).toISOString();
    const later = new Date(Date.now() + 7_200_000).toISOString();
    const g1 = await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'a', expires_at: soon });
    const g2 = await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'b', expires_at: later });
    // Takes 10 from g1 (soonest), 5 from g2, then the bonus is untouched.
    const d = await post('/v1/credits/debit', { user_id: u.id, amount: 15, reason: 'x' });
    const grantsAfterDebit = Object.fromEntries(d.body.balance.grants.map((g: { id: string; remaining: number }) => [g.id, g.remaining]));
    expect(grantsAfterDebit[g1.body.transaction.grant_id]).toBeUndefined();
    expect(grantsAfterDebit[g2.body.transaction.grant_id]).toBe(5);
    const r1 = await post('/v1/credits/refund', { user_id: u.id, amount: 7, reason: 'partial', transaction_id: d.body.transaction.id });
    const after1 = Object.fromEntries(r1.body.balance.grants.map((g: { id: string; remaining: number }) => [g.id, g.remaining]));
    expect(after1[g2.body.transaction.grant_id]).toBe(10); // last taken, first given back
    expect(after1[g1.body.transaction.grant_id]).toBe(2);
    const r2 = await post('/v1/credits/refund', { user_id: u.id, amount: 8, reason: 'rest', transaction_id: d.body.transaction.id });
    const after2 = Object.fromEntries(r2.body.balance.grants.map((g: { id: string; remaining: number }) => [g.id, g.remaining]));
    expect(after2[g1.body.transaction.grant_id]).toBe(10);
    expect(r2.body.balance.balance).toBe(23);
    expect((await post('/v1/credits/refund', { user_id: u.id, amount: 1, reason: 'more', transaction_id: d.body.transaction.id })).status).toBe(409);
    await expectReconciled();
  });

  it('credits refunded after their grant expired come back with that grant and expire again at once: the spendable balance does not rise', async () => {
    const u = await makeUser(app);
    const soon = new Date(Date.now() + 1200).toISOString();
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const short = await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'promo', expires_at: soon, class: 'RC' });
    const long = await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'promo', expires_at: later, class: 'RC' });
    // Takes all 10 of the short grant (soonest), 5 of the long one; the bonus (3) is untouched.
    const d = await post('/v1/credits/debit', { user_id: u.id, amount: 15, reason: 'x' });
    expect(d.body.balance.balance).toBe(8);
    await new Promise((r) => setTimeout(r, 1300));
    const r = await post('/v1/credits/refund', { user_id: u.id, amount: 15, reason: 'failed job', transaction_id: d.body.transaction.id });
    expect(r.status).toBe(201);
    expect(r.body.transaction).toMatchObject({ type: 'refund', amount: 15, balance_after: 23 });
    const tx = (await svc.get(`/v1/users/${u.id}/transactions`)).body.data as { type: string; amount: number; grant_id: string | null }[];
    // Newest first: the expired grant's 10 leave again right after the refund, from that grant.
    expect(tx.slice(0, 2).map((t) => [t.type, t.amount])).toEqual([['expiry', -10], ['refund', 15]]);
    expect(tx[0]?.grant_id).toBe(short.body.transaction.grant_id);
    // No new grant: the live one has its 5 back with its class and expiry, the balance rose by 5 only.
    expect(r.body.balance.grants).not.toContainEqual(expect.objectContaining({ source: 'refund' }));
    expect(r.body.balance.grants).toContainEqual(
      expect.objectContaining({ id: long.body.transaction.grant_id, class: 'RC', remaining: 10, expires_at: expect.any(String) }),
    );
    expect(r.body.balance).toMatchObject({ balance: 13, available: 13, total_spent: 0 });
    expect((await post('/v1/credits/debit', { user_id: u.id, amount: 14, reason: 'more than is left' })).status).toBe(402);
    await expectReconciled();
  });

  it('a release inside a batch expires the past-due credits it freed before any later operation of the batch can spend them', async () => {
    const u = await makeUser(app);
    await post('/v1/credits/grant', { user_id: u.id, amount: 10, reason: 'promo', expires_at: new Date(Date.now() + 1200).toISOString() });
    // The hold reserves everything (bonus 3 + promo 10), so the promo outlives its expiry while the hold is open.
    const h = await post('/v1/holds', { user_id: u.id, amount: 13, expires_in_seconds: 600 });
    expect(h.status).toBe(201);
    await new Promise((r) => setTimeout(r, 1300));
    const meta = { requestId: 'gap2', idem: null };
    const results = await app.database.db.transaction().execute((trx) =>
      app.services.credits.executeIn(trx, { userId: u.id }, [
        { kind: 'release', ...meta, holdId: h.body.id },
        { kind: 'debit', ...meta, amount: 4, reason: 'spend what the release freed', metadata: {} },
        { kind: 'debit', ...meta, amount: 3, reason: 'the bonus', metadata: {} },
      ]),
    );
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    const tx = (await svc.get(`/v1/users/${u.id}/transactions`)).body.data as { type: string; amount: number }[];
    expect(tx.slice(0, 2).map((t) => [t.type, t.amount])).toEqual([['debit', -3], ['expiry', -10]]);
    expect(await balanceOf(u.id)).toMatchObject({ balance: 0, held: 0, available: 0 });
    await expectReconciled();
  });
});
