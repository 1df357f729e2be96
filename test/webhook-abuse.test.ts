/**
 * Issue 13, item 9 (webhooks): what a stranger can make Tally store or do by posting forged
 * deliveries. Rejected deliveries are counted per (provider, reason), not stored one row each;
 * PayPal's verification answers are cached per delivery; and an address whose deliveries keep
 * failing verification is refused (429) before PayPal is called or anything is written.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

const STRIPE_SECRET = `whsec_${randomBytes(16).toString('hex')}`;

// A fake PayPal: a token, and verify-webhook-signature answering SUCCESS for signatures that start
// with "genuine-" (the real scheme is exercised in test/payments.test.ts). It counts the calls.
let paypal: Server;
let paypalBase = '';
const verifyCalls: string[] = [];
function startFakePayPal(): Promise<void> {
  paypal = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/v1/oauth2/token') {
        res.end(JSON.stringify({ access_token: 'A21AA-fake', token_type: 'Bearer', expires_in: 32400 }));
        return;
      }
      const b = JSON.parse(body) as { transmission_sig: string };
      verifyCalls.push(b.transmission_sig);
      res.end(JSON.stringify({ verification_status: b.transmission_sig.startsWith('genuine-') ? 'SUCCESS' : 'FAILURE' }));
    });
  });
  return new Promise((resolve) =>
    paypal.listen(0, '127.0.0.1', () => {
      paypalBase = `http://127.0.0.1:${(paypal.address() as AddressInfo).port}`;
      resolve();
    }),
  );
}

describe(`strangers cannot make webhooks store or call out without bound (${TARGET})`, () => {
  let app: TestApp;
  const svc = () => client(app.server, app.serviceKey);
  let ipSeq = 0;
  /** A fresh address per call unless one is given: a distributed sender. */
  const nextIp = () => `10.9.${Math.floor(++ipSeq / 250)}.${(ipSeq % 250) + 1}`;
  const post = (provider: string, raw: string, headers: Record<string, string>, ip = nextIp()) =>
    app.server.inject({ method: 'POST', url: `/v1/webhooks/${provider}`, payload: raw, remoteAddress: ip, headers: { 'content-type': 'application/json', ...headers } });
  const paypalHeaders = (sig: string, transmissionId = randomBytes(8).toString('hex')) => ({
    'paypal-auth-algo': 'SHA256withRSA',
    'paypal-cert-url': 'https://api.paypal.com/v1/notifications/certs/CERT-fake',
    'paypal-transmission-id': transmissionId,
    'paypal-transmission-sig': sig,
    'paypal-transmission-time': new Date().toISOString(),
  });
  const paypalEvent = () => JSON.stringify({ id: `WH-${randomBytes(6).toString('hex')}`, event_type: 'TALLY.TEST.IGNORED', resource: {} });

  beforeAll(async () => {
    await startFakePayPal();
    app = await createTestApp({
      payments: {
        stripe: { webhookSecrets: [STRIPE_SECRET] },
        lemonsqueezy: null,
        creem: null,
        paypal: { webhookId: 'WH-ID-ABUSE', clientId: 'id', clientSecret: 'secret', apiBase: paypalBase },
        toleranceSeconds: 300,
        creditPrice: null,
      },
      rateLimits: {
        loginPerIp: null,
        loginPerEmail: null,
        signupPerIp: null,
        signupPerEmail: null,
        failuresPerIp: { max: 3, windowSeconds: 600 },
        entries: 10_000,
      },
    });
  });
  afterAll(async () => {
    await app?.close();
    await new Promise((r) => paypal?.close(r));
  });

  it('rejected deliveries are counted per provider and reason, not stored one row each', async () => {
    // 60 forged Stripe deliveries, each different, each from its own address.
    for (let i = 0; i < 60; i++) {
      const raw = JSON.stringify({ id: `evt_${i}`, type: 'checkout.session.completed', padding: randomBytes(200).toString('hex') });
      const t = Math.floor(Date.now() / 1000);
      const forged = `t=${t},v1=${createHmac('sha256', `whsec_wrong_${i}`).update(`${t}.${raw}`).digest('hex')}`;
      const res = await post('stripe', raw, i % 3 === 0 ? {} : { 'stripe-signature': forged });
      expect(res.statusCode).toBe(400);
    }
    const log = await svc().get('/v1/webhook-events?provider=stripe&status=rejected&limit=200');
    const rows = log.body.data as Array<{ error: string; attempts: number; payload: unknown }>;
    // One row per reason (missing header; no matching signature), with how many arrived.
    expect(rows.length).toBe(2);
    expect(rows.reduce((n, r) => n + r.attempts, 0)).toBe(60);
    expect(rows.map((r) => r.error).sort()).toEqual(['missing Stripe-Signature header', 'no v1 signature matches a configured secret']);
    for (const r of rows) expect(r.payload).toBeNull();
  });

  it("PayPal's answer is cached per delivery: the same delivery calls PayPal once", async () => {
    const before = verifyCalls.length;
    const forged = paypalEvent();
    const headers = paypalHeaders('forged-abc');
    for (let i = 0; i < 4; i++) expect((await post('paypal', forged, headers)).statusCode).toBe(400);
    expect(verifyCalls.length - before).toBe(1);

    const genuine = paypalEvent();
    const ok = paypalHeaders('genuine-xyz');
    const first = await post('paypal', genuine, ok);
    expect(first.statusCode).toBe(200);
    const again = await post('paypal', genuine, ok);
    expect(again.statusCode).toBe(200);
    expect(JSON.parse(again.body).replayed).toBe(true);
    expect(verifyCalls.length - before).toBe(2);
    // The same transmission headers with another body are another delivery: PayPal is asked again
    // (this fake accepts any "genuine-" signature; the real PayPal checks the body's CRC32 too).
    expect((await post('paypal', paypalEvent(), ok)).statusCode).toBe(200);
    expect(verifyCalls.length - before).toBe(3);
  });

  it('an address whose deliveries keep failing verification gets 429 before PayPal is called or anything is written', async () => {
    const ip = '10.77.0.1';
    const before = verifyCalls.length;
    const rowsBefore = (await svc().get('/v1/webhook-events?provider=paypal&status=rejected&limit=200')).body.data as Array<{ attempts: number }>;
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof post>> | null = null;
    for (let i = 0; i < 8; i++) {
      const res = await post('paypal', paypalEvent(), paypalHeaders(`forged-${i}`), ip);
      statuses.push(res.statusCode);
      if (res.statusCode === 429) limited = res;
    }
    expect(statuses).toEqual([400, 400, 400, 429, 429, 429, 429, 429]);
    expect(verifyCalls.length - before).toBe(3);
    const rowsAfter = (await svc().get('/v1/webhook-events?provider=paypal&status=rejected&limit=200')).body.data as Array<{ attempts: number }>;
    const count = (rows: Array<{ attempts: number }>) => rows.reduce((n, r) => n + r.attempts, 0);
    expect(count(rowsAfter) - count(rowsBefore)).toBe(3);
    expect(limited).not.toBeNull();
    expect(JSON.parse(must(limited, 'limited').body).error.code).toBe('rate_limited');
    expect(Number(must(limited, 'limited').headers['retry-after'])).toBeGreaterThan(0);
    // Another provider's budget, and other addresses, are untouched; a genuine delivery still passes elsewhere.
    const raw = JSON.stringify({ id: 'evt_x', type: 'x' });
    expect((await post('stripe', raw, {}, ip)).statusCode).toBe(400);
    expect((await post('paypal', paypalEvent(), paypalHeaders('genuine-other'))).statusCode).toBe(200);
  });

});
