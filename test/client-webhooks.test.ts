import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWebhook, WebhookVerificationError } from '../clients/typescript/src/index.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { addEndpoint, idemKey, localWebhooks, type Received, receiver } from './support/webhooks.js';

/**
 * The client package's webhook helper (clients/typescript/src/webhooks.ts) on real Tally
 * deliveries: through the official `standardwebhooks` package (installed here) and through its
 * own implementation of the spec — both accept what Tally signed and refuse anything changed.
 */
describe(`the client's webhook verification (${TARGET})`, () => {
  let app: TestApp;
  let rx: Awaited<ReturnType<typeof receiver>>;
  let secret: string;
  let endpointId: string;
  let delivery: Received;

  beforeAll(async () => {
    rx = await receiver();
    app = await createTestApp(localWebhooks);
    ({ id: endpointId, secret } = await addEndpoint(app, rx.url, ['credits.granted']));
    const user = await makeUser(app);
    const before = rx.got.length;
    await client(app.server, app.serviceKey).post('/v1/credits/grant', { user_id: user.id, amount: 12, reason: 'fund' }, { idempotencyKey: idemKey() });
    await app.services.queue.runDue();
    const got = rx.got.slice(before).find((r) => r.body.includes('"amount":12'));
    if (!got) throw new Error('no delivery of the grant arrived');
    delivery = got;
  });
  afterAll(async () => {
    await app?.close();
    await rx?.close();
  });

  const modes = ['auto', 'builtin'] as const;

  it.each(modes)('a real delivery verifies (%s) and answers its event', async (implementation) => {
    const event = await verifyWebhook(secret, delivery.body, delivery.headers, { implementation });
    expect(event).toMatchObject({ type: 'credits.granted', version: 1, id: delivery.headers['webhook-id'], data: { transaction: { amount: 12 } } });
    // Bytes and a fetch-style Headers object work the same.
    const headers = new Headers(Object.entries(delivery.headers).map(([k, v]): [string, string] => [k, String(v)]));
    expect((await verifyWebhook(secret, new TextEncoder().encode(delivery.body), headers, { implementation })).id).toBe(event.id);
  });

  it.each(modes)('a tampered body, id or timestamp, another secret or missing headers are refused (%s)', async (implementation) => {
    const refuse = (body: string, headers: Record<string, string | string[] | undefined>, s = secret) =>
      expect(verifyWebhook(s, body, headers, { implementation })).rejects.toBeInstanceOf(WebhookVerificationError);
    await refuse(delivery.body.replace('"amount":12', '"amount":1200'), delivery.headers);
    await refuse(delivery.body, { ...delivery.headers, 'webhook-id': 'whmsg_forged' });
    await refuse(delivery.body, { ...delivery.headers, 'webhook-timestamp': String(Number(delivery.headers['webhook-timestamp']) + 1) });
    await refuse(delivery.body, delivery.headers, `whsec_${Buffer.alloc(32, 7).toString('base64')}`);
    await refuse(delivery.body, { ...delivery.headers, 'webhook-signature': undefined });
  });

  it('the built-in check enforces the timestamp tolerance; during a rotation either secret verifies', async () => {
    const sent = Number(delivery.headers['webhook-timestamp']) * 1000;
    await expect(verifyWebhook(secret, delivery.body, delivery.headers, { now: () => sent + 301_000 })).rejects.toThrow('too old');
    await expect(verifyWebhook(secret, delivery.body, delivery.headers, { now: () => sent - 301_000 })).rejects.toThrow('too new');
    expect((await verifyWebhook(secret, delivery.body, delivery.headers, { now: () => sent + 299_000 })).type).toBe('credits.granted');

    const rotated = await client(app.server, app.serviceKey).post(`/v1/webhook-endpoints/${endpointId}/rotate-secret`, {});
    const newSecret = rotated.body.secret as string;
    const before = rx.got.length;
    await client(app.server, app.serviceKey).post(`/v1/webhook-endpoints/${endpointId}/test`, {});
    await app.services.queue.runDue();
    const test = rx.got.slice(before)[0];
    if (!test) throw new Error('no test delivery arrived');
    expect(String(test.headers['webhook-signature']).split(' ')).toHaveLength(2);
    for (const implementation of modes) {
      expect((await verifyWebhook(secret, test.body, test.headers, { implementation })).type).toBe('webhook.test');
      expect((await verifyWebhook([`whsec_${Buffer.alloc(32, 1).toString('base64')}`, newSecret], test.body, test.headers, { implementation })).type).toBe('webhook.test');
    }
  });
});
