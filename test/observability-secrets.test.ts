import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeApiKey, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * Request logging never stores a secret: the service key, a user's tly_ key, a JWT, a password and
 * an outgoing webhook's signing secret are sent in every header, query parameter and body field of
 * many routes (auth, money, users, unmatched paths, failures), and are thrown in a 5xx error's
 * message; then every column of every stored log row is searched for each of them.
 */
describe(`request and error logs hold no secret (${TARGET})`, () => {
  let app: TestApp;
  const secrets: Record<string, string> = {};

  beforeAll(async () => {
    app = await createTestApp({
      observability: { requestLogs: { batchSize: 10_000, flushMs: 60_000, maxBuffered: 100_000 }, errorLogs: true, retentionDays: {} },
    });
    const password = `Pw ${randomBytes(9).toString('base64')} !`;
    const signed = await signUp(app, `s_${randomBytes(5).toString('hex')}@example.com`, password);
    const key = await makeApiKey(app, signed.user.id);
    const endpoint = await client(app.server, app.serviceKey).post(
      '/v1/webhook-endpoints',
      { url: 'https://hooks.example.com/tally', event_types: ['job.completed'] },
      { idempotencyKey: `w-${randomBytes(4).toString('hex')}` },
    );
    expect(endpoint.status).toBe(201);
    Object.assign(secrets, {
      serviceKey: app.serviceKey,
      apiKey: key.key,
      jwt: signed.token,
      password,
      webhookSecret: endpoint.body.secret as string,
    });
    // The error a failing dependency might raise, with secrets in it as libraries write them.
    app.services.admin.stats = async () => {
      throw new Error(
        `upstream refused postgres://tally:${encodeURIComponent(password)}@db.internal/tally with Authorization: Bearer ${signed.token}; ` +
          `key ${key.key}; service ${app.serviceKey}; signing secret ${endpoint.body.secret as string}`,
      );
    };
  });
  afterAll(async () => {
    await app.close();
  });

  it('no stored column of api_logs or error_logs contains any of them', async () => {
    const all = Object.values(secrets);
    const headers: Record<string, string> = {};
    all.forEach((s, i) => {
      headers[`x-secret-${i}`] = s;
    });
    Object.assign(headers, {
      'user-agent': secrets['password'] as string,
      'x-forwarded-for': secrets['jwt'] as string,
      cookie: `session=${secrets['jwt']}; key=${secrets['apiKey']}`,
      referer: `https://app.example.com/?token=${secrets['serviceKey']}`,
      'x-api-key': secrets['apiKey'] as string,
      'webhook-signature': secrets['webhookSecret'] as string,
    });
    const query = `?password=${encodeURIComponent(secrets['password'] as string)}&token=${secrets['jwt']}&key=${secrets['apiKey']}&service=${secrets['serviceKey']}&whsec=${encodeURIComponent(secrets['webhookSecret'] as string)}`;
    const body = { email: 'x@example.com', password: secrets['password'], api_key: secrets['apiKey'], token: secrets['jwt'], service_key: secrets['serviceKey'], secret: secrets['webhookSecret'] };
    const calls: { method: 'GET' | 'POST'; url: string; token: string | null; body?: unknown }[] = [
      { method: 'POST', url: '/v1/auth/login', token: null, body: { email: 'x@example.com', password: secrets['password'] } },
      { method: 'POST', url: `/v1/auth/login${query}`, token: null, body },
      { method: 'POST', url: '/v1/auth/signup', token: null, body },
      { method: 'POST', url: `/v1/credits/debit${query}`, token: secrets['serviceKey'] as string, body },
      { method: 'POST', url: '/v1/users', token: secrets['serviceKey'] as string, body },
      { method: 'GET', url: `/v1/users/${secrets['apiKey']}${query}`, token: secrets['jwt'] as string },
      { method: 'GET', url: `/v1/users/${secrets['jwt']}`, token: secrets['apiKey'] as string },
      { method: 'GET', url: `/v1/no-such-route/${secrets['serviceKey']}${query}`, token: secrets['serviceKey'] as string },
      { method: 'GET', url: `/v1/credits/balance${query}`, token: `${secrets['jwt']}x` },
      { method: 'GET', url: `/v1/admin/stats${query}`, token: secrets['serviceKey'] as string },
      { method: 'GET', url: '/v1/admin/stats', token: secrets['serviceKey'] as string },
    ];
    const statuses: number[] = [];
    for (const c of calls) {
      const res = await app.server.inject({
        method: c.method,
        url: c.url,
        headers: { ...headers, ...(c.token ? { authorization: `Bearer ${c.token}` } : {}), ...(c.body ? { 'idempotency-key': `k-${randomBytes(4).toString('hex')}` } : {}) },
        ...(c.body ? { payload: c.body as object } : {}),
      });
      statuses.push(res.statusCode);
    }
    // The calls cover refusals, 404s and the failure this test is about.
    expect(statuses).toContain(500);
    expect(statuses).toContain(401);
    expect(statuses).toContain(404);
    await app.services.observability.flush();

    const t = (name: string) => sql.table(`${app.database.schema}.${name}`);
    const apiRows = await sql<{ row: string }>`select to_jsonb(l)::text as row from ${t('api_logs')} l`.execute(app.database.db);
    const errorRows = await sql<{ row: string }>`select to_jsonb(e)::text as row from ${t('error_logs')} e`.execute(app.database.db);
    expect(apiRows.rows.length).toBeGreaterThanOrEqual(calls.length);
    expect(errorRows.rows.length).toBeGreaterThanOrEqual(1);
    // The search can find what it looks for: the error rows did receive the message around the secrets.
    expect(errorRows.rows.some((r) => r.row.includes('upstream refused'))).toBe(true);
    const stored = [...apiRows.rows, ...errorRows.rows].map((r) => r.row);
    for (const [name, secret] of Object.entries(secrets)) {
      // As sent, and as JSON and URLs would encode it.
      for (const form of new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)])) {
        const leaks = stored.filter((row) => row.includes(form));
        expect(leaks, `${name} found in ${leaks[0] ?? ''}`).toEqual([]);
      }
    }
  });
});
