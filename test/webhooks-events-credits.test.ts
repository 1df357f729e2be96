import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { addEndpoint, idemKey, localWebhooks, messages, receiver, verifyDelivery } from './support/webhooks.js';

/**
 * The ledger's events (docs/webhooks-out.md): credits.granted, credits.low, credits.depleted and
 * hold.expired are written by the batch that makes the change, in its transaction.
 */
describe(`ledger events (${TARGET})`, () => {
  let app: TestApp;
  let rx: Awaited<ReturnType<typeof receiver>>;
  let endpoint: { id: string; secret: string };
  let offsetMs = 0;
  const clock = () => new Date(Date.now() + offsetMs);

  beforeAll(async () => {
    rx = await receiver();
    app = await createTestApp(localWebhooks, { clock });
    endpoint = await addEndpoint(app, rx.url, ['credits.granted', 'credits.low', 'credits.depleted', 'hold.expired']);
  });
  afterAll(async () => {
    await app?.close();
    await rx?.close();
  });

  const svc = () => client(app.server, app.serviceKey);
  const grant = (userId: string, amount: number) => svc().post('/v1/credits/grant', { user_id: userId, amount, reason: 'top-up' }, { idempotencyKey: idemKey() });
  const debit = (userId: string, amount: number) => svc().post('/v1/credits/debit', { user_id: userId, amount, reason: 'use' }, { idempotencyKey: idemKey() });

  it('a grant and its credits.granted commit together; the delivery verifies with standardwebhooks', async () => {
    const user = await makeUser(app);
    const res = await grant(user.id, 40);
    expect(res.status).toBe(201);
    // The sign-up bonus is a grant too: told with the user's creation.
    const all = await messages(app, 'credits.granted', user.id);
    expect(all.map((m) => (m.data['transaction'] as { amount: number }).amount)).toEqual([3, 40]);
    const mine = all.find((m) => (m?.data['transaction'] as { id: string }).id === res.body.transaction.id);
    expect(mine).toMatchObject({ type: 'credits.granted', version: 1, data: { transaction: { amount: 40, type: 'grant', user_id: user.id }, balance: { balance: 43 } } });

    const before = rx.got.length;
    await app.services.queue.runDue(clock());
    const delivered = rx.got.slice(before).map((r) => verifyDelivery(endpoint.secret, r, clock().getTime()));
    expect(delivered.map((e) => e.id)).toContain(mine?.id);
    const tampered = rx.got.at(-1);
    expect(() => verifyDelivery(endpoint.secret, { headers: tampered?.headers ?? {}, body: (tampered?.body ?? '').replace('"version":1', '"version":2') }, clock().getTime())).toThrow();
  });

  it('a rolled-back change leaves no event: a grant in a transaction that fails tells nothing', async () => {
    const user = await makeUser(app);
    const before = (await messages(app, 'credits.granted', user.id)).length;
    await expect(
      app.database.db.transaction().execute(async (trx) => {
        const [r] = await app.services.credits.executeIn(trx, { userId: user.id }, [
          { kind: 'grant', requestId: 'rollback', idem: null, amount: 500, reason: 'never', class: 'default', source: 'grant', expiresAt: null, priority: 0, metadata: {} },
        ]);
        expect(r?.ok).toBe(true);
        throw new Error('the caller rolls back');
      }),
    ).rejects.toThrow('the caller rolls back');
    expect(await messages(app, 'credits.granted', user.id)).toHaveLength(before);
    expect((await svc().get(`/v1/users/${user.id}/balance`)).body.balance).toBe(3);
  });

  it('credits.low fires once per downward crossing: not again below it, again after a top-up crosses back above', async () => {
    const user = await makeUser(app);
    const set = await svc().put(`/v1/users/${user.id}/low-balance-threshold`, { threshold: 50 });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ low_threshold: 50, effective_threshold: 50 });
    await grant(user.id, 97); // 100
    expect((await debit(user.id, 30)).status).toBe(201); // 70: above
    expect(await messages(app, 'credits.low', user.id)).toHaveLength(0);
    const crossing = await debit(user.id, 30); // 40: crosses
    await debit(user.id, 10); // 30: still below, silent
    await debit(user.id, 5); // 25
    let low = await messages(app, 'credits.low', user.id);
    expect(low).toHaveLength(1);
    expect(low[0]?.data).toMatchObject({ user_id: user.id, threshold: 50, balance: 40, transaction_id: crossing.body.transaction.id });
    await grant(user.id, 30); // 55: back above (re-armed)
    await debit(user.id, 5); // 50: at the threshold is not below it
    expect(await messages(app, 'credits.low', user.id)).toHaveLength(1);
    await debit(user.id, 1); // 49: crosses again
    low = await messages(app, 'credits.low', user.id);
    expect(low.map((m) => m.data['balance'])).toEqual([40, 49]);
    expect(await messages(app, 'credits.depleted', user.id)).toHaveLength(0);
    await debit(user.id, 49); // 0
    expect((await messages(app, 'credits.depleted', user.id)).map((m) => m.data['balance'])).toEqual([0]);
    expect((await debit(user.id, 1)).status).toBe(402); // refused: no change, no event
    expect(await messages(app, 'credits.depleted', user.id)).toHaveLength(1);
  });

  it('concurrent debits in one group-committed batch tell one crossing, with the entry that crossed', async () => {
    const user = await makeUser(app);
    await svc().put(`/v1/users/${user.id}/low-balance-threshold`, { threshold: 45 });
    await grant(user.id, 97); // 100
    const answers = await Promise.all(Array.from({ length: 10 }, () => debit(user.id, 10)));
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(201));
    const low = await messages(app, 'credits.low', user.id);
    expect(low).toHaveLength(1);
    // The entry whose balance_after first fell below 45 is the one named.
    const crossing = answers.map((a) => a.body.transaction).find((t: { balance_after: number }) => t.balance_after === 40);
    expect(low[0]?.data).toMatchObject({ balance: 40, transaction_id: crossing.id });
    expect(await messages(app, 'credits.depleted', user.id)).toHaveLength(1);
  });

  it('the deployment default applies to accounts that set none; null returns to it', async () => {
    const other = await createTestApp({ ...localWebhooks, credits: { balanceCap: 50_000, signupBonus: 3, lowThreshold: 10 } });
    try {
      await addEndpoint(other, rx.url, ['credits.low']);
      const user = await makeUser(other);
      const c = client(other.server, other.serviceKey);
      await c.post('/v1/credits/grant', { user_id: user.id, amount: 17, reason: 'top-up' }, { idempotencyKey: idemKey() }); // 20
      await c.post('/v1/credits/debit', { user_id: user.id, amount: 11, reason: 'use' }, { idempotencyKey: idemKey() }); // 9
      expect((await messages(other, 'credits.low', user.id)).map((m) => m.data['threshold'])).toEqual([10]);
      const reset = await c.put(`/v1/users/${user.id}/low-balance-threshold`, { threshold: null });
      expect(reset.body).toMatchObject({ low_threshold: null, effective_threshold: 10 });
      expect((await c.put('/v1/users/usr_nobody/low-balance-threshold', { threshold: 5 })).status).toBe(404);
      expect((await c.put(`/v1/users/${user.id}/low-balance-threshold`, { threshold: -1 })).status).toBe(400);
    } finally {
      await other.close();
    }
  });

  it('hold.expired is told by the batch that expires the hold (the sweep here), once', async () => {
    const user = await makeUser(app);
    await grant(user.id, 20);
    const hold = await svc().post('/v1/holds', { user_id: user.id, amount: 10, expires_in_seconds: 60 }, { idempotencyKey: idemKey() });
    expect(hold.status).toBe(201);
    expect(await messages(app, 'hold.expired', user.id)).toHaveLength(0);
    offsetMs += 61_000;
    await app.services.credits.sweep();
    await app.services.credits.sweep();
    const expired = await messages(app, 'hold.expired', user.id);
    expect(expired.map((m) => [m.data['id'], m.data['status']])).toEqual([[hold.body.id, 'expired']]);
    expect((await svc().get(`/v1/holds/${hold.body.id}`)).body.status).toBe('expired');
  });
});
