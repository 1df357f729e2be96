import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signCallback } from '../src/modules/jobs/jobs.signature.js';
import { transition, JOB_STATUSES, JOB_EVENTS, isFinalJob } from '../src/modules/jobs/jobs.js';
import { client } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * Jobs hold their cost at creation and settle exactly once — capture on completion, release on
 * failure, cancellation or timeout — whatever order and however often calls, callbacks and
 * timeouts arrive. Balances are checked exactly after every race.
 */
describe(`jobs hold, capture and release credits exactly once (${TARGET})`, () => {
  let app: TestApp;
  let now = new Date();
  const clock = () => now;
  const svc = () => client(app.server, app.serviceKey);
  const key = () => `job-${randomBytes(8).toString('hex')}`;

  beforeAll(async () => {
    app = await createTestApp({}, { clock });
  });
  afterAll(async () => {
    await app.close();
  });

  async function funded(amount: number) {
    const user = await makeUser(app);
    const g = await svc().post('/v1/credits/grant', { user_id: user.id, amount, reason: 'test' }, { idempotencyKey: key() });
    expect(g.status).toBe(201);
    return user;
  }
  const balance = async (userId: string) => (await svc().get(`/v1/users/${userId}/balance`)).body as { balance: number; held: number; available: number };
  const createJob = async (userId: string, cost: number, extra: Record<string, unknown> = {}) => {
    const res = await svc().post('/v1/jobs', { user_id: userId, kind: 'video', model: 'veo3', input: { prompt: 'a cat' }, cost, ...extra }, { idempotencyKey: key() });
    return res;
  };
  const ledger = async (userId: string) =>
    ((await svc().get(`/v1/users/${userId}/transactions?limit=200`)).body.data as { type: string; amount: number; hold_id: string | null }[]);
  const holdOf = async (holdId: string) => (await svc().get(`/v1/holds/${holdId}`)).body as { status: string; captured: number | null };
  const callback = (jobId: string, body: unknown, opts: { secret?: string; at?: number; header?: string } = {}) => {
    const raw = JSON.stringify(body);
    const t = opts.at ?? Math.floor(now.getTime() / 1000);
    const header = opts.header ?? signCallback(opts.secret ?? app.config.jobs.callbackSecret, jobId, raw, t);
    return app.server.inject({ method: 'POST', url: `/v1/jobs/${jobId}/callback`, payload: raw, headers: { 'content-type': 'application/json', 'tally-signature': header } });
  };

  it('the transition function: final states accept nothing, and exactly one transition settles', () => {
    for (const from of JOB_STATUSES) {
      for (const ev of JOB_EVENTS) {
        const t = transition(from, ev);
        if (isFinalJob(from)) expect(t.ok).toBe(false);
        if (t.ok) expect(t.settle === 'none').toBe(!isFinalJob(t.to));
      }
    }
    expect(transition('processing', 'start')).toMatchObject({ ok: false });
  });

  it('creating a job holds its cost; 402 and no job when it cannot be held', async () => {
    const user = await funded(20); // + sign-up bonus 3
    const res = await createJob(user.id, 15);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ status: 'pending', cost: 15, user_id: user.id, captured: null });
    expect(res.body.hold_id).toMatch(/^hold_/);
    expect(await balance(user.id)).toMatchObject({ balance: 23, held: 15, available: 8 });

    const poor = await createJob(user.id, 9);
    expect(poor.status).toBe(402);
    expect(poor.body.error.code).toBe('insufficient_credits');
    const jobs = await svc().get(`/v1/users/${user.id}/jobs`);
    expect(jobs.body.data.map((j: { id: string }) => j.id)).toEqual([res.body.id]);
    expect(await balance(user.id)).toMatchObject({ balance: 23, held: 15 });
  });

  it('the same Idempotency-Key creates one job and one hold', async () => {
    const user = await funded(10);
    const k = key();
    const body = { user_id: user.id, kind: 'chat', input: {}, cost: 5 };
    const [a, b] = await Promise.all([svc().post('/v1/jobs', body, { idempotencyKey: k }), svc().post('/v1/jobs', body, { idempotencyKey: k })]);
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.body.id).toBe(a.body.id);
    expect(await balance(user.id)).toMatchObject({ held: 5 });
  });

  it('start → complete captures the actual cost (≤ held) and releases the rest', async () => {
    const user = await funded(30);
    const job = (await createJob(user.id, 20)).body;
    const started = await svc().post(`/v1/jobs/${job.id}/start`, { external_id: `ext-${job.id}` });
    expect(started.status).toBe(200);
    expect(started.body).toMatchObject({ status: 'processing', external_id: `ext-${job.id}` });
    expect(started.body.started_at).not.toBeNull();
    const over = await svc().post(`/v1/jobs/${job.id}/complete`, { cost: 21 });
    expect(over.status).toBe(400);
    const done = await svc().post(`/v1/jobs/${job.id}/complete`, { cost: 12, result_url: 'https://cdn.example.com/v.mp4', output: { frames: 24 }, tokens_used: 900 });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ status: 'completed', captured: 12, result_url: 'https://cdn.example.com/v.mp4', output: { frames: 24 }, tokens_used: 900 });
    expect(await balance(user.id)).toMatchObject({ balance: 33 - 12, held: 0 });
    expect(await holdOf(job.hold_id)).toMatchObject({ status: 'captured', captured: 12 });
    const again = await svc().post(`/v1/jobs/${job.id}/fail`, { error: 'late' });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('invalid_state');
    expect(await balance(user.id)).toMatchObject({ balance: 21, held: 0 });
  });

  it('concurrent and repeated fail/cancel/complete/callback calls settle exactly once, balances exact', async () => {
    for (let round = 0; round < 4; round++) {
      const user = await funded(100);
      const job = (await createJob(user.id, 40)).body;
      const calls = [
        () => svc().post(`/v1/jobs/${job.id}/fail`, { error: 'boom' }),
        () => svc().post(`/v1/jobs/${job.id}/cancel`),
        () => svc().post(`/v1/jobs/${job.id}/complete`, { cost: 30 }),
        () => svc().post(`/v1/jobs/${job.id}/fail`, { error: 'boom again' }),
        async () => {
          const r = await callback(job.id, { event: 'failed', error: 'provider says no' });
          return { status: r.statusCode, body: JSON.parse(r.body) };
        },
        async () => {
          const r = await callback(job.id, { event: 'completed', cost: 25 });
          return { status: r.statusCode, body: JSON.parse(r.body) };
        },
        () => svc().post(`/v1/jobs/${job.id}/cancel`),
      ];
      // A different order each round.
      const order = calls.map((c, i) => ({ c, k: (i * 7 + round * 3) % calls.length })).sort((a, b) => a.k - b.k).map((x) => x.c);
      const results = await Promise.all(order.map((c) => c()));
      const applied = results.filter((r) => r.status === 200 && (r.body.applied ?? true) === true);
      expect(applied, JSON.stringify(results.map((r) => [r.status, r.body?.error?.code ?? r.body?.status ?? r.body?.job?.status]))).toHaveLength(1);
      for (const r of results) expect([200, 409]).toContain(r.status);
      const final = (await svc().get(`/v1/jobs/${job.id}`)).body;
      const entries = (await ledger(user.id)).filter((e) => e.hold_id === job.hold_id);
      const hold = await holdOf(job.hold_id);
      const b = await balance(user.id);
      expect(b.held).toBe(0);
      if (final.status === 'completed') {
        expect(entries.filter((e) => e.type === 'capture')).toHaveLength(1);
        expect(hold.status).toBe('captured');
        expect(b.balance).toBe(103 - final.captured);
      } else {
        expect(['failed', 'canceled']).toContain(final.status);
        expect(entries.filter((e) => e.type === 'capture')).toHaveLength(0);
        expect(hold.status).toBe('released');
        expect(b.balance).toBe(103);
      }
    }
  });

  it('provider callbacks: verified signature drives the transition; repeats are acknowledged; bad signatures change nothing', async () => {
    const user = await funded(10);
    const job = (await createJob(user.id, 10)).body;
    const bad = await callback(job.id, { event: 'failed', error: 'x' }, { secret: 'not-the-secret-not-the-secret-xx' });
    expect(bad.statusCode).toBe(400);
    const stale = await callback(job.id, { event: 'failed', error: 'x' }, { at: Math.floor(now.getTime() / 1000) - 3600 });
    expect(stale.statusCode).toBe(400);
    const missing = await app.server.inject({ method: 'POST', url: `/v1/jobs/${job.id}/callback`, payload: { event: 'failed' } });
    expect(missing.statusCode).toBe(400);
    // A body re-serialised differently from what was signed does not verify.
    const raw = JSON.stringify({ event: 'failed', error: 'x' });
    const sig = signCallback(app.config.jobs.callbackSecret, job.id, raw, Math.floor(now.getTime() / 1000));
    const tampered = await app.server.inject({ method: 'POST', url: `/v1/jobs/${job.id}/callback`, payload: JSON.stringify({ event: 'completed' }), headers: { 'content-type': 'application/json', 'tally-signature': sig } });
    expect(tampered.statusCode).toBe(400);
    expect((await svc().get(`/v1/jobs/${job.id}`)).body.status).toBe('pending');

    const started = await callback(job.id, { event: 'started', external_id: `prov-${job.id}` });
    expect(started.statusCode).toBe(200);
    expect(JSON.parse(started.body)).toMatchObject({ applied: true, job: { status: 'processing' } });
    // The job now has its provider's id: later callbacks name it (docs/jobs.md).
    const done = await callback(job.id, { event: 'completed', cost: 7, external_id: `prov-${job.id}` });
    expect(JSON.parse(done.body)).toMatchObject({ applied: true, job: { status: 'completed', captured: 7 } });
    const replay = await callback(job.id, { event: 'completed', cost: 7, external_id: `prov-${job.id}` });
    expect(replay.statusCode).toBe(200);
    expect(JSON.parse(replay.body)).toMatchObject({ applied: false, job: { status: 'completed', captured: 7 } });
    const conflict = await callback(job.id, { event: 'failed', error: 'late', external_id: `prov-${job.id}` });
    expect(conflict.statusCode).toBe(409);
    expect(await balance(user.id)).toMatchObject({ balance: 13 - 7, held: 0 });
  });

  it('a timeout releases the hold through the queue, once; a settled job is left alone', async () => {
    const user = await funded(10);
    const open = (await createJob(user.id, 6, { timeout_seconds: 60 })).body;
    const settled = (await createJob(user.id, 4, { timeout_seconds: 60 })).body;
    expect((await svc().post(`/v1/jobs/${settled.id}/complete`, {})).status).toBe(200);
    expect(await balance(user.id)).toMatchObject({ balance: 9, held: 6 });

    // Not due yet: nothing happens.
    expect((await app.services.queue.runDue(now)).ran).toBe(0);
    now = new Date(now.getTime() + 61_000);
    const report = await app.services.queue.runDue(now);
    expect(report).toMatchObject({ ran: 1, completed: 1, failed: 0 });
    const after = (await svc().get(`/v1/jobs/${open.id}`)).body;
    expect(after).toMatchObject({ status: 'timed_out', error: 'timed out' });
    expect(await holdOf(open.hold_id)).toMatchObject({ status: 'released' });
    expect(await balance(user.id)).toMatchObject({ balance: 9, held: 0 });
    expect((await app.services.queue.runDue(now)).ran).toBe(0);
    // Late calls after the timeout are refused and move nothing.
    expect((await svc().post(`/v1/jobs/${open.id}/complete`, {})).status).toBe(409);
    expect(await balance(user.id)).toMatchObject({ balance: 9, held: 0 });
  });

  it('a free job (cost 0) holds nothing and still follows the lifecycle', async () => {
    const user = await makeUser(app);
    const job = (await createJob(user.id, 0)).body;
    expect(job.hold_id).toBeNull();
    expect((await svc().post(`/v1/jobs/${job.id}/complete`, {})).body).toMatchObject({ status: 'completed', captured: 0 });
  });

  it('end users read their own jobs only, and cannot drive them', async () => {
    const alice = await signUp(app);
    const bob = await signUp(app);
    await svc().post('/v1/credits/grant', { user_id: alice.user.id, amount: 5, reason: 't' }, { idempotencyKey: key() });
    const job = (await createJob(alice.user.id, 5)).body;
    expect((await alice.api.get(`/v1/jobs/${job.id}`)).status).toBe(200);
    expect((await alice.api.get(`/v1/users/${alice.user.id}/jobs`)).body.data).toHaveLength(1);
    expect((await bob.api.get(`/v1/jobs/${job.id}`)).status).toBe(404);
    expect((await bob.api.get(`/v1/users/${alice.user.id}/jobs`)).status).toBe(403);
    for (const action of ['start', 'complete', 'fail', 'cancel']) {
      expect((await alice.api.post(`/v1/jobs/${job.id}/${action}`, action === 'fail' ? { error: 'x' } : {})).status).toBe(403);
    }
    expect((await svc().get(`/v1/jobs/${job.id}`)).body.status).toBe('pending');
  });

  it('an external id is unique per provider', async () => {
    const user = await funded(10);
    const a = await createJob(user.id, 1, { external_id: 'same', provider: 'fal' });
    expect(a.status).toBe(201);
    const b = await createJob(user.id, 1, { external_id: 'same', provider: 'fal' });
    expect(b.status).toBe(409);
    const c = await createJob(user.id, 1, { external_id: 'same', provider: 'replicate' });
    expect(c.status).toBe(201);
    expect(await balance(user.id)).toMatchObject({ held: 2 });
  });
});
