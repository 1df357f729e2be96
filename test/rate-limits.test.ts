/**
 * Issue 13, item 9 (strangers): login and sign-up run argon2id, bad bearer tokens cost a lookup,
 * bad job callbacks cost a lookup. Each is throttled per address (and login/sign-up per e-mail),
 * answering 429 with the catalogue's `rate_limited` envelope and a Retry-After header. The service
 * key is never throttled. Limits are set low here; the harness leaves them off for other tests.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signCallback } from '../src/modules/jobs/jobs.signature.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

describe(`strangers are rate-limited (${TARGET})`, () => {
  let app: TestApp;
  const email = (tag = 'rl') => `${tag}_${randomBytes(5).toString('hex')}@example.com`;
  const PASSWORD = 'correct horse battery';
  const send = (method: 'GET' | 'POST', url: string, ip: string, opts: { body?: unknown; token?: string; headers?: Record<string, string> } = {}) =>
    app.server.inject({
      method,
      url,
      remoteAddress: ip,
      headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(opts.headers ?? {}) },
      ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    });
  const expectLimited = (res: Awaited<ReturnType<typeof send>>) => {
    expect(res.statusCode, res.body).toBe(429);
    const body = JSON.parse(res.body) as { error: { code: string; message: string; request_id: string } };
    expect(body.error).toMatchObject({ code: 'rate_limited', request_id: expect.any(String) });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  };

  beforeAll(async () => {
    app = await createTestApp({
      rateLimits: {
        loginPerIp: { max: 3, windowSeconds: 600 },
        loginPerEmail: { max: 4, windowSeconds: 600 },
        signupPerIp: { max: 3, windowSeconds: 600 },
        signupPerEmail: { max: 2, windowSeconds: 600 },
        failuresPerIp: { max: 3, windowSeconds: 600 },
        entries: 10_000,
      },
    });
  });
  afterAll(async () => {
    await app.close();
  });

  it('login is limited per address: 429 rate_limited with Retry-After, even for the right password', async () => {
    const ip = '10.1.0.1';
    const victim = email();
    expect((await send('POST', '/v1/auth/signup', '10.1.0.200', { body: { email: victim, password: PASSWORD } })).statusCode).toBe(201);
    for (let i = 0; i < 3; i++) {
      expect((await send('POST', '/v1/auth/login', ip, { body: { email: email(), password: 'wrong password' } })).statusCode).toBe(401);
    }
    expectLimited(await send('POST', '/v1/auth/login', ip, { body: { email: victim, password: PASSWORD } }));
    // Another address logs in.
    expect((await send('POST', '/v1/auth/login', '10.1.0.2', { body: { email: victim, password: PASSWORD } })).statusCode).toBe(200);
  });

  it('login is limited per e-mail across addresses (case-insensitively)', async () => {
    const victim = email('victim');
    expect((await send('POST', '/v1/auth/signup', '10.2.0.200', { body: { email: victim, password: PASSWORD } })).statusCode).toBe(201);
    for (let i = 0; i < 4; i++) {
      const res = await send('POST', '/v1/auth/login', `10.2.0.${i + 1}`, { body: { email: i % 2 ? victim.toUpperCase() : victim, password: `guess number ${i}` } });
      expect(res.statusCode).toBe(401);
    }
    expectLimited(await send('POST', '/v1/auth/login', '10.2.0.50', { body: { email: victim, password: PASSWORD } }));
    // Other accounts are not affected.
    const other = email();
    expect((await send('POST', '/v1/auth/signup', '10.2.0.201', { body: { email: other, password: PASSWORD } })).statusCode).toBe(201);
    expect((await send('POST', '/v1/auth/login', '10.2.0.51', { body: { email: other, password: PASSWORD } })).statusCode).toBe(200);
  });

  it('sign-up is limited per address and per e-mail', async () => {
    const ip = '10.3.0.1';
    for (let i = 0; i < 3; i++) expect((await send('POST', '/v1/auth/signup', ip, { body: { email: email(), password: PASSWORD } })).statusCode).toBe(201);
    expectLimited(await send('POST', '/v1/auth/signup', ip, { body: { email: email(), password: PASSWORD } }));

    const same = email('same');
    expect((await send('POST', '/v1/auth/signup', '10.3.0.2', { body: { email: same, password: PASSWORD } })).statusCode).toBe(201);
    expect((await send('POST', '/v1/auth/signup', '10.3.0.3', { body: { email: same, password: PASSWORD } })).statusCode).toBe(409);
    expectLimited(await send('POST', '/v1/auth/signup', '10.3.0.4', { body: { email: same.toUpperCase(), password: PASSWORD } }));
  });

  it('bad bearer tokens are limited per address; the service key and other addresses are not', async () => {
    const ip = '10.4.0.1';
    const bad = ['garbage-token', `tly_${randomBytes(24).toString('hex')}`, 'eyJhbGciOiJIUzI1NiJ9.e30.bad'];
    for (const token of bad) expect((await send('GET', '/v1/me', ip, { token })).statusCode).toBe(401);
    expectLimited(await send('GET', '/v1/me', ip, { token: 'garbage-token' }));
    expectLimited(await send('GET', '/v1/me', ip, { token: `tly_${randomBytes(24).toString('hex')}` }));
    // The service key from the same address is never throttled (and costs the throttle nothing).
    for (let i = 0; i < 5; i++) expect((await send('GET', '/v1/users?limit=1', ip, { token: app.serviceKey })).statusCode).toBe(200);
    expect((await send('GET', '/v1/me', '10.4.0.2', { token: 'garbage-token' })).statusCode).toBe(401);
  });

  it('job callbacks that fail verification are limited per address', async () => {
    const user = await makeUser(app);
    const job = await send('POST', '/v1/jobs', '10.5.0.100', {
      token: app.serviceKey,
      body: { user_id: user.id, kind: 'video', input: {}, cost: 0 },
      headers: { 'idempotency-key': `rl-${randomBytes(6).toString('hex')}` },
    });
    expect(job.statusCode).toBe(201);
    const id = JSON.parse(job.body).id as string;
    const ip = '10.5.0.1';
    const raw = JSON.stringify({ event: 'started' });
    const callback = (header: string, from: string, jobId = id) =>
      send('POST', `/v1/jobs/${jobId}/callback`, from, { body: raw, headers: { 'content-type': 'application/json', 'tally-signature': header } });
    const now = Math.floor(Date.now() / 1000);
    expect((await callback(`t=${now},v1=${'0'.repeat(64)}`, ip)).statusCode).toBe(400);
    expect((await callback(`t=${now},v1=${'1'.repeat(64)}`, ip)).statusCode).toBe(400);
    expect((await callback(`t=${now},v1=${'2'.repeat(64)}`, ip, 'job_01unknown')).statusCode).toBe(404);
    expectLimited(await callback(signCallback(app.config.jobs.callbackSecret, id, raw, now), ip));
    // The provider, from its own address, is not affected.
    expect((await callback(signCallback(app.config.jobs.callbackSecret, id, raw, now), '10.5.0.2')).statusCode).toBe(200);
  });
});
