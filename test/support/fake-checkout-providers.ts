/**
 * The payment providers' checkout APIs, faked at the HTTP edge: one local server speaking
 * Stripe's (`POST /v1/checkout/sessions`, form-encoded, as the official `stripe` package sends
 * it), Lemon Squeezy's (`/ls/v1/checkouts`, JSON:API), Creem's (`/creem/v1/checkouts`) and
 * PayPal's (`/paypal/v1/oauth2/token`, `/paypal/v2/checkout/orders`) request and response shapes.
 * Every request is recorded, so a test can read back what Tally sent (the signed metadata) and
 * echo it in the webhook that follows, as the provider would.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CheckoutConfig } from '../../src/config/config.js';

export interface Recorded {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Stripe: the form fields, flat (`metadata[tally_sig]`); the others: the JSON body. */
  body: Record<string, unknown>;
  /** The provider's id for what it created. */
  id: string;
}

export interface FakeProviders {
  config: CheckoutConfig;
  /** Every create request, oldest first. */
  requests: Recorded[];
  /** Stripe prices the fake knows (price id → amount, currency); Lemon Squeezy variants and Creem products it sells. */
  stripePrices: Map<string, { amount: number; currency: string }>;
  lsVariants: Set<string>;
  creemProducts: Set<string>;
  /** While set, every create answers this status (an outage or a refusal). */
  failWith: number | null;
  /** PayPal orders the buyer approved (a capture of any other is refused: ORDER_NOT_APPROVED). */
  paypalApproved: Set<string>;
  /** PayPal captures made: order id → capture id and the capture request's headers. */
  paypalCaptures: Map<string, { captureId: string; headers: Record<string, string | string[] | undefined> }>;
  last(): Recorded;
  close(): Promise<void>;
}

const rid = (p: string) => `${p}_${randomBytes(10).toString('hex')}`;

export async function fakeCheckoutProviders(): Promise<FakeProviders> {
  const fake: Omit<FakeProviders, 'config' | 'close'> = {
    requests: [],
    stripePrices: new Map(),
    lsVariants: new Set(),
    creemProducts: new Set(),
    failWith: null,
    paypalApproved: new Set(),
    paypalCaptures: new Map(),
    last: () => {
      const r = fake.requests[fake.requests.length - 1];
      if (!r) throw new Error('no checkout request recorded');
      return r;
    },
  };
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
    req.on('end', () => {
      const path = req.url ?? '';
      const send = (status: number, body: unknown) => {
        res.statusCode = status;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(body));
      };
      if (path === '/paypal/v1/oauth2/token') {
        const basic = Buffer.from('pp-client:pp-secret').toString('base64');
        if (req.headers.authorization !== `Basic ${basic}`) return send(401, { error: 'invalid_client' });
        return send(200, { access_token: 'A21AA-checkout', token_type: 'Bearer', expires_in: 32400 });
      }
      if (fake.failWith !== null) return send(fake.failWith, { error: { message: 'fake failure' }, message: 'fake failure', errors: [{ detail: 'fake failure' }] });

      if (path === '/v1/checkout/sessions' && req.method === 'POST') {
        if (req.headers.authorization !== 'Bearer sk_test_checkout') return send(401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } });
        const form = Object.fromEntries(new URLSearchParams(raw)) as Record<string, string>;
        const priceId = form['line_items[0][price]'];
        const known = priceId ? fake.stripePrices.get(priceId) : undefined;
        if (priceId && !known) return send(400, { error: { type: 'invalid_request_error', message: `No such price: '${priceId}'`, param: 'line_items[0][price]' } });
        const amount = known ? known.amount : Number(form['line_items[0][price_data][unit_amount]']);
        const currency = known ? known.currency : String(form['line_items[0][price_data][currency]']);
        const id = rid('cs_test');
        const metadata = Object.fromEntries(Object.entries(form).filter(([k]) => k.startsWith('metadata[')).map(([k, v]) => [k.slice(9, -1), v]));
        fake.requests.push({ path, headers: req.headers, body: form, id });
        return send(200, {
          id, object: 'checkout.session', mode: 'payment', status: 'open', payment_status: 'unpaid', livemode: false,
          amount_subtotal: amount, amount_total: amount, currency, metadata, client_reference_id: form['client_reference_id'] ?? null,
          expires_at: Number(form['expires_at']), success_url: form['success_url'], url: `https://checkout.stripe.com/c/pay/${id}`,
        });
      }
      if (path === '/ls/v1/checkouts' && req.method === 'POST') {
        if (req.headers.authorization !== 'Bearer ls-key') return send(401, { errors: [{ status: '401', title: 'Unauthenticated' }] });
        const body = JSON.parse(raw) as { data: { relationships: { variant: { data: { id: string } } } } };
        const variant = body.data.relationships.variant.data.id;
        if (!fake.lsVariants.has(variant)) return send(404, { errors: [{ status: '404', title: 'Not Found', detail: `variant ${variant} not found` }] });
        const id = randomBytes(16).toString('hex');
        fake.requests.push({ path, headers: req.headers, body, id });
        return send(201, { jsonapi: { version: '1.0' }, data: { type: 'checkouts', id, attributes: { store_id: 1, variant_id: Number(variant), url: `https://tally.lemonsqueezy.com/checkout/custom/${id}?signature=x` } } });
      }
      if (path === '/creem/v1/checkouts' && req.method === 'POST') {
        if (req.headers['x-api-key'] !== 'creem-key') return send(403, { message: 'Forbidden' });
        const body = JSON.parse(raw) as { product_id: string; request_id: string; metadata: Record<string, string> };
        if (!fake.creemProducts.has(body.product_id)) return send(404, { message: `product ${body.product_id} not found` });
        const id = rid('ch');
        fake.requests.push({ path, headers: req.headers, body, id });
        return send(200, { id, object: 'checkout', mode: 'test', status: 'pending', product: body.product_id, request_id: body.request_id, metadata: body.metadata, checkout_url: `https://checkout.creem.io/${id}` });
      }
      const capture = /^\/paypal\/v2\/checkout\/orders\/([^/]+)\/capture$/.exec(path);
      if (capture && req.method === 'POST') {
        if (req.headers.authorization !== 'Bearer A21AA-checkout') return send(401, { name: 'AUTHENTICATION_FAILURE' });
        const orderId = decodeURIComponent(capture[1] ?? '');
        const order = fake.requests.find((r) => r.path === '/paypal/v2/checkout/orders' && r.id === orderId);
        if (!order) return send(404, { name: 'RESOURCE_NOT_FOUND', details: [{ issue: 'INVALID_RESOURCE_ID' }] });
        if (!fake.paypalApproved.has(orderId)) return send(422, { name: 'UNPROCESSABLE_ENTITY', details: [{ issue: 'ORDER_NOT_APPROVED' }] });
        const known = fake.paypalCaptures.get(orderId);
        const captureId = known?.captureId ?? randomBytes(8).toString('hex').toUpperCase();
        if (!known) fake.paypalCaptures.set(orderId, { captureId, headers: req.headers });
        const unit = (order.body as { purchase_units: Array<Record<string, unknown>> }).purchase_units[0] ?? {};
        return send(201, { id: orderId, status: 'COMPLETED', purchase_units: [{ reference_id: unit['reference_id'], payments: { captures: [{ id: captureId, status: 'COMPLETED', amount: unit['amount'], custom_id: unit['custom_id'] }] } }] });
      }
      if (path === '/paypal/v2/checkout/orders' && req.method === 'POST') {
        if (req.headers.authorization !== 'Bearer A21AA-checkout') return send(401, { name: 'AUTHENTICATION_FAILURE' });
        const body = JSON.parse(raw) as Record<string, unknown>;
        const id = randomBytes(8).toString('hex').toUpperCase();
        fake.requests.push({ path, headers: req.headers, body, id });
        return send(200, { id, status: 'PAYER_ACTION_REQUIRED', links: [{ href: `https://api-m.paypal.com/v2/checkout/orders/${id}`, rel: 'self', method: 'GET' }, { href: `https://www.paypal.com/checkoutnow?token=${id}`, rel: 'payer-action', method: 'GET' }] });
      }
      send(404, { error: 'no such route in the fake' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    ...fake,
    get requests() {
      return fake.requests;
    },
    get failWith() {
      return fake.failWith;
    },
    set failWith(v: number | null) {
      fake.failWith = v;
    },
    config: {
      stripe: { secretKey: 'sk_test_checkout', apiBase: base },
      lemonsqueezy: { apiKey: 'ls-key', storeId: '1', apiBase: `${base}/ls` },
      creem: { apiKey: 'creem-key', apiBase: `${base}/creem` },
      paypal: { clientId: 'pp-client', clientSecret: 'pp-secret', apiBase: `${base}/paypal` },
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
