/**
 * Authorization: service-only routes refuse users, user-only routes refuse the service, every user
 * route serves its owner, money routes need an Idempotency-Key, and no one raises their own privileges.
 *
 * Part of the shared security suite: its set-up and the classification of every route are in
 * test/support/security-suite.ts.
 */
import { describe, expect, it } from 'vitest';
import { client, type Res } from './support/client.js';
import { dbFingerprint, errorProblems, fingerprintDiff } from './support/db-fingerprint.js';
import { makeApiKey } from './support/fixtures.js';
import { A, aKey, app, B, bearer, bKey, email, freshJwt, ops, requestFor, ROUTES, S, send, useSecuritySuite, victimView } from './support/security-suite.js';
import { must } from '../src/lib/must.js';

useSecuritySuite();

describe('authorization: who may call what', () => {
  const serviceOnly = () => ops.filter((op) => ROUTES[op.key]?.auth === 'service');
  const userOnly = () => ops.filter((op) => ROUTES[op.key]?.auth === 'user');
  const userRoutes = () => ops.filter((op) => ['user', 'any'].includes(ROUTES[op.key]?.auth ?? ''));

  it('service-only routes answer 403 forbidden to a user JWT and to a full-scope user API key, and accept the service key', async () => {
    const targets = serviceOnly();
    expect(targets.map((o) => o.key).sort()).toEqual([
      'DELETE /v1/credit-packages/{id}',
      'DELETE /v1/email-aliases/{id}',
      'DELETE /v1/gateway/upstreams/{id}',
      'DELETE /v1/storage/buckets/{id}',
      'DELETE /v1/users/{id}/budget-guard',
      'DELETE /v1/users/{id}/identities/{provider}',
      'GET /v1/admin/stats',
      'GET /v1/analytics/events',
      'GET /v1/analytics/events/counts',
      'GET /v1/audit',
      'GET /v1/audit/verify',
      'GET /v1/credit-packages',
      'GET /v1/credit-packages/{id}',
      'GET /v1/gateway/upstreams',
      'GET /v1/gateway/upstreams/{id}',
      'GET /v1/gateway/usage',
      'GET /v1/identities/{provider}/{provider_user_id}',
      'GET /v1/jobs',
      'GET /v1/logs/errors',
      'GET /v1/logs/requests',
      'GET /v1/mail',
      'GET /v1/mail/{id}',
      'GET /v1/metrics/latency',
      'GET /v1/metrics/latency/minutes',
      'GET /v1/payments',
      'GET /v1/storage/buckets',
      'GET /v1/storage/buckets/{id}',
      'GET /v1/storage/buckets/{id}/usage',
      'GET /v1/users',
      'GET /v1/webhook-events',
      'PATCH /v1/api-keys/{id}',
      'PATCH /v1/cost-models/{metric}',
      'PATCH /v1/credit-packages/{id}',
      'PATCH /v1/gateway/upstreams/{id}',
      'PATCH /v1/plans/{id}',
      'PATCH /v1/storage/buckets/{id}',
      'PATCH /v1/subscriptions/{id}',
      'POST /v1/admin/reconcile',
      'POST /v1/check',
      'POST /v1/checkout-references',
      'POST /v1/cost-models',
      'POST /v1/credit-packages',
      'POST /v1/credits/adjust',
      'POST /v1/credits/debit',
      'POST /v1/credits/grant',
      'POST /v1/credits/refund',
      'POST /v1/events',
      'POST /v1/events/batch',
      'POST /v1/gateway/upstreams',
      'POST /v1/holds',
      'POST /v1/holds/{id}/capture',
      'POST /v1/holds/{id}/release',
      'POST /v1/jobs',
      'POST /v1/jobs/{id}/cancel',
      'POST /v1/jobs/{id}/complete',
      'POST /v1/jobs/{id}/fail',
      'POST /v1/jobs/{id}/start',
      'POST /v1/overage-charges/{id}/status',
      'POST /v1/payments/{id}/resolve',
      'POST /v1/plans',
      'POST /v1/storage/buckets',
      'POST /v1/storage/check',
      'POST /v1/subscriptions/{id}/activate',
      'POST /v1/subscriptions/{id}/change-plan',
      'POST /v1/subscriptions/{id}/past-due',
      'POST /v1/users',
      'POST /v1/users/{id}/email-aliases',
      'POST /v1/users/{id}/email-verification',
      'POST /v1/users/{id}/identities',
      'PUT /v1/users/{id}/budget-guard',
      'PUT /v1/users/{id}/low-balance-threshold',
      'PUT /v1/workspaces/{id}/low-balance-threshold',
    ]);
    const problems: string[] = [];
    for (const op of targets) {
      // One request: refused twice (which must change nothing), then accepted for the service.
      const req = await requestFor(op);
      const before = await dbFingerprint(app);
      for (const [who, header] of [['user JWT', bearer(A.token)], ['user API key', bearer(aKey.key)]] as const) {
        problems.push(...errorProblems(await send(req, header), 403, 'forbidden', `${op.key} as ${who}`));
      }
      problems.push(...fingerprintDiff(before, await dbFingerprint(app), `${op.key} as a user JWT or API key`));
      const ok = await send(req, bearer(app.serviceKey));
      if (ok.status !== req.status) problems.push(`${op.key} as service: expected ${req.status}, got ${ok.status} ${JSON.stringify(ok.body)}`);
    }
    expect(problems).toEqual([]);
  });

  it('a money route called by the service without an Idempotency-Key is 400 invalid_request and writes nothing', async () => {
    const targets = serviceOnly().filter((op) => /^POST \/v1\/(credits|holds|events)/.test(op.key) || op.key === 'POST /v1/jobs');
    expect(targets.length).toBe(10);
    const problems: string[] = [];
    for (const op of targets) {
      const req = await requestFor(op);
      expect(Object.keys(req.headers), op.key).toContain('idempotency-key');
      delete req.headers['idempotency-key'];
      const before = await dbFingerprint(app);
      const res = await send(req, bearer(app.serviceKey));
      problems.push(...errorProblems(res, 400, 'invalid_request', `${op.key} without Idempotency-Key`));
      const message = (res.body as { error?: { message?: string } } | null)?.error?.message ?? '';
      if (!/idempotency-key/i.test(message)) problems.push(`${op.key} without Idempotency-Key: message does not name the header: ${message}`);
      problems.push(...fingerprintDiff(before, await dbFingerprint(app), `${op.key} without Idempotency-Key`));
    }
    expect(problems).toEqual([]);
  });

  it('user-only routes answer 403 forbidden to the service key and serve the signed-in user', async () => {
    const targets = userOnly();
    expect(targets.length).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const op of targets) {
      const before = await dbFingerprint(app);
      problems.push(...errorProblems(await send(await requestFor(op), bearer(app.serviceKey)), 403, 'forbidden', `${op.key} as service`));
      problems.push(...fingerprintDiff(before, await dbFingerprint(app), `${op.key} as service`));
    }
    expect(problems).toEqual([]);
    const me = await client(app.server, A.token).get('/v1/me');
    expect(me.status).toBe(200);
    expect(me.body.id).toBe(A.user.id);
    // Logging out ends exactly the caller's session: another session of the same user still works.
    const one = await freshJwt(A);
    const two = await freshJwt(A);
    expect((await client(app.server, one).post('/v1/auth/logout')).status).toBe(200);
    expect(errorProblems(await client(app.server, one).get('/v1/me'), 401, 'unauthenticated', 'logged-out JWT')).toEqual([]);
    expect((await client(app.server, two).get('/v1/me')).status).toBe(200);
    expect((await client(app.server, A.token).get('/v1/me')).status).toBe(200);
    const meByKey = await client(app.server, bKey.key).get('/v1/me');
    expect(meByKey.status).toBe(200);
    expect(meByKey.body.id).toBe(B.user.id);
  });

  it("every user route accepts its owner's JWT and full-scope API key (the classification is not just 'deny all')", async () => {
    const targets = userRoutes();
    expect(targets.length).toBeGreaterThan(5);
    const full = await makeApiKey(app, S.user.id, { name: 's-full', scopes: ['*'] });
    const problems: string[] = [];
    for (const op of targets) {
      for (const who of ['JWT', 'API key *'] as const) {
        const header = bearer(who === 'JWT' ? await freshJwt(S) : full.key);
        const req = await requestFor(op, S);
        const expected = who === 'JWT' ? req.status : (must(ROUTES[op.key], 'ROUTES[op.key]').keyStatus ?? req.status);
        const res = await send(req, header);
        if (res.status !== expected) problems.push(`${op.key} as ${who}: expected ${expected}, got ${res.status} ${JSON.stringify(res.body)}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('a user cannot raise their own privileges (service-only fields, stronger keys) and nothing changes', async () => {
    const a = client(app.server, A.token);
    const problems: string[] = [];
    const attempts: Array<[string, () => Promise<Res>]> = [
      ['role admin', () => a.patch(`/v1/users/${A.user.id}`, { role: 'admin' })],
      ['level', () => a.patch(`/v1/users/${A.user.id}`, { level: 1_000_000 })],
      ['is_active', () => a.patch(`/v1/users/${A.user.id}`, { is_active: false })],
      ['is_email_verified', () => a.patch(`/v1/users/${A.user.id}`, { is_email_verified: true })],
      ['email', () => a.patch(`/v1/users/${A.user.id}`, { email: email() })],
      ['metadata', () => a.patch(`/v1/users/${A.user.id}`, { metadata: { plan: 'enterprise' } })],
    ];
    const narrow = await makeApiKey(app, A.user.id, { name: 'narrow', scopes: ['keys:write'] });
    const k = client(app.server, narrow.key);
    attempts.push(
      ['key mints a * key', () => k.post(`/v1/users/${A.user.id}/api-keys`, { name: 'wider' })],
      ['key mints a users:write key', () => k.post(`/v1/users/${A.user.id}/api-keys`, { name: 'wider', scopes: ['keys:write', 'users:write'] })],
    );
    const before = await victimView();
    const fp = await dbFingerprint(app);
    for (const [label, run] of attempts) problems.push(...errorProblems(await run(), 403, 'forbidden', label));
    problems.push(...fingerprintDiff(fp, await dbFingerprint(app), 'privilege escalation'));
    expect(problems).toEqual([]);
    expect(await victimView()).toEqual(before);
  });
});
