import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_WEBHOOKS_OUT } from '../src/config/config.js';
import { isInwardAddress } from '../src/modules/webhooks-out/webhooks-out.transport.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** The app's side: a receiver on a port, answering what `answer` says (the outer edge). */
async function receiver() {
  const got: Received[] = [];
  const state = { status: 200, delayMs: 0 };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      setTimeout(() => {
        res.writeHead(state.status, { 'content-type': 'text/plain' });
        res.end(state.status < 300 ? 'thanks' : 'receiver is down');
      }, state.delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { got, state, port, url: `http://127.0.0.1:${port}/hooks`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Verified with the official package, as a receiver would — at `now` (Tally's clock in these tests). */
function verify(secret: string, r: Received, now = Date.now()) {
  const real = Date.now;
  Date.now = () => now;
  try {
    return new Webhook(secret).verify(r.body, {
      'webhook-id': String(r.headers['webhook-id']),
      'webhook-timestamp': String(r.headers['webhook-timestamp']),
      'webhook-signature': String(r.headers['webhook-signature']),
    }) as { id: string; type: string; version: number; data: Record<string, unknown> };
  } finally {
    Date.now = real;
  }
}

describe(`outgoing webhooks (${TARGET})`, () => {
  let app: TestApp;
  let rx: Awaited<ReturnType<typeof receiver>>;
  let offsetMs = 0;
  const clock = () => new Date(Date.now() + offsetMs);
  const key = () => randomBytes(8).toString('hex');

  beforeAll(async () => {
    rx = await receiver();
    app = await createTestApp({ webhooksOut: { ...DEFAULT_WEBHOOKS_OUT, allowPrivate: true, timeoutMs: 1_000, disableAfterMs: 3_600_000 } }, { clock });
  });
  afterAll(async () => {
    await app.close();
    await rx.close();
  });

  const svc = () => client(app.server, app.config.auth.serviceKey);
  const deliver = () => app.services.queue.runDue(clock());
  const endpoint = async (eventTypes: string[], url = rx.url) => {
    const res = await svc().post('/v1/webhook-endpoints', { url, event_types: eventTypes, description: 'test' }, { idempotencyKey: key() });
    expect(res.status).toBe(201);
    return res.body as { id: string; secret: string };
  };
  const deliveries = async (endpointId: string) =>
    (await svc().get(`/v1/webhook-endpoints/${endpointId}/deliveries`)).body.data as { id: string; status: string; attempts: number; last_status_code: number | null; last_error: string | null; message_id: string; event_type: string }[];
  async function finishedJob(outcome: 'complete' | 'fail' | 'cancel') {
    const user = await makeUser(app);
    await svc().post('/v1/credits/grant', { user_id: user.id, amount: 50, reason: 'fund' }, { idempotencyKey: key() });
    const job = (await svc().post('/v1/jobs', { user_id: user.id, kind: 'video', model: 'veo3', input: { prompt: 'a cat' }, cost: 10 }, { idempotencyKey: key() })).body as { id: string };
    const res = await svc().post(`/v1/jobs/${job.id}/${outcome}`, outcome === 'fail' ? { error: 'boom' } : {}, { idempotencyKey: key() });
    expect(res.status).toBe(200);
    return job.id;
  }

  it('an endpoint gets the events it asked for, signed per Standard Webhooks; its secret is shown once', async () => {
    const ep = await endpoint(['job.completed', 'job.failed']);
    expect(ep.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const shown = await svc().get(`/v1/webhook-endpoints/${ep.id}`);
    expect(shown.status).toBe(200);
    expect(JSON.stringify(shown.body)).not.toContain(ep.secret);
    const stored = await app.database.db.selectFrom('webhook_endpoints').select('secret_enc').where('id', '=', ep.id).executeTakeFirstOrThrow();
    expect(stored.secret_enc).not.toContain(ep.secret.slice(6));

    const before = rx.got.length;
    const completed = await finishedJob('complete');
    const failed = await finishedJob('fail');
    await finishedJob('cancel'); // not an event anyone asked for
    await deliver();
    const mine = rx.got.slice(before);
    expect(mine).toHaveLength(2);
    const events = mine.map((r) => verify(ep.secret, r, clock().getTime()));
    expect(events.map((e) => [e.type, e.data['id']])).toEqual([
      ['job.completed', completed],
      ['job.failed', failed],
    ]);
    // The webhook-id is the message's id, the receiver's dedupe key; the body is versioned.
    expect(events[0]?.id).toBe(mine[0]?.headers['webhook-id']);
    expect(events[0]).toMatchObject({ version: 1, data: { status: 'completed', captured: 10 } });
    expect((await deliveries(ep.id)).map((d) => [d.event_type, d.status, d.attempts, d.last_status_code])).toEqual([
      ['job.failed', 'succeeded', 1, 200],
      ['job.completed', 'succeeded', 1, 200],
    ]);
    await svc().call('DELETE', `/v1/webhook-endpoints/${ep.id}`);
  });

  it('no event without its change: a refused transition records no message', async () => {
    const ep = await endpoint(['*']);
    const user = await makeUser(app);
    await svc().post('/v1/credits/grant', { user_id: user.id, amount: 50, reason: 'fund' }, { idempotencyKey: key() });
    const job = (await svc().post('/v1/jobs', { user_id: user.id, kind: 'video', input: { prompt: 'x' }, cost: 10 }, { idempotencyKey: key() })).body as { id: string };
    const over = await svc().post(`/v1/jobs/${job.id}/complete`, { cost: 11 }, { idempotencyKey: key() });
    expect(over.status).toBe(400);
    // The grant told credits.granted (and the sign-up bonus); the refused completion told nothing.
    const messages = await app.database.db.selectFrom('webhook_messages').select('type').where('user_id', '=', user.id).execute();
    expect(messages.map((m) => m.type)).toEqual(['credits.granted', 'credits.granted']);
    expect((await deliveries(ep.id)).filter((d) => d.event_type.startsWith('job.'))).toHaveLength(0);
    await svc().call('DELETE', `/v1/webhook-endpoints/${ep.id}`);
  });

  it('a failing receiver is retried with backoff and the same webhook-id; the log shows each attempt; a delivery can be sent again by hand', async () => {
    const ep = await endpoint(['job.completed']);
    rx.state.status = 500;
    const before = rx.got.length;
    await finishedJob('complete');
    await deliver();
    let [d] = await deliveries(ep.id);
    expect(d).toMatchObject({ status: 'pending', attempts: 1, last_status_code: 500, last_error: 'HTTP 500' });
    rx.state.status = 200;
    await deliver(); // not due yet: the backoff holds it back
    expect(rx.got.length - before).toBe(1);
    offsetMs += 6_000;
    await deliver();
    [d] = await deliveries(ep.id);
    expect(d).toMatchObject({ status: 'succeeded', attempts: 2, last_status_code: 200, last_error: null });
    const sent = rx.got.slice(before);
    expect(sent).toHaveLength(2);
    expect(sent[1]?.headers['webhook-id']).toBe(sent[0]?.headers['webhook-id']);
    // Replay by hand: the same message again (same id), once more in the log.
    const again = await svc().post(`/v1/webhook-deliveries/${d?.id}/retry`, {}, { idempotencyKey: key() });
    expect(again.status).toBe(202);
    await deliver();
    expect(rx.got.length - before).toBe(3);
    expect(rx.got.at(-1)?.headers['webhook-id']).toBe(sent[0]?.headers['webhook-id']);
    expect((await deliveries(ep.id))[0]).toMatchObject({ status: 'succeeded', attempts: 3 });
    await svc().call('DELETE', `/v1/webhook-endpoints/${ep.id}`);
  });

  it('an endpoint failing for longer than the window is disabled, gets nothing more, and can be enabled again', async () => {
    const ep = await endpoint(['job.failed']);
    rx.state.status = 503;
    await finishedJob('fail');
    await deliver();
    offsetMs += 3_700_000; // past the one-hour window of this app
    await deliver();
    rx.state.status = 200;
    const shown = (await svc().get(`/v1/webhook-endpoints/${ep.id}`)).body as { is_active: boolean; disabled_reason: string; failing_since: string | null };
    expect(shown.is_active).toBe(false);
    expect(shown.disabled_reason).toMatch(/^failing since .*HTTP 503/);
    expect((await deliveries(ep.id))[0]).toMatchObject({ status: 'failed', attempts: 2 });
    await finishedJob('fail');
    expect(await deliveries(ep.id)).toHaveLength(1);
    const enabled = await svc().patch(`/v1/webhook-endpoints/${ep.id}`, { is_active: true });
    expect(enabled.body).toMatchObject({ is_active: true, disabled_reason: null, failing_since: null });
    await finishedJob('fail');
    await deliver();
    expect((await deliveries(ep.id))[0]).toMatchObject({ status: 'succeeded' });
    await svc().call('DELETE', `/v1/webhook-endpoints/${ep.id}`);
  });

  it('a rotated secret: both sign during the grace, only the new one after it', async () => {
    const ep = await endpoint(['webhook.test']);
    const rotated = await svc().post(`/v1/webhook-endpoints/${ep.id}/rotate-secret`, { grace_seconds: 3600 }, { idempotencyKey: key() });
    expect(rotated.status).toBe(200);
    const fresh = rotated.body.secret as string;
    expect(fresh).not.toBe(ep.secret);
    expect((await svc().post(`/v1/webhook-endpoints/${ep.id}/test`, {}, { idempotencyKey: key() })).status).toBe(202);
    await deliver();
    const during = rx.got.at(-1) as Received;
    expect(verify(ep.secret, during, clock().getTime()).type).toBe('webhook.test');
    expect(verify(fresh, during, clock().getTime()).type).toBe('webhook.test');
    offsetMs += 3_700_000;
    await svc().post(`/v1/webhook-endpoints/${ep.id}/test`, {}, { idempotencyKey: key() });
    await deliver();
    const after = rx.got.at(-1) as Received;
    expect(verify(fresh, after, clock().getTime()).type).toBe('webhook.test');
    expect(() => verify(ep.secret, after, clock().getTime())).toThrow();
    await svc().call('DELETE', `/v1/webhook-endpoints/${ep.id}`);
  });

  it('a slow receiver is timed out, logged, and retried', async () => {
    const ep = await endpoint(['webhook.test']);
    rx.state.delayMs = 2_500;
    await svc().post(`/v1/webhook-endpoints/${ep.id}/test`, {}, { idempotencyKey: key() });
    const started = Date.now();
    await deliver();
    expect(Date.now() - started).toBeLessThan(2_400);
    rx.state.delayMs = 0;
    expect((await deliveries(ep.id))[0]).toMatchObject({ status: 'pending', attempts: 1, last_status_code: null });
    expect((await deliveries(ep.id))[0]?.last_error).toMatch(/^no answer/);
    await svc().call('DELETE', `/v1/webhook-endpoints/${ep.id}`);
  });

  it('only the service manages endpoints; bad URLs and unknown event types are refused', async () => {
    const user = await makeUser(app);
    const keyRes = await svc().post(`/v1/users/${user.id}/api-keys`, { name: 'k' }, { idempotencyKey: key() });
    const asUser = client(app.server, keyRes.body.key as string);
    expect((await asUser.get('/v1/webhook-endpoints')).status).toBe(403);
    expect((await asUser.post('/v1/webhook-endpoints', { url: rx.url, event_types: ['*'] }, { idempotencyKey: key() })).status).toBe(403);
    for (const body of [
      { url: 'ftp://example.com/x', event_types: ['*'] },
      { url: 'https://user:pw@example.com/x', event_types: ['*'] },
      { url: 'https://example.com/x', event_types: ['credits.stolen'] },
      { url: 'https://example.com/x', event_types: [] },
    ]) {
      const res = await svc().post('/v1/webhook-endpoints', body, { idempotencyKey: key() });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
  });
});

describe(`outgoing webhooks never reach inward addresses unless allowed (${TARGET})`, () => {
  let app: TestApp;
  let rx: Awaited<ReturnType<typeof receiver>>;

  beforeAll(async () => {
    rx = await receiver();
    app = await createTestApp({ webhooksOut: { ...DEFAULT_WEBHOOKS_OUT, allowPrivate: false } });
  });
  afterAll(async () => {
    await app.close();
    await rx.close();
  });

  it('loopback by address, by name and through DNS is refused before connecting, and logged', async () => {
    const svc = client(app.server, app.config.auth.serviceKey);
    const hostIsInward = (await lookup(hostname(), { all: true }).catch(() => [])).some((a) => isInwardAddress(a.address));
    const urls = [`http://127.0.0.1:${rx.port}/x`, `http://localhost:${rx.port}/x`, `http://[::1]:${rx.port}/x`, `http://127.1:${rx.port}/x`, ...(hostIsInward ? [`http://${hostname()}:${rx.port}/x`] : [])];
    for (const url of urls) {
      const ep = (await svc.post('/v1/webhook-endpoints', { url, event_types: ['webhook.test'] }, { idempotencyKey: randomBytes(6).toString('hex') })).body as { id: string };
      await svc.post(`/v1/webhook-endpoints/${ep.id}/test`, {}, { idempotencyKey: randomBytes(6).toString('hex') });
      await app.services.queue.runDue(new Date());
      const [d] = (await svc.get(`/v1/webhook-endpoints/${ep.id}/deliveries`)).body.data as { status: string; last_error: string }[];
      expect(d?.status, url).toBe('pending');
      expect(d?.last_error, url).toMatch(/refused/);
    }
    expect(rx.got).toHaveLength(0);
    for (const a of ['10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::127.0.0.1', '::a9fe:a9fe', '64:ff9b::10.0.0.1', '64:ff9b::a9fe:a9fe', '2002:7f00:1::1', '2002:c0a8:101::']) {
      expect(isInwardAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::8.8.8.8', '64:ff9b::808:808', '2002:808:808::1']) expect(isInwardAddress(a), a).toBe(false);
  });
});
