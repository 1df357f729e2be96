import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { expect } from 'vitest';
import { DEFAULT_WEBHOOKS_OUT } from '../../src/config/config.js';
import type { Config } from '../../src/config/config.js';
import { client } from './client.js';
import type { TestApp } from './harness.js';

/** Shared by test/webhooks-events-*.test.ts: a receiver (the app's side), and the outbox as stored. */

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

export interface EventBody {
  id: string;
  type: string;
  version: number;
  timestamp: string;
  data: Record<string, unknown>;
}

/** A receiver on a local port answering 200 (the outer edge). */
export async function receiver() {
  const got: Received[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { got, url: `http://127.0.0.1:${port}/hooks`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Outgoing webhooks that may call a receiver on localhost. */
export const localWebhooks: Partial<Config> = { webhooksOut: { ...DEFAULT_WEBHOOKS_OUT, allowPrivate: true, timeoutMs: 2_000 } };

/** Verified with the official `standardwebhooks` package, as a receiver would (at Tally's clock `now`). */
export function verifyDelivery(secret: string, r: Received, now = Date.now()): EventBody {
  const real = Date.now;
  Date.now = () => now;
  try {
    return new Webhook(secret).verify(r.body, {
      'webhook-id': String(r.headers['webhook-id']),
      'webhook-timestamp': String(r.headers['webhook-timestamp']),
      'webhook-signature': String(r.headers['webhook-signature']),
    }) as EventBody;
  } finally {
    Date.now = real;
  }
}

export const idemKey = () => randomBytes(8).toString('hex');

/** An endpoint (service) for these event types; answers its id and secret. */
export async function addEndpoint(app: TestApp, url: string, eventTypes: string[], workspaceId?: string) {
  const res = await client(app.server, app.serviceKey).post('/v1/webhook-endpoints', { url, event_types: eventTypes, ...(workspaceId ? { workspace_id: workspaceId } : {}) });
  expect(res.status).toBe(201);
  return res.body as { id: string; secret: string };
}

/** The outbox's messages of a type (and user), oldest first, as their bodies. */
export async function messages(app: TestApp, type: string, userId?: string): Promise<EventBody[]> {
  let q = app.database.db.selectFrom('webhook_messages').select(['payload']).where('type', '=', type);
  if (userId) q = q.where('user_id', '=', userId);
  const rows = await q.orderBy('created_at').orderBy('id').execute();
  return rows.map((r) => (typeof r.payload === 'string' ? JSON.parse(r.payload) : r.payload) as EventBody);
}
