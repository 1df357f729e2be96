import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Json } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * The operator's views behind the dashboard: totals and per-bucket activity computed from the
 * ledger, holds, users, usage events and payments; the reconcile checks run over HTTP; and the
 * list of every job with its filters.
 */
describe(`admin stats, reconcile and the jobs list (${TARGET})`, () => {
  let app: TestApp;
  const svc = () => client(app.server, app.serviceKey);
  const key = () => `adm-${randomBytes(8).toString('hex')}`;
  let a: { id: string };
  let b: { id: string };

  beforeAll(async () => {
    app = await createTestApp();
    a = await makeUser(app);
    b = await makeUser(app);
    const ok = async (url: string, body: Record<string, unknown>) => {
      const res = await svc().post(url, body, { idempotencyKey: key() });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return res.body;
    };
    await ok('/v1/credits/grant', { user_id: a.id, amount: 100, reason: 'purchase' });
    await ok('/v1/credits/debit', { user_id: a.id, amount: 30, reason: 'render' });
    await ok('/v1/holds', { user_id: a.id, amount: 20 });
    // Payments arrive through signed webhooks (test/payments.test.ts); here only their sums matter.
    const t = (n: string) => sql.table(`${app.database.schema}.${n}`);
    await sql`insert into ${t('payments')} (id, provider, provider_payment_id, amount, amount_refunded, currency, status, match_status, user_id)
      values ('pay_adm1', 'stripe', 'pi_adm1', 1999, 500, 'usd', 'succeeded', 'matched', ${a.id}),
             ('pay_adm2', 'stripe', 'pi_adm2', 700, 0, 'eur', 'succeeded', 'unmatched', null),
             ('pay_adm3', 'stripe', 'pi_adm3', 5000, 0, 'usd', 'failed', 'matched', ${a.id})`.execute(app.database.root);
  });
  afterAll(async () => {
    await app.close();
  });

  it('totals and the per-minute series agree with what happened', async () => {
    const res = await svc().get('/v1/admin/stats?bucket=minute');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const s = res.body;
    expect(s.bucket).toBe('minute');
    expect(s.series).toHaveLength(120);
    // Consecutive minutes, oldest first, the last one holding "now".
    for (let i = 1; i < s.series.length; i++) {
      expect(Date.parse(s.series[i].at) - Date.parse(s.series[i - 1].at)).toBe(60_000);
    }
    expect(Date.parse(s.series.at(-1).at)).toBeLessThanOrEqual(Date.now());
    const sum = (f: string) => s.series.reduce((acc: number, p: Json) => acc + p[f], 0);
    // Two sign-up bonuses (3 each) and the grant of 100; the debit; the hold.
    expect(sum('users')).toBe(2);
    expect(sum('granted')).toBe(106);
    expect(sum('spent')).toBe(30);
    expect(sum('held')).toBe(20);
    expect(sum('expired')).toBe(0);
    expect(s.totals).toMatchObject({
      users: 2, balance: 76, held: 20, credited: 106, spent: 30, expired: 0, events: 0,
      revenue: { usd: 1499, eur: 700 }, unmatched_payments: 1, failed_webhooks: 0, jobs: {},
    });
    const revenue = s.series.map((p: Json) => p.revenue).filter((r: object) => Object.keys(r).length > 0);
    expect(revenue.reduce((acc: Record<string, number>, r: Record<string, number>) => {
      for (const [c, v] of Object.entries(r)) acc[c] = (acc[c] ?? 0) + v;
      return acc;
    }, {})).toEqual({ usd: 1499, eur: 700 });
  });

  it('a range in the past has buckets of zeros; bad ranges are refused with their reason', async () => {
    const res = await svc().get('/v1/admin/stats?bucket=day&from=2020-01-01T00:00:00Z&to=2020-01-08T00:00:00Z');
    expect(res.status).toBe(200);
    expect(res.body.series.map((p: Json) => p.at)).toEqual(
      Array.from({ length: 7 }, (_, i) => new Date(Date.UTC(2020, 0, 1 + i)).toISOString()),
    );
    expect(res.body.series.every((p: Json) => p.granted === 0 && p.users === 0 && Object.keys(p.revenue).length === 0)).toBe(true);
    expect(res.body.totals.users).toBe(2);

    const backwards = await svc().get('/v1/admin/stats?from=2020-01-08T00:00:00Z&to=2020-01-01T00:00:00Z');
    expect(backwards.status).toBe(400);
    expect(backwards.body.error.message).toMatch(/from must be before to/);
    const tooMany = await svc().get('/v1/admin/stats?bucket=minute&from=2020-01-01T00:00:00Z&to=2020-01-08T00:00:00Z');
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.message).toMatch(/At most 1000 buckets/);
    expect((await svc().get('/v1/admin/stats?bucket=week')).status).toBe(400);
  });

  it('reconcile runs the ledger checks and reports drift it finds', async () => {
    const clean = await svc().post('/v1/admin/reconcile', undefined);
    expect(clean.status, JSON.stringify(clean.body)).toBe(200);
    expect(clean.body).toMatchObject({ ok: true, drift: [], open_holds: 1 });
    expect(clean.body.accounts).toBeGreaterThanOrEqual(2);

    // Break one balance behind the ledger's back (as the owner, like a bad manual fix would).
    const t = sql.table(`${app.database.schema}.credit_accounts`);
    await sql`update ${t} set balance = balance + 5 where user_id = ${b.id}`.execute(app.database.root);
    try {
      const drifted = await svc().post('/v1/admin/reconcile', undefined);
      expect(drifted.status).toBe(200);
      expect(drifted.body.ok).toBe(false);
      expect(drifted.body.drift).toContainEqual(expect.objectContaining({ check: 'balance = sum(ledger)', expected: 3, actual: 8 }));
    } finally {
      await sql`update ${t} set balance = balance - 5 where user_id = ${b.id}`.execute(app.database.root);
    }
    expect((await svc().post('/v1/admin/reconcile', undefined)).body.ok).toBe(true);
  });

  it('GET /v1/jobs lists every user\'s jobs newest first, filtered by status and user, with cursor paging', async () => {
    const made: string[] = [];
    for (const [user, cost] of [[a, 1], [b, 1], [a, 2]] as const) {
      if (user === b) await svc().post('/v1/credits/grant', { user_id: b.id, amount: 5, reason: 't' }, { idempotencyKey: key() });
      const res = await svc().post('/v1/jobs', { user_id: user.id, kind: 'image', input: {}, cost }, { idempotencyKey: key() });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      made.push(res.body.id);
    }
    expect((await svc().post(`/v1/jobs/${made[0]}/fail`, { error: 'boom' })).status).toBe(200);

    const all = await svc().get('/v1/jobs?limit=2');
    expect(all.status).toBe(200);
    expect(all.body.data.map((j: { id: string }) => j.id)).toEqual([made[2], made[1]]);
    const rest = await svc().get(`/v1/jobs?limit=2&cursor=${all.body.next_cursor}`);
    expect(rest.body.data.map((j: { id: string }) => j.id)).toEqual([made[0]]);
    expect(rest.body.next_cursor).toBeNull();

    expect((await svc().get('/v1/jobs?status=failed')).body.data.map((j: { id: string }) => j.id)).toEqual([made[0]]);
    expect((await svc().get(`/v1/jobs?user_id=${b.id}`)).body.data.map((j: { id: string }) => j.id)).toEqual([made[1]]);
    expect((await svc().get('/v1/jobs?status=nope')).status).toBe(400);
    expect((await svc().get('/v1/admin/stats')).body.totals.jobs).toEqual({ pending: 2, failed: 1 });
  });

  it('end users get 403 on every admin view, however they sign in', async () => {
    const user = await signUp(app);
    const as = client(app.server, user.token);
    expect((await as.get('/v1/admin/stats')).status).toBe(403);
    expect((await as.post('/v1/admin/reconcile', undefined)).status).toBe(403);
    expect((await as.get('/v1/jobs')).status).toBe(403);
  });
});
