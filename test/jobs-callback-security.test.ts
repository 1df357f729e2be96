import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signCallback } from '../src/modules/jobs/jobs.signature.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * Issue 13, item 4: a provider callback is a credential for one job only. Its signature covers the
 * job's id, so a signed callback cannot be replayed against another job (or another user's job); it
 * is checked on the raw bytes before the body is parsed or validated; each provider can have its own
 * secret; and a signed callback still cannot move more than the job's hold or act after the window.
 */
describe(`job callbacks are bound to their job (${TARGET})`, () => {
  let app: TestApp;
  let now = new Date();
  const clock = () => now;
  const GLOBAL = randomBytes(32).toString('hex');
  const ACME = randomBytes(32).toString('hex');
  const svc = () => client(app.server, app.serviceKey);
  const key = () => `cbsec-${randomBytes(8).toString('hex')}`;
  const unix = () => Math.floor(now.getTime() / 1000);

  beforeAll(async () => {
    app = await createTestApp({ jobs: { callbackSecret: GLOBAL, callbackToleranceSeconds: 300, providerSecrets: { acme: ACME } } }, { clock });
  });
  afterAll(async () => {
    await app.close();
  });

  async function funded(amount: number) {
    const user = await makeUser(app);
    expect((await svc().post('/v1/credits/grant', { user_id: user.id, amount, reason: 'test' }, { idempotencyKey: key() })).status).toBe(201);
    return user;
  }
  async function job(userId: string, cost: number, extra: Record<string, unknown> = {}) {
    const res = await svc().post('/v1/jobs', { user_id: userId, kind: 'video', input: {}, cost, ...extra }, { idempotencyKey: key() });
    expect(res.status).toBe(201);
    return res.body as { id: string; hold_id: string; status: string };
  }
  const balance = async (userId: string) => (await svc().get(`/v1/users/${userId}/balance`)).body as { balance: number; held: number };
  const statusOf = async (jobId: string) => (await svc().get(`/v1/jobs/${jobId}`)).body.status as string;
  /** What a provider sends for `jobId`: the raw body and its signature header. */
  const signed = (jobId: string, body: unknown, opts: { secret?: string; at?: number } = {}) => {
    const raw = typeof body === 'string' ? body : JSON.stringify(body);
    return { raw, header: signCallback(opts.secret ?? GLOBAL, jobId, raw, opts.at ?? unix()) };
  };
  const send = (jobId: string, msg: { raw: string; header: string }) =>
    app.server.inject({
      method: 'POST',
      url: `/v1/jobs/${jobId}/callback`,
      payload: msg.raw,
      headers: { 'content-type': 'application/json', 'tally-signature': msg.header },
    });

  it('a callback signed for one job cannot settle another job', async () => {
    const user = await funded(100);
    const a = await job(user.id, 40);
    const b = await job(user.id, 30);
    // The provider's genuine callback for A: completed at cost 0.
    const forA = signed(a.id, { event: 'completed', cost: 0 });
    expect((await send(a.id, forA)).statusCode).toBe(200);
    // Replayed byte for byte against B: refused, B still holds its 30.
    const replay = await send(b.id, forA);
    expect(replay.statusCode).toBe(400);
    expect(JSON.parse(replay.body).error).toMatchObject({ code: 'invalid_request', details: { header: 'tally-signature' } });
    expect(await statusOf(b.id)).toBe('pending');
    expect(await balance(user.id)).toMatchObject({ balance: 103, held: 30 });
  });

  it("a callback for one user's job cannot settle another user's job", async () => {
    const x = await funded(50);
    const y = await funded(50);
    const jx = await job(x.id, 20);
    const jy = await job(y.id, 20);
    const forX = signed(jx.id, { event: 'completed', cost: 1 });
    expect((await send(jx.id, forX)).statusCode).toBe(200);
    expect((await send(jy.id, forX)).statusCode).toBe(400);
    expect(await statusOf(jy.id)).toBe('pending');
    expect(await balance(x.id)).toMatchObject({ balance: 52, held: 0 });
    expect(await balance(y.id)).toMatchObject({ balance: 53, held: 20 });
  });

  it('the signature is checked on the raw bytes before the body is parsed or validated', async () => {
    const user = await funded(10);
    const j = await job(user.id, 5);
    const inject = (payload: string, header?: string) =>
      app.server.inject({
        method: 'POST',
        url: `/v1/jobs/${j.id}/callback`,
        payload,
        headers: { 'content-type': 'application/json', ...(header ? { 'tally-signature': header } : {}) },
      });
    // A stranger learns nothing about the body rules: every unsigned body gets the signature error.
    for (const payload of ['{not json', JSON.stringify({ event: 'exploded' }), JSON.stringify({ event: 'completed', cost: -5 }), JSON.stringify({ event: 'completed', user_id: 'usr_x' })]) {
      const res = await inject(payload);
      expect(res.statusCode, payload).toBe(400);
      expect(JSON.parse(res.body).error.details, payload).toMatchObject({ header: 'tally-signature' });
      const forged = await inject(payload, `t=${unix()},v1=${'0'.repeat(64)}`);
      expect(JSON.parse(forged.body).error.details, payload).toMatchObject({ header: 'tally-signature' });
    }
    // A correctly signed but invalid body is then refused for what it is.
    const bad = await send(j.id, signed(j.id, { event: 'completed', cost: -5 }));
    expect(bad.statusCode).toBe(400);
    expect(JSON.parse(bad.body).error).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('body.cost') });
    expect(JSON.parse(bad.body).error.details?.header).toBeUndefined();
    expect(await statusOf(j.id)).toBe('pending');
  });

  it("each provider's jobs verify only with that provider's secret (the global secret is the default)", async () => {
    const user = await funded(20);
    const acme = await job(user.id, 5, { provider: 'acme' });
    const other = await job(user.id, 5, { provider: 'other' });
    // The global secret does not sign for a provider that has its own.
    expect((await send(acme.id, signed(acme.id, { event: 'started' }))).statusCode).toBe(400);
    // Acme's secret does not sign for anyone else's jobs.
    expect((await send(other.id, signed(other.id, { event: 'started' }, { secret: ACME }))).statusCode).toBe(400);
    expect(await statusOf(acme.id)).toBe('pending');
    expect(await statusOf(other.id)).toBe('pending');
    expect((await send(acme.id, signed(acme.id, { event: 'started' }, { secret: ACME }))).statusCode).toBe(200);
    expect((await send(other.id, signed(other.id, { event: 'started' }))).statusCode).toBe(200);
  });

  it("a job with a provider id accepts only callbacks that name it (a signed callback cannot re-point the job)", async () => {
    const user = await funded(20);
    const j = await job(user.id, 10, { external_id: 'prov-1' });
    const wrong = await send(j.id, signed(j.id, { event: 'completed', cost: 0, external_id: 'prov-2' }));
    expect(wrong.statusCode).toBe(409);
    const unnamed = await send(j.id, signed(j.id, { event: 'completed', cost: 0 }));
    expect(unnamed.statusCode).toBe(409);
    expect((await svc().get(`/v1/jobs/${j.id}`)).body).toMatchObject({ status: 'pending', external_id: 'prov-1' });
    const right = await send(j.id, signed(j.id, { event: 'completed', cost: 4, external_id: 'prov-1' }));
    expect(right.statusCode).toBe(200);
    expect(await balance(user.id)).toMatchObject({ balance: 19, held: 0 });
  });

  it('a signed callback cannot capture more than the hold, nor a negative cost', async () => {
    const user = await funded(20);
    const j = await job(user.id, 10);
    const over = await send(j.id, signed(j.id, { event: 'completed', cost: 11 }));
    expect(over.statusCode).toBe(400);
    const negative = await send(j.id, signed(j.id, { event: 'completed', cost: -1 }));
    expect(negative.statusCode).toBe(400);
    expect(await statusOf(j.id)).toBe('pending');
    expect(await balance(user.id)).toMatchObject({ balance: 23, held: 10 });
  });

  it('a signed callback replayed after the tolerance window acts on nothing', async () => {
    const user = await funded(20);
    const j = await job(user.id, 10);
    const started = signed(j.id, { event: 'failed', error: 'provider gave up' });
    const later = now;
    now = new Date(later.getTime() + 301_000);
    try {
      const res = await send(j.id, started);
      expect(res.statusCode).toBe(400);
      expect(await statusOf(j.id)).toBe('pending');
      expect(await balance(user.id)).toMatchObject({ balance: 23, held: 10 });
    } finally {
      now = later;
    }
  });
});
