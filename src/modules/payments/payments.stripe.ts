import {
  type Json,
  type NormalizedEvent,
  type PaymentAction,
  type PaymentFacts,
  type SubscriptionFacts,
  num,
  obj,
  optional,
  required,
  str,
  stringMap,
  unixDate,
  bool,
} from './payments.js';
import { type PaymentProvider, topLevelId, type Verification } from './payments.provider.js';
import { isReference } from './payments.reference.js';
import { header, hexEqual, hmacHex } from './payments.signing.js';

/**
 * Stripe as a plug-in. API versions differ in how they name one payment (since 2025-03-31,
 * invoices, payment intents and charges no longer name each other): normalisation reports every
 * id an event names as `refs`, and `invoice_payment.paid` as an `alias` action, so the service
 * keys a payment by any of them without knowing which version sent it.
 */
export const stripe: PaymentProvider<'stripe'> = {
  name: 'stripe',
  title: 'Stripe',
  signatureHeader: 'stripe-signature',
  settings: 'STRIPE_WEBHOOK_SECRET',
  verifier(config, clock) {
    const stripeConfig = config?.stripe;
    if (!config || !stripeConfig) return null;
    return (raw, headers) => verifyStripe(raw, header(headers, 'stripe-signature'), stripeConfig.webhookSecrets, config.toleranceSeconds, clock());
  },
  normalize: (payload) => normalizeStripe(payload),
  modeOf: (payload) => {
    const live = ((payload ?? {}) as Record<string, unknown>)['livemode'];
    return live === true ? 'live' : live === false ? 'test' : null;
  },
  eventIdOf: topLevelId,
  eventTypeOf: (payload) => ((payload ?? {}) as Record<string, unknown>)['type'],
};

/**
 * Stripe's scheme: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`, where each v1 is
 * HMAC-SHA256(secret, "<t>.<raw body>"). Valid when any v1 matches any configured secret (a
 * rotation signs with both) and t is within the tolerance of now, in either direction (replays of
 * an old captured delivery are refused). v0 (test-mode legacy) is ignored.
 */
export function verifyStripe(
  raw: Buffer,
  signatureHeader: string | null,
  secrets: readonly string[],
  toleranceSeconds: number,
  now: Date,
): Verification {
  if (!signatureHeader) return { ok: false, reason: 'missing Stripe-Signature header' };
  let timestamp: number | null = null;
  const signatures: string[] = [];
  for (const part of signatureHeader.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^\d+$/.test(value)) timestamp = Number(value);
    else if (key === 'v1') signatures.push(value);
  }
  if (timestamp === null) return { ok: false, reason: 'Stripe-Signature has no timestamp' };
  if (signatures.length === 0) return { ok: false, reason: 'Stripe-Signature has no v1 signature' };
  const signedPayload = Buffer.concat([Buffer.from(`${timestamp}.`, 'utf8'), raw]);
  // Compare against every secret and every v1 without stopping early on the first mismatch.
  let matched = false;
  for (const secret of secrets) {
    const expected = hmacHex(secret, signedPayload);
    for (const sig of signatures) if (hexEqual(expected, sig)) matched = true;
  }
  if (!matched) return { ok: false, reason: 'no v1 signature matches a configured secret' };
  if (Math.abs(now.getTime() / 1000 - timestamp) > toleranceSeconds) {
    return { ok: false, reason: `timestamp outside the tolerance of ${toleranceSeconds}s` };
  }
  return { ok: true, payload: parseJson(raw) };
}

function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** Stripe subscription statuses → billing's four. */
export function stripeSubscriptionStatus(status: string | null): SubscriptionFacts['status'] {
  switch (status) {
    case 'trialing':
      return 'trialing';
    case 'active':
      return 'active';
    case 'canceled':
    case 'incomplete_expired':
      return 'canceled';
    default:
      // past_due, unpaid, incomplete, paused: not paid for the current period.
      return 'past_due';
  }
}

const interval = (v: unknown): 'monthly' | 'yearly' | null => (v === 'month' ? 'monthly' : v === 'year' ? 'yearly' : null);

/** A Stripe Event (the documented envelope: id, type, data.object) → Tally's actions. */
export function normalizeStripe(payload: unknown): NormalizedEvent {
  const event = obj(payload);
  const eventId = required(str(event['id']), 'event id');
  const eventType = required(str(event['type']), 'event type');
  const o = obj(obj(event['data'])['object']);
  return { eventId, eventType, actions: stripeActions(eventType, o) };
}

function stripeActions(type: string, o: Json): PaymentAction[] {
  switch (type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded':
    case 'checkout.session.async_payment_failed':
      return checkoutActions(type, o);
    case 'payment_intent.payment_failed':
      return [{ kind: 'payment', payment: paymentIntentFacts(o, 'failed') }];
    case 'invoice.paid':
    case 'invoice.payment_succeeded':
    case 'invoice.payment_failed':
      return invoiceActions(type, o);
    case 'customer.subscription.created':
    case 'customer.subscription.updated':
    case 'customer.subscription.deleted':
      return [{ kind: 'subscription', subscription: subscriptionFacts(o, type === 'customer.subscription.deleted') }];
    case 'invoice_payment.paid':
      return invoicePaymentActions(o);
    case 'charge.refunded': {
      // Every id the charge's payment may be known by: its payment intent, the charge itself, and
      // (API versions before 2025-03-31) its invoice. refund.* events are not read: charge.refunded
      // carries the cumulative total, and reading both would count a refund twice.
      const providerPaymentId = required(str(o['payment_intent']) ?? str(o['id']), 'charge payment_intent');
      const refs = ids(str(o['id']), idOf(o['invoice']));
      return [{ kind: 'refund', providerPaymentId, amount: required(num(o['amount_refunded']), 'amount_refunded'), cumulative: true, refs }];
    }
    case 'charge.dispute.created': {
      const providerPaymentId = required(str(o['payment_intent']) ?? idOf(o['charge']), 'dispute charge');
      return [{ kind: 'dispute', providerPaymentId, amount: num(o['amount']) ?? 0, refs: ids(idOf(o['charge'])) }];
    }
    default:
      return [];
  }
}

/** An id, or the id of an expanded object. */
const idOf = (v: unknown): string | null => str(v) ?? str(obj(v)['id']);
const ids = (...xs: Array<string | null | undefined>): string[] => xs.filter((x): x is string => !!x);

/**
 * invoice_payment.paid (API 2025-03-31.basil and later): the only event that says which payment
 * intent (or charge) paid an invoice, now that invoices, charges and payment intents no longer
 * name each other. Records them as names of the invoice's payment, so a refund or dispute naming
 * the payment intent or the charge finds it.
 */
function invoicePaymentActions(ip: Json): PaymentAction[] {
  const invoice = required(idOf(ip['invoice']), 'invoice_payment invoice');
  const payment = obj(ip['payment']);
  const refs = ids(idOf(payment['payment_intent']), idOf(payment['charge']), idOf(ip['payment_intent']), idOf(ip['charge']));
  return refs.length > 0 ? [{ kind: 'alias', providerPaymentId: invoice, refs }] : [];
}

function checkoutActions(type: string, session: Json): PaymentAction[] {
  const metadata = stringMap(session['metadata']);
  // client_reference_id: a checkout reference Tally signed, or (unsigned, matching only) a user id.
  const clientRef = str(session['client_reference_id']);
  if (clientRef && isReference(clientRef)) metadata['tally_ref'] ??= clientRef;
  else if (clientRef && !metadata['user_id']) metadata['user_id'] = clientRef;
  const customer = str(session['customer']);
  const email = str(obj(session['customer_details'])['email']) ?? str(session['customer_email']);
  if (session['mode'] !== 'payment') {
    // Subscription (or setup) checkouts: the money comes with invoice.paid; link the customer now
    // so that invoice finds its user.
    return customer ? [{ kind: 'customer', providerCustomerId: customer, email, metadata }] : [];
  }
  const paid = session['payment_status'] === 'paid' || session['payment_status'] === 'no_payment_required';
  const status = type === 'checkout.session.async_payment_failed' ? 'failed' : paid ? 'succeeded' : 'processing';
  const payment: PaymentFacts = {
    providerPaymentId: required(str(session['payment_intent']) ?? str(session['id']), 'checkout session id'),
    providerCustomerId: customer,
    status,
    amount: num(session['amount_total']) ?? 0,
    currency: (str(session['currency']) ?? 'usd').toLowerCase(),
    email,
    metadata,
    // Events do not carry line items: a checkout names its price in metadata to use a package.
    // The buyer may be able to set that (payment links): it is a hint, and the package's price
    // must equal the amount paid.
    priceIds: [metadata['price_id'], metadata['product_id']].filter((x): x is string => !!x),
    receiptUrl: null,
    description: null,
    providerSubscriptionId: null,
    // The session, and the invoice it created (invoice_creation), are names of this payment too.
    refs: ids(str(session['id']), idOf(session['invoice'])),
    tax: num(obj(session['total_details'])['amount_tax']) ?? 0,
    // The session: a checkout Tally signed must be paid through the session Tally created.
    ...optional('checkoutId', str(session['id'])),
  };
  return [{ kind: 'payment', payment }];
}

function paymentIntentFacts(pi: Json, status: PaymentFacts['status']): PaymentFacts {
  return {
    providerPaymentId: required(str(pi['id']), 'payment intent id'),
    providerCustomerId: str(pi['customer']),
    status,
    amount: num(pi['amount']) ?? 0,
    currency: (str(pi['currency']) ?? 'usd').toLowerCase(),
    email: str(pi['receipt_email']),
    metadata: stringMap(pi['metadata']),
    priceIds: [],
    receiptUrl: null,
    description: str(pi['description']),
    providerSubscriptionId: null,
  };
}

/** The subscription an invoice belongs to (moved under `parent` in newer API versions). */
function invoiceSubscription(inv: Json): { id: string | null; metadata: Record<string, string> } {
  const details = obj(obj(inv['parent'])['subscription_details']);
  const legacy = obj(inv['subscription_details']);
  return {
    id: str(inv['subscription']) ?? str(details['subscription']),
    metadata: { ...stringMap(legacy['metadata']), ...stringMap(details['metadata']) },
  };
}

function invoiceActions(type: string, inv: Json): PaymentAction[] {
  const paid = type !== 'invoice.payment_failed';
  const currency = (str(inv['currency']) ?? 'usd').toLowerCase();
  const sub = invoiceSubscription(inv);
  const firstLine = obj(((obj(inv['lines'])['data'] as unknown[]) ?? [])[0]);
  const price = obj(firstLine['price']);
  const priceId = str(price['id']) ?? str(obj(obj(firstLine['pricing'])['price_details'])['price']);
  const productId = str(price['product']);
  const period = obj(firstLine['period']);
  const metadata = { ...sub.metadata, ...stringMap(inv['metadata']) };
  const customer = str(inv['customer']);
  const email = str(inv['customer_email']);
  // Before 2025-03-31 an invoice names its payment intent and charge; since then it names neither
  // (invoice_payment.paid does), unless its `payments` list was included.
  const paidBy = ((obj(inv['payments'])['data'] as unknown[]) ?? []).flatMap((x) => {
    const p = obj(obj(x)['payment']);
    return ids(idOf(p['payment_intent']), idOf(p['charge']));
  });
  const providerPaymentId = idOf(inv['payment_intent']) ?? idOf(inv['charge']) ?? str(inv['id']);
  const refs = ids(str(inv['id']), idOf(inv['charge']), ...paidBy);
  const taxes = (inv['total_taxes'] as unknown[] | undefined) ?? (inv['total_tax_amounts'] as unknown[] | undefined) ?? [];
  const tax = num(inv['tax']) ?? taxes.reduce<number>((sum, t) => sum + (num(obj(t)['amount']) ?? 0), 0);
  const actions: PaymentAction[] = [
    {
      kind: 'invoice',
      invoice: {
        providerInvoiceId: required(str(inv['id']), 'invoice id'),
        providerSubscriptionId: sub.id,
        providerCustomerId: customer,
        providerPaymentId: paid ? providerPaymentId : null,
        email,
        status: paid ? 'paid' : 'open',
        amountDue: num(inv['amount_due']) ?? 0,
        amountPaid: num(inv['amount_paid']) ?? 0,
        currency,
        invoicePdfUrl: str(inv['invoice_pdf']),
        hostedInvoiceUrl: str(inv['hosted_invoice_url']),
        periodStart: unixDate(period['start']) ?? unixDate(inv['period_start']),
        periodEnd: unixDate(period['end']) ?? unixDate(inv['period_end']),
        paidAt: paid ? (unixDate(obj(inv['status_transitions'])['paid_at']) ?? null) : null,
      },
    },
  ];
  const amountPaid = num(inv['amount_paid']) ?? 0;
  if (paid && amountPaid > 0 && providerPaymentId) {
    actions.push({
      kind: 'payment',
      payment: {
        providerPaymentId,
        providerCustomerId: customer,
        status: 'succeeded',
        amount: amountPaid,
        currency,
        email,
        metadata,
        priceIds: [priceId, productId].filter((x): x is string => !!x),
        receiptUrl: str(inv['hosted_invoice_url']),
        description: `invoice ${String(inv['id'])}`,
        providerSubscriptionId: sub.id,
        refs,
        tax,
      },
    });
  }
  if (sub.id) {
    actions.push({
      kind: 'subscription',
      subscription: {
        providerSubscriptionId: sub.id,
        providerCustomerId: customer,
        providerPriceId: priceId,
        planId: metadata['plan_id'] ?? null,
        status: paid ? 'active' : 'past_due',
        interval: interval(obj(price['recurring'])['interval']),
        currentPeriodStart: unixDate(period['start']),
        currentPeriodEnd: unixDate(period['end']),
        cancelAtPeriodEnd: false,
        canceledAt: null,
        trialEnd: null,
        periodPaid: paid,
        email,
        metadata,
      },
    });
  }
  return actions;
}

function subscriptionFacts(s: Json, deleted: boolean): SubscriptionFacts {
  const item = obj(((obj(s['items'])['data'] as unknown[]) ?? [])[0]);
  const price = obj(item['price']);
  const metadata = stringMap(s['metadata']);
  return {
    providerSubscriptionId: required(str(s['id']), 'subscription id'),
    providerCustomerId: str(s['customer']),
    providerPriceId: str(price['id']),
    planId: metadata['plan_id'] ?? null,
    status: deleted ? 'canceled' : stripeSubscriptionStatus(str(s['status'])),
    interval: interval(obj(price['recurring'])['interval']),
    // Newer API versions keep the period on the item.
    currentPeriodStart: unixDate(s['current_period_start']) ?? unixDate(item['current_period_start']),
    currentPeriodEnd: unixDate(s['current_period_end']) ?? unixDate(item['current_period_end']),
    cancelAtPeriodEnd: bool(s['cancel_at_period_end']),
    canceledAt: unixDate(s['canceled_at']),
    trialEnd: unixDate(s['trial_end']),
    periodPaid: false,
    email: null,
    metadata,
  };
}
