/**
 * Signed deliveries for the payment-webhook tests: Stripe through the official package's
 * test-header helper, Lemon Squeezy and Creem with their body HMACs, PayPal against a local fake
 * of its API that checks a real RSA signature (the same scheme as test/payments.test.ts).
 */
import { createHmac, createSign, createVerify, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';
import Stripe from 'stripe';
import type { PaymentsConfig } from '../../src/config/config.js';
import type { TestApp } from './harness.js';
import type { Json } from './client.js';

const stripe = new Stripe('sk_test_unused');
const rid = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;

/** A Stripe checkout.session.completed for a one-time payment, as the current API sends it. */
export function stripeCheckout(o: {
  amount: number;
  currency?: string;
  metadata?: Record<string, string>;
  pi?: string;
  customer?: string | null;
  email?: string | null;
  clientRef?: string;
  tax?: number;
  invoice?: string;
}) {
  return {
    id: rid('evt'),
    object: 'event',
    livemode: false,
    type: 'checkout.session.completed',
    data: {
      object: {
        id: rid('cs_test'),
        object: 'checkout.session',
        mode: 'payment',
        payment_status: 'paid',
        status: 'complete',
        amount_total: o.amount,
        amount_subtotal: o.amount - (o.tax ?? 0),
        total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: o.tax ?? 0 },
        currency: o.currency ?? 'usd',
        customer: o.customer ?? null,
        client_reference_id: o.clientRef ?? null,
        customer_details: { email: o.email ?? null },
        invoice: o.invoice ?? null,
        payment_intent: o.pi ?? rid('pi'),
        metadata: o.metadata ?? {},
      },
    },
  };
}

export interface Webhooks {
  config: PaymentsConfig;
  stripe(event: object, opts?: { secret?: string; timestamp?: number }): Promise<{ status: number; body: Json }>;
  lemonsqueezy(event: object): Promise<{ status: number; body: Json }>;
  creem(event: object): Promise<{ status: number; body: Json }>;
  paypal(event: object): Promise<{ status: number; body: Json }>;
  close(): Promise<void>;
}

/** Starts the fake PayPal API and returns the providers' config plus a sender per provider. */
export async function webhookSenders(getApp: () => TestApp, creditPrice: PaymentsConfig['creditPrice'] = null): Promise<Webhooks> {
  const secrets = {
    stripe: `whsec_${randomBytes(16).toString('hex')}`,
    ls: randomBytes(16).toString('hex'),
    creem: `whsec_${randomBytes(16).toString('hex')}`,
    paypalWebhookId: 'WH-ID-HOLES',
  };
  const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/v1/oauth2/token') {
        res.end(JSON.stringify({ access_token: 'A21AA-fake', token_type: 'Bearer', expires_in: 32400 }));
        return;
      }
      if (req.url === '/v1/notifications/verify-webhook-signature' && req.headers.authorization === 'Bearer A21AA-fake') {
        const b = JSON.parse(body) as Record<string, string> & { webhook_event: unknown };
        const signed = `${b.transmission_id}|${b.transmission_time}|${b.webhook_id}|${crc32(JSON.stringify(b.webhook_event))}`;
        const verifier = createVerify('sha256');
        verifier.update(signed);
        const valid = verifier.verify(keys.publicKey, String(b.transmission_sig), 'base64');
        res.end(JSON.stringify({ verification_status: valid ? 'SUCCESS' : 'FAILURE' }));
        return;
      }
      res.statusCode = 401;
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const paypalBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const post = async (provider: string, raw: string, headers: Record<string, string>) => {
    const res = await getApp().server.inject({ method: 'POST', url: `/v1/webhooks/${provider}`, headers: { 'content-type': 'application/json', ...headers }, payload: raw });
    return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : null };
  };
  const hmac = (secret: string, raw: string) => createHmac('sha256', secret).update(raw).digest('hex');
  return {
    config: {
      stripe: { webhookSecrets: [secrets.stripe] },
      lemonsqueezy: { webhookSecret: secrets.ls },
      creem: { webhookSecret: secrets.creem },
      paypal: { webhookId: secrets.paypalWebhookId, clientId: 'client-id', clientSecret: 'client-secret', apiBase: paypalBase },
      toleranceSeconds: 300,
      creditPrice,
    },
    stripe: (event, opts = {}) => {
      const raw = JSON.stringify(event);
      const header = stripe.webhooks.generateTestHeaderString({ payload: raw, secret: opts.secret ?? secrets.stripe, ...(opts.timestamp ? { timestamp: opts.timestamp } : {}) });
      return post('stripe', raw, { 'stripe-signature': header });
    },
    lemonsqueezy: (event) => {
      const raw = JSON.stringify(event);
      return post('lemonsqueezy', raw, { 'x-signature': hmac(secrets.ls, raw) });
    },
    creem: (event) => {
      const raw = JSON.stringify(event);
      return post('creem', raw, { 'creem-signature': hmac(secrets.creem, raw) });
    },
    paypal: (event) => {
      const raw = JSON.stringify(event);
      const transmissionId = randomBytes(8).toString('hex');
      const time = new Date().toISOString();
      const signer = createSign('sha256');
      signer.update(`${transmissionId}|${time}|${secrets.paypalWebhookId}|${crc32(raw)}`);
      return post('paypal', raw, {
        'paypal-auth-algo': 'SHA256withRSA',
        'paypal-cert-url': `${paypalBase}/v1/notifications/certs/CERT-fake`,
        'paypal-transmission-id': transmissionId,
        'paypal-transmission-sig': signer.sign(keys.privateKey, 'base64'),
        'paypal-transmission-time': time,
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
