import { createHash } from 'node:crypto';
import {
  type Json,
  type NormalizedEvent,
  type PaymentAction,
  type SubscriptionFacts,
  isoDate,
  obj,
  optional,
  required,
  str,
  stringMap,
  toMinorUnits,
} from './payments.js';
import { type Headers, type PaymentProvider, topLevelId, type Verification, VerificationUnavailable } from './payments.provider.js';
import { isCompactToken, parseCompactToken } from './checkout/checkout.signing.js';
import { isReference } from './payments.reference.js';
import { header } from './payments.signing.js';

/**
 * PayPal as a plug-in. Its verifier is an HTTP call to PayPal (an OAuth2 token, cached, and a
 * cache of PayPal's answers per delivery): built once per server, so both caches live as long.
 */
export const paypal: PaymentProvider<'paypal'> = {
  name: 'paypal',
  title: 'PayPal',
  signatureHeader: 'paypal-transmission-sig',
  settings: 'PAYPAL_WEBHOOK_ID, PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET',
  verifier(config, clock) {
    const settings = config?.paypal;
    if (!settings) return null;
    const verifier = new PayPalVerifier(settings, clock);
    return (raw, headers) => verifier.verify(raw, headers);
  },
  normalize: (payload) => normalizePayPal(payload),
  eventIdOf: topLevelId,
  eventTypeOf: (payload) => ((payload ?? {}) as Record<string, unknown>)['event_type'],
};

export interface PayPalSettings {
  webhookId: string;
  clientId: string;
  clientSecret: string;
  /** https://api-m.paypal.com, the sandbox, or a test's local fake. */
  apiBase: string;
}

/** PayPal is unreachable or answered oddly: a 503 (PayPal retries), never a 400. */
export class PayPalUnavailable extends VerificationUnavailable {
  override name = 'PayPalUnavailable';
}

/**
 * PayPal's OAuth2 client-credentials token (`POST /v1/oauth2/token`), cached until a minute before
 * it expires; `reset` after a 401 (expired early or revoked). Shared by the webhook verifier and
 * the checkout provider (checkout/paypal.ts), each with its own HTTP call and error.
 */
export class PayPalToken {
  private token: { value: string; expiresAt: number } | null = null;

  constructor(
    private readonly settings: { clientId: string; clientSecret: string },
    private readonly now: () => Date,
    /** POSTs to a path of PayPal's API. */
    private readonly fetchJson: (path: string, init: RequestInit) => Promise<{ status: number; body: unknown }>,
    /** The error for an answer without a token (its status). */
    private readonly failed: (status: number) => Error,
  ) {}

  async get(): Promise<string> {
    if (this.token && this.token.expiresAt > this.now().getTime() + 60_000) return this.token.value;
    const basic = Buffer.from(`${this.settings.clientId}:${this.settings.clientSecret}`).toString('base64');
    const res = await this.fetchJson('/v1/oauth2/token', {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: 'grant_type=client_credentials',
    });
    const token = str(obj(res.body)['access_token']);
    if (res.status !== 200 || !token) throw this.failed(res.status);
    const ttl = Number(obj(res.body)['expires_in'] ?? 300);
    this.token = { value: token, expiresAt: this.now().getTime() + ttl * 1000 };
    return token;
  }

  reset(): void {
    this.token = null;
  }
}

/**
 * PayPal's scheme: the delivery's transmission headers plus the event go to PayPal's
 * `POST /v1/notifications/verify-webhook-signature` (OAuth2 client-credentials token), which
 * answers `verification_status: SUCCESS | FAILURE`. Called before any transaction opens.
 */
export class PayPalVerifier {
  private readonly token: PayPalToken;
  /**
   * PayPal's answers, per delivery (every transmission header PayPal checks, and the body's
   * SHA-256): a repeat — PayPal's own retry, or a stranger replaying or re-posting one forged
   * delivery — is answered from here, not sent to PayPal again. Bounded: oldest entries go first.
   */
  private readonly answers = new Map<string, { ok: boolean; reason: string; expiresAt: number }>();

  constructor(
    private readonly settings: PayPalSettings,
    private readonly now: () => Date,
  ) {
    this.token = new PayPalToken(settings, now, (path, init) => this.fetchJson(path, init), (status) => new PayPalUnavailable(`oauth2/token answered ${status}`));
  }

  async verify(raw: Buffer, headers: Headers): Promise<Verification> {
    const names = ['paypal-auth-algo', 'paypal-cert-url', 'paypal-transmission-id', 'paypal-transmission-sig', 'paypal-transmission-time'];
    const values = names.map((n) => header(headers, n));
    const missing = names.filter((_n, i) => values[i] === null);
    if (missing.length > 0) return { ok: false, reason: `missing ${missing.join(', ')}` };
    let event: unknown;
    try {
      event = JSON.parse(raw.toString('utf8'));
    } catch {
      return { ok: false, reason: 'body is not JSON' };
    }
    const key = deliveryKey(values as string[], raw);
    const known = this.answers.get(key);
    if (known && known.expiresAt > this.now().getTime()) return known.ok ? { ok: true, payload: event } : { ok: false, reason: known.reason };
    const body = {
      auth_algo: values[0],
      cert_url: values[1],
      transmission_id: values[2],
      transmission_sig: values[3],
      transmission_time: values[4],
      webhook_id: this.settings.webhookId,
      webhook_event: event,
    };
    let res = await this.post('/v1/notifications/verify-webhook-signature', body, await this.accessToken());
    if (res.status === 401) {
      this.token.reset(); // expired early or revoked: one fresh token, once
      res = await this.post('/v1/notifications/verify-webhook-signature', body, await this.accessToken());
    }
    if (res.status !== 200) throw new PayPalUnavailable(`verify-webhook-signature answered ${res.status}`);
    const status = obj(res.body)['verification_status'];
    const reason = `PayPal verification_status ${status === 'FAILURE' ? 'FAILURE' : 'not SUCCESS'}`;
    this.remember(key, status === 'SUCCESS', reason);
    return status === 'SUCCESS' ? { ok: true, payload: event } : { ok: false, reason };
  }

  private remember(key: string, ok: boolean, reason: string): void {
    this.answers.delete(key);
    this.answers.set(key, { ok, reason, expiresAt: this.now().getTime() + ANSWER_TTL_MS });
    while (this.answers.size > ANSWER_ENTRIES) {
      const oldest = this.answers.keys().next().value;
      if (oldest === undefined) break;
      this.answers.delete(oldest);
    }
  }

  private accessToken(): Promise<string> {
    return this.token.get();
  }

  private post(path: string, body: unknown, token: string) {
    return this.fetchJson(path, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
  }

  private async fetchJson(path: string, init: RequestInit): Promise<{ status: number; body: unknown }> {
    let res: Response;
    try {
      res = await fetch(`${this.settings.apiBase}${path}`, { ...init, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      throw new PayPalUnavailable(`PayPal unreachable: ${(err as Error).message}`);
    }
    const text = await res.text();
    let body: unknown = null;
    try {
      body = text ? (JSON.parse(text) as unknown) : null;
    } catch {
      body = null;
    }
    return { status: res.status, body };
  }
}

/** How long, and how many of, PayPal's verification answers are kept (docs/payments.md). */
const ANSWER_TTL_MS = 24 * 3600 * 1000;
const ANSWER_ENTRIES = 10_000;

/** One delivery: the transmission headers PayPal verifies, and the body's digest (not the body). */
function deliveryKey(headers: string[], raw: Buffer): string {
  return createHash('sha256').update(headers.join('\n')).update('\n').update(createHash('sha256').update(raw).digest()).digest('hex');
}

/** `custom_id` carries either a JSON object of metadata or just the user id. */
export function paypalCustom(v: unknown): Record<string, string> {
  const s = str(v);
  if (!s) return {};
  if (s.startsWith('{')) {
    try {
      return stringMap(JSON.parse(s));
    } catch {
      return {};
    }
  }
  // A bare checkout reference (it fits custom_id's 127 characters; its JSON wrapping may not).
  if (isReference(s)) return { tally_ref: s };
  // A checkout Tally created and signed (the compact form: checkout id, expiry, MAC).
  if (isCompactToken(s)) return parseCompactToken(s) ?? { tally_checkout: '', tally_sig: '' };
  return { user_id: s };
}

export function paypalSubscriptionStatus(status: string | null): SubscriptionFacts['status'] {
  switch (status) {
    case 'ACTIVE':
      return 'active';
    case 'CANCELLED':
    case 'EXPIRED':
      return 'canceled';
    default:
      // SUSPENDED (payments failing), APPROVAL_PENDING, APPROVED
      return 'past_due';
  }
}

const money = (m: unknown): { amount: number; currency: string } => {
  const o = obj(m);
  const currency = (str(o['currency_code']) ?? str(o['currency']) ?? 'usd').toLowerCase();
  return { amount: toMinorUnits(o['value'] ?? o['total'], currency), currency };
};

/** A refunded amount, which PayPal's v1 refunds may write as a negative total ("-4.00"). */
const refundedMinor = (m: unknown): number => {
  const o = obj(m);
  const unsigned = (v: unknown) => (typeof v === 'string' && v.startsWith('-') ? v.slice(1) : v);
  return money({ ...o, value: unsigned(o['value']), total: unsigned(o['total']) }).amount;
};

/** The capture a refund belongs to: its `up` link (…/v2/payments/captures/{id}). */
function upCapture(r: Json): string | null {
  const links = r['links'];
  // A provider's JSON is input: `links` that is not a list names no capture (400), never a TypeError (500).
  for (const l of Array.isArray(links) ? links : []) {
    const link = obj(l);
    const m = /\/captures\/([^/?#]+)/.exec(String(link['href'] ?? ''));
    if (link['rel'] === 'up' && m) return m[1] ?? null;
  }
  return null;
}

/** PayPal's envelope: `{ id: "WH-…", event_type, resource_type, resource }`. */
export function normalizePayPal(payload: unknown): NormalizedEvent {
  const e = obj(payload);
  const eventId = required(str(e['id']), 'id');
  const eventType = required(str(e['event_type']), 'event_type');
  const r = obj(e['resource']);
  return { eventId, eventType, actions: paypalActions(eventType, r) };
}

function paypalActions(type: string, r: Json): PaymentAction[] {
  switch (type) {
    case 'PAYMENT.CAPTURE.COMPLETED':
    case 'PAYMENT.CAPTURE.PENDING':
    case 'PAYMENT.CAPTURE.DENIED':
    case 'PAYMENT.CAPTURE.DECLINED': {
      const { amount, currency } = money(r['amount']);
      const metadata = paypalCustom(r['custom_id']);
      return [
        {
          kind: 'payment',
          payment: {
            providerPaymentId: required(str(r['id']), 'capture id'),
            providerCustomerId: null,
            status: type === 'PAYMENT.CAPTURE.COMPLETED' ? 'succeeded' : type === 'PAYMENT.CAPTURE.PENDING' ? 'processing' : 'failed',
            amount,
            currency,
            email: metadata['email'] ?? null,
            metadata,
            priceIds: [metadata['price_id'], str(r['invoice_id'])].filter((x): x is string => !!x),
            receiptUrl: null,
            description: null,
            providerSubscriptionId: null,
            // The order: a checkout Tally signed must be paid through the order Tally created.
            ...optional('checkoutId', str(obj(obj(r['supplementary_data'])['related_ids'])['order_id'])),
          },
        },
      ];
    }
    case 'PAYMENT.CAPTURE.REFUNDED': {
      const total = obj(obj(r['seller_payable_breakdown'])['total_refunded_amount']);
      const captureId = required(upCapture(r), 'refund up link');
      if (total['value'] !== undefined) {
        return [{ kind: 'refund', providerPaymentId: captureId, amount: money(total).amount, cumulative: true }];
      }
      return [{ kind: 'refund', providerPaymentId: captureId, amount: money(r['amount']).amount, cumulative: false }];
    }
    case 'PAYMENT.CAPTURE.REVERSED':
      return [{ kind: 'dispute', providerPaymentId: required(str(r['id']), 'capture id'), amount: money(r['amount']).amount }];
    case 'CUSTOMER.DISPUTE.CREATED': {
      const tx = obj(((r['disputed_transactions'] as unknown[]) ?? [])[0]);
      const captureId = required(str(tx['seller_transaction_id']), 'disputed_transactions[0].seller_transaction_id');
      return [{ kind: 'dispute', providerPaymentId: captureId, amount: r['dispute_amount'] ? money(r['dispute_amount']).amount : 0 }];
    }
    // A subscription sale refunded (by the merchant) or reversed (a chargeback): the resource is a
    // v1 refund naming its sale. PayPal writes the refunded amount as a negative total at times.
    case 'PAYMENT.SALE.REFUNDED': {
      const saleId = required(str(r['sale_id']), 'sale_id');
      const total = obj(r['total_refunded_amount']);
      if (total['value'] !== undefined) {
        return [{ kind: 'refund', providerPaymentId: saleId, amount: refundedMinor(total), cumulative: true }];
      }
      return [{ kind: 'refund', providerPaymentId: saleId, amount: refundedMinor(r['amount']), cumulative: false }];
    }
    case 'PAYMENT.SALE.REVERSED':
      return [{ kind: 'dispute', providerPaymentId: required(str(r['sale_id']) ?? str(r['id']), 'sale_id'), amount: refundedMinor(r['amount']) }];
    case 'PAYMENT.SALE.COMPLETED': {
      // A subscription's recurring payment.
      const subscriptionId = str(r['billing_agreement_id']);
      const { amount, currency } = money(r['amount']);
      const metadata = paypalCustom(r['custom'] ?? r['custom_id']);
      const actions: PaymentAction[] = [
        {
          kind: 'payment',
          payment: {
            providerPaymentId: required(str(r['id']), 'sale id'),
            providerCustomerId: null,
            status: 'succeeded',
            amount,
            currency,
            email: null,
            metadata,
            priceIds: [],
            receiptUrl: null,
            description: subscriptionId ? `subscription ${subscriptionId}` : null,
            providerSubscriptionId: subscriptionId,
          },
        },
      ];
      if (subscriptionId) actions.push({ kind: 'subscription', subscription: saleSubscription(subscriptionId, metadata) });
      return actions;
    }
    default:
      if (type.startsWith('BILLING.SUBSCRIPTION.')) return [{ kind: 'subscription', subscription: subscriptionFacts(type, r) }];
      return [];
  }
}

function saleSubscription(id: string, metadata: Record<string, string>): SubscriptionFacts {
  return {
    providerSubscriptionId: id,
    providerCustomerId: null,
    providerPriceId: null,
    planId: metadata['plan_id'] ?? null,
    status: 'active',
    interval: null,
    currentPeriodStart: null,
    currentPeriodEnd: null,
    cancelAtPeriodEnd: false,
    canceledAt: null,
    trialEnd: null,
    periodPaid: true,
    email: null,
    metadata,
  };
}

function subscriptionFacts(type: string, s: Json): SubscriptionFacts {
  const metadata = paypalCustom(s['custom_id']);
  const subscriber = obj(s['subscriber']);
  const billing = obj(s['billing_info']);
  const status = type === 'BILLING.SUBSCRIPTION.PAYMENT.FAILED' ? 'past_due' : paypalSubscriptionStatus(str(s['status']));
  return {
    providerSubscriptionId: required(str(s['id']), 'subscription id'),
    providerCustomerId: str(subscriber['payer_id']),
    providerPriceId: str(s['plan_id']),
    planId: metadata['plan_id'] ?? null,
    status,
    interval: null,
    currentPeriodStart: isoDate(obj(billing['last_payment'])['time']) ?? isoDate(s['start_time']),
    currentPeriodEnd: isoDate(billing['next_billing_time']),
    cancelAtPeriodEnd: false,
    canceledAt: status === 'canceled' ? isoDate(s['status_update_time']) : null,
    trialEnd: null,
    periodPaid: false,
    email: str(subscriber['email_address']),
    metadata,
  };
}
