import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, createApp } from '../src/app.js';
import { type Database, openDatabase } from '../src/db/database.js';
import { migrate } from '../src/db/migrate.js';
import { isTransactionPooler } from '../src/db/postgres.js';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client } from './support/client.js';
import { POSTGRES_URL, TARGET, testConfig } from './support/harness.js';
import { must } from '../src/lib/must.js';
import { inStatementTransaction, statement } from '../src/db/statements.js';
import { sql } from 'kysely';

/**
 * A production database restarts, fails over and has its connections killed; rows stay locked by
 * a stuck transaction. Tally must stay up, answer 503 fast while the database is away, serve again
 * by itself once it is back, and never charge a retried request twice. PostgreSQL only (PGlite is
 * in process: it cannot go away on its own).
 */
describe.runIf(TARGET === 'postgres')('faults: the database going away (postgres)', () => {
  const appName = `tally_fault_${randomBytes(4).toString('hex')}`;
  const schema = `t_${randomBytes(6).toString('hex')}`;
  let database: Database;
  let app: App;
  let serviceKey: string;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  admin.on('error', () => {}); // its own connection may be among those a test ends

  /** Ends every backend of this test's app (and only those), as a restart or failover would. */
  const terminateAppBackends = async () =>
    must((await admin.query<{ n: string }>('select count(pg_terminate_backend(pid))::text as n from pg_stat_activity where application_name = $1', [appName])).rows[0], 'the query returns a row').n;

  beforeAll(async () => {
    await admin.connect();
    const dbConfig = { kind: 'postgres' as const, url: POSTGRES_URL, poolMax: 8, schema, applicationName: appName, lockTimeoutMs: 300, acquireTimeoutMs: 2000 };
    database = await openDatabase(dbConfig);
    const outcome = await migrate(database);
    if (!outcome.ok) throw new Error(outcome.message);
    const config = { ...testConfig(database), database: dbConfig };
    serviceKey = config.auth.serviceKey;
    app = await createApp({ config, database, logger: pino({ level: 'silent' }) as unknown as FastifyBaseLogger });
  });
  afterAll(async () => {
    await app?.server.close();
    await app?.services.queue.stop();
    await database?.root.schema.dropSchema(schema).ifExists().cascade().execute();
    await database?.close();
    await admin.end();
  });

  const svc = () => client(app.server, serviceKey);
  const debit = (userId: string, key: string) => svc().post('/v1/credits/debit', { user_id: userId, amount: 1, reason: 'fault test' }, { idempotencyKey: key });

  it('killed connections give 503 (never 500, never a crash), retries with the same keys charge exactly once each', async () => {
    const user = (await svc().post('/v1/users', { email: `f_${randomBytes(4).toString('hex')}@example.com` }, { idempotencyKey: randomBytes(6).toString('hex') })).body as { id: string };
    expect((await svc().post('/v1/credits/grant', { user_id: user.id, amount: 500, reason: 'fund' }, { idempotencyKey: `fund-${user.id}` })).status).toBe(201);
    // Warm the pool, so there are idle connections to kill (an idle kill emits 'error' on the pool).
    await Promise.all(Array.from({ length: 6 }, (_, i) => debit(user.id, `warm-${i}`)));

    const keys = Array.from({ length: 40 }, (_, i) => `k-${i}`);
    const statuses = new Map<string, number>();
    const inFlight = keys.map(async (k, i) => {
      if (i === 20) expect(Number(await terminateAppBackends())).toBeGreaterThan(0);
      statuses.set(k, (await debit(user.id, k)).status);
    });
    await Promise.all(inFlight);
    // Everything answered 201 or 503 — a lost connection is "retry", not "internal error".
    expect([...statuses.values()].every((s) => s === 201 || s === 503)).toBe(true);

    // Once more with nothing in flight: the idle pool is dead, the next requests dial afresh.
    await terminateAppBackends();
    const afterIdleKill = await debit(user.id, 'after-idle-kill');
    expect([201, 503]).toContain(afterIdleKill.status);

    // The client retries what failed, with the same keys, until everything is 201.
    const deadline = Date.now() + 10_000;
    for (const k of [...keys, 'after-idle-kill']) {
      for (;;) {
        const res = await debit(user.id, k);
        if (res.status === 201) break;
        expect(res.status).toBe(503);
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const balance = (await svc().get(`/v1/users/${user.id}/balance`)).body as { balance: number };
    // 3 (sign-up bonus) + 500 − 6 warm-up − 41 retried debits: each key charged exactly once.
    expect(balance.balance).toBe(3 + 500 - 6 - 41);
    const report = await reconcile(database);
    expect(report.drift).toEqual([]);
  });

  it('a connection ended between two queries of a transaction fails that transaction, not the process (both transaction paths)', async () => {
    const pause = () => new Promise((r) => setTimeout(r, 150));
    // The hot path's own client (named statements) ...
    await expect(
      inStatementTransaction(database, async (run) => {
        await run(statement('fault_probe', 'select 1 as one', []));
        await terminateAppBackends();
        await pause(); // the server's goodbye arrives while no query is running
        return run(statement('fault_probe', 'select 1 as one', []));
      }),
    ).rejects.toThrow();
    // ... and Kysely's.
    await expect(
      database.root.transaction().execute(async (trx) => {
        await sql`select 1`.execute(trx);
        await terminateAppBackends();
        await pause();
        return sql`select 1`.execute(trx);
      }),
    ).rejects.toThrow();
    // The broken connections were not handed back out: the app serves again.
    const user = await svc().post('/v1/users', { email: `m_${randomBytes(4).toString('hex')}@example.com` }, { idempotencyKey: randomBytes(6).toString('hex') });
    expect(user.status).toBe(201);
  });

  it('the cache listener reconnects by itself after its connection is killed', async () => {
    await terminateAppBackends();
    const deadline = Date.now() + 10_000;
    // The bus drops trust at once, then listens again within its backoff.
    while (!(await app.server.inject({ url: '/ready' })).json().cache_listener) {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it('a row locked by a stuck transaction gives 503 within the lock bound, not a hung request', async () => {
    const user = (await svc().post('/v1/users', { email: `l_${randomBytes(4).toString('hex')}@example.com` }, { idempotencyKey: randomBytes(6).toString('hex') })).body as { id: string };
    const locker = new pg.Client({ connectionString: POSTGRES_URL });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query(`select 1 from ${schema}.credit_accounts where user_id = $1 for update`, [user.id]);
      const started = Date.now();
      const res = await debit(user.id, `locked-${user.id}`);
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('unavailable');
      expect(res.body.error.details.reason).toBe('timeout');
      expect(Date.now() - started).toBeLessThan(3_000);
      await locker.query('rollback');
      // Nothing was recorded for the key: the retry does the debit.
      expect((await debit(user.id, `locked-${user.id}`)).status).toBe(201);
    } finally {
      await locker.end();
    }
  });

  it('/ready reports the database, migrations and workers; a direct connection is not taken for a pooler', async () => {
    const res = await app.server.inject({ url: '/ready' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'ready', database: { kind: 'postgres', reachable: true, pooled: false, pending_migrations: [] } });
    expect(await isTransactionPooler(POSTGRES_URL)).toBe(false);
  });
});

describe.runIf(TARGET === 'postgres')('faults: a per-request deadline (postgres)', () => {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  let database: Database;
  let app: App;
  let serviceKey: string;

  beforeAll(async () => {
    // A lock bound longer than the deadline: the deadline is what answers.
    const dbConfig = { kind: 'postgres' as const, url: POSTGRES_URL, poolMax: 8, schema, lockTimeoutMs: 10_000 };
    database = await openDatabase(dbConfig);
    const outcome = await migrate(database);
    if (!outcome.ok) throw new Error(outcome.message);
    const base = testConfig(database);
    const config = { ...base, database: dbConfig, http: { ...base.http, deadlineMs: 400 } };
    serviceKey = config.auth.serviceKey;
    app = await createApp({ config, database, logger: pino({ level: 'silent' }) as unknown as FastifyBaseLogger });
  });
  afterAll(async () => {
    await app?.server.close();
    await app?.services.queue.stop();
    await database?.root.schema.dropSchema(schema).ifExists().cascade().execute();
    await database?.close();
  });

  it('a request past its deadline gets 503 unavailable (timeout) at the deadline; the work may still commit, and the retry with the same key replays it: charged once', async () => {
    const svc = client(app.server, serviceKey);
    const user = (await svc.post('/v1/users', { email: `d_${randomBytes(4).toString('hex')}@example.com` }, { idempotencyKey: randomBytes(6).toString('hex') })).body as { id: string };
    await svc.post('/v1/credits/grant', { user_id: user.id, amount: 100, reason: 'fund' }, { idempotencyKey: `fund-${user.id}` });
    const locker = new pg.Client({ connectionString: POSTGRES_URL });
    await locker.connect();
    const key = `late-${user.id}`;
    const debit = () => svc.post('/v1/credits/debit', { user_id: user.id, amount: 7, reason: 'deadline test' }, { idempotencyKey: key });
    try {
      await locker.query('begin');
      await locker.query(`select 1 from ${schema}.credit_accounts where user_id = $1 for update`, [user.id]);
      const started = Date.now();
      const res = await debit();
      const took = Date.now() - started;
      expect(res.status).toBe(503);
      expect(res.body.error).toMatchObject({ code: 'unavailable', details: { reason: 'timeout' } });
      expect(res.headers['retry-after']).toBe('1');
      expect(took).toBeGreaterThanOrEqual(350);
      expect(took).toBeLessThan(3_000);
      // The stuck lock goes away; the debit that was still waiting commits.
      await locker.query('rollback');
    } finally {
      await locker.end();
    }
    let retry = await debit();
    for (let i = 0; i < 50 && retry.status !== 201; i++) {
      await new Promise((r) => setTimeout(r, 100));
      retry = await debit();
    }
    expect(retry.status).toBe(201);
    const balance = (await svc.get(`/v1/users/${user.id}/balance`)).body as { balance: number };
    expect(balance.balance).toBe(3 + 100 - 7);
    const debits = await database.db.selectFrom('credit_ledger').select('id').where('user_id', '=', user.id).where('type', '=', 'debit').execute();
    expect(debits).toHaveLength(1);
  });
  it('the deadline holds over a real socket too (a POST whose body was read is not "closed" for it)', async () => {
    const svc = client(app.server, serviceKey);
    const user = (await svc.post('/v1/users', { email: `r_${randomBytes(4).toString('hex')}@example.com` }, { idempotencyKey: randomBytes(6).toString('hex') })).body as { id: string };
    await svc.post('/v1/credits/grant', { user_id: user.id, amount: 100, reason: 'fund' }, { idempotencyKey: `fund-${user.id}` });
    const address = await app.server.listen({ port: 0, host: '127.0.0.1' });
    const locker = new pg.Client({ connectionString: POSTGRES_URL });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query(`select 1 from ${schema}.credit_accounts where user_id = $1 for update`, [user.id]);
      const started = Date.now();
      const res = await fetch(`${address}/v1/credits/debit`, {
        method: 'POST',
        headers: { authorization: `Bearer ${serviceKey}`, 'content-type': 'application/json', 'idempotency-key': `socket-${user.id}` },
        body: JSON.stringify({ user_id: user.id, amount: 7, reason: 'deadline over a socket' }),
      });
      const took = Date.now() - started;
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unavailable');
      expect(took).toBeLessThan(3_000);
    } finally {
      await locker.query('rollback');
      await locker.end();
    }
  });
  it('/ready shows the money operations waiting in this process (backlog), and the bound past which they are refused', async () => {
    const svc = client(app.server, serviceKey);
    const user = (await svc.post('/v1/users', { email: `b_${randomBytes(4).toString('hex')}@example.com` }, { idempotencyKey: randomBytes(6).toString('hex') })).body as { id: string };
    const locker = new pg.Client({ connectionString: POSTGRES_URL });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query(`select 1 from ${schema}.credit_accounts where user_id = $1 for update`, [user.id]);
      // One batch waits on the lock; the rest wait behind it in the queue.
      const pending = Array.from({ length: 6 }, (_, i) =>
        svc.post('/v1/credits/debit', { user_id: user.id, amount: 1, reason: 'backlog' }, { idempotencyKey: `backlog-${user.id}-${i}` }),
      );
      let seen = 0;
      for (let i = 0; i < 50 && seen < 5; i++) {
        seen = (await app.server.inject({ url: '/ready' })).json().backlog.ledger;
        if (seen < 5) await new Promise((r) => setTimeout(r, 10));
      }
      expect(seen).toBe(5);
      expect((await app.server.inject({ url: '/ready' })).json().backlog).toMatchObject({ usage: 0, max: 10_000 });
      await locker.query('rollback');
      await Promise.all(pending);
    } finally {
      await locker.end();
    }
    expect((await app.server.inject({ url: '/ready' })).json().backlog.ledger).toBe(0);
  });
});
