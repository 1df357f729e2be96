import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import type { LedgerOp } from '../src/modules/credits/credits.js';
import { httpAnswers } from '../src/http/answers.js';
import type { Outcome } from '../src/modules/idempotency/idempotency.js';
import { createTwoApps, TARGET, type TestDb } from './support/harness.js';
import type { Json } from './support/client.js';

/**
 * Chained batches (docs/ledger.md): a batch starts from the state the account's previous batch in
 * this process left, and keeps what it computed only if the account is still at that state's
 * version under the row lock. Two apps on one database stand for two Tally processes: each one's
 * writes must make the other's carried state worthless, never wrong.
 */
describe(`ledger: chained batches across two processes (${TARGET})`, () => {
  let pair: Awaited<ReturnType<typeof createTwoApps>>;
  let db: TestDb;
  let one: App;
  let two: App;
  let now = new Date('2026-07-01T12:00:00.000Z');
  let n = 0;
  // The answers as the HTTP routes give them (status and body), through the one codec.
  const asHttp = async (r: Promise<Outcome>): Promise<{ status: number; body: Json }> => httpAnswers.encode(await r);
  const debit = (app: App, userId: string, amount: number) =>
    asHttp(app.services.credits.execute({ userId }, { kind: 'debit', requestId: `r${n}`, idem: null, amount, reason: `d${n++}`, metadata: {} } as LedgerOp));
  const grant = (app: App, userId: string, amount: number) =>
    asHttp(app.services.credits.execute({ userId }, {
      kind: 'grant', requestId: `g${n}`, idem: null, amount, reason: `g${n++}`, class: 'default', source: 'grant', expiresAt: null, priority: 0, metadata: {},
    } as LedgerOp));
  const hold = (app: App, userId: string, amount: number, seconds: number) =>
    asHttp(app.services.credits.execute({ userId }, { kind: 'hold', requestId: `h${n++}`, idem: null, amount, expiresInSeconds: seconds, metadata: {} } as LedgerOp));
  const newUser = async () => {
    const res = await one.server.inject({
      method: 'POST',
      url: '/v1/users',
      headers: { authorization: `Bearer ${one.config.auth.serviceKey}`, 'idempotency-key': randomBytes(6).toString('hex') },
      payload: { email: `c_${randomBytes(5).toString('hex')}@example.com` },
    });
    expect(res.statusCode).toBe(201);
    return (JSON.parse(res.body) as { id: string }).id;
  };

  beforeAll(async () => {
    pair = await createTwoApps({ credits: { balanceCap: null, signupBonus: 0 } }, () => now);
    ({ db } = pair);
    [one, two] = pair.apps;
  });
  afterAll(async () => {
    await pair.close();
  });

  it("each process sees the other's writes: a carried state is dropped once the account moved on", async () => {
    const u = await newUser();
    expect((await grant(one, u, 100)).status).toBe(201);
    expect((await debit(one, u, 10)).body.balance.balance).toBe(90); // one now carries 90
    expect((await debit(two, u, 50)).body.balance.balance).toBe(40);
    // one's carried state says 90: it must not be used.
    expect((await debit(one, u, 30)).body.balance.balance).toBe(10);
    expect((await debit(one, u, 30)).status).toBe(402);
    expect((await debit(two, u, 10)).body.balance.balance).toBe(0);
    expect((await reconcile(db.database)).drift).toEqual([]);
  });

  it('two processes racing on one account: 1,000 credits, 150 debits of 10 → exactly 100 succeed', async () => {
    const u = await newUser();
    expect((await grant(one, u, 1000)).status).toBe(201);
    const results = await Promise.all(Array.from({ length: 150 }, (_, i) => debit(i % 2 === 0 ? one : two, u, 10)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(100);
    expect(results.filter((r) => r.status === 402)).toHaveLength(50);
    // Each balance_after is taken once: no two movements saw the same state.
    expect(new Set(results.filter((r) => r.status === 201).map((r) => r.body.transaction.balance_after)).size).toBe(100);
    expect((await reconcile(db.database)).drift).toEqual([]);
  });

  it("a hold the carried state never loaded still expires on time", async () => {
    const u = await newUser();
    expect((await grant(one, u, 100)).status).toBe(201);
    // The other process holds everything for 60 s; this one loads the account (the hold is not due,
    // so it is not loaded) and then carries that state.
    expect((await hold(two, u, 100, 60)).status).toBe(201);
    expect((await debit(one, u, 1)).status).toBe(402);
    expect((await debit(one, u, 1)).status).toBe(402);
    now = new Date(now.getTime() + 61_000);
    const after = await debit(one, u, 1);
    expect(after.status).toBe(201);
    expect(after.body.balance).toMatchObject({ balance: 99, held: 0 });
    expect((await reconcile(db.database)).drift).toEqual([]);
  });

  it('hot account in one process: many concurrent batches chain and never overspend', async () => {
    const u = await newUser();
    expect((await grant(one, u, 5000)).status).toBe(201);
    const results = await Promise.all(Array.from({ length: 2000 }, () => debit(one, u, 3)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(1666);
    expect(results.filter((r) => r.status === 402)).toHaveLength(334);
    const res = await one.server.inject({ method: 'GET', url: `/v1/users/${u}/balance`, headers: { authorization: `Bearer ${one.config.auth.serviceKey}` } });
    expect(JSON.parse(res.body)).toMatchObject({ balance: 2, total_spent: 4998 });
    expect((await reconcile(db.database)).drift).toEqual([]);
  });
});
