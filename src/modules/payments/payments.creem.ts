import {
  type Json,
  type NormalizedEvent,
  type PaymentAction,
  type SubscriptionFacts,
  isoDate,
  num,
  obj,
  optional,
  required,
  str,
  stringMap,
} from './payments.js';
import { type PaymentProvider, topLevelId, type Verification } from './payments.provider.js';
import { header, verifyBodyHmac } from './payments.signing.js';

/** Creem as a plug-in. */
export const creem: PaymentProvider<'creem'> = {
  name: 'creem',
  title: 'Creem',
  signatureHeader: 'creem-signature',
  settings: 'CREEM_WEBHOOK_SECRET',
  verifier(config) {
    const creemConfig = config?.creem;
    if (!creemConfig) return null;
    return (raw, headers) => verifyCreem(raw, header(headers, 'creem-signature'), creemConfig.webhookSecret);
  },
  normalize: (payload) => normalizeCreem(payload),
  eventIdOf: topLevelId,
  eventTypeOf: (payload) => ((payload ?? {}) as Record<string, unknown>)['eventType'],
};

/** Creem: `creem-signature` = hex HMAC-SHA256 of the raw body with the webhook secret. */
export function verifyCreem(raw: Buffer, signature: string | null, secret: string): Verification {
  return verifyBodyHmac(raw, signature, secret, 'creem-signature');
}

export function creemSubscriptionStatus(status: string | null): { status: SubscriptionFacts['status']; cancelAtPeriodEnd: boolean } {
  switch (status) {
    case 'active':
      return { status: 'active', cancelAtPeriodEnd: false };
    case 'trialing':
      return { status: 'trialing', cancelAtPeriodEnd: false };
    case 'scheduled_cancel':
      return { status: 'active', cancelAtPeriodEnd: true };
    case 'canceled':
    case 'expired':
      return { status: 'canceled', cancelAtPeriodEnd: false };
    default:
      // past_due, unpaid, paused, incomplete
      return { status: 'past_due', cancelAtPeriodEnd: false };
  }
}

const interval = (p: unknown): 'monthly' | 'yearly' | null => (p === 'every-month' ? 'monthly' : p === 'every-year' ? 'yearly' : null);
/** Creem nests objects or sends their ids, depending on expansion. */
const idOf = (v: unknown): string | null => str(v) ?? str(obj(v)['id']);

/** Creem's envelope is `{ id, eventType, created_at, object }` (not Stripe's `type`/`data`). */
export function normalizeCreem(payload: unknown): NormalizedEvent {
  const e = obj(payload);
  const eventId = required(str(e['id']), 'id');
  const eventType = required(str(e['eventType']), 'eventType');
  const o = obj(e['object']);
  return { eventId, eventType, actions: creemActions(eventType, o) };
}

function creemActions(type: string, o: Json): PaymentAction[] {
  if (type === 'checkout.completed') return checkoutActions(o);
  if (type === 'refund.created') {
    return [{ kind: 'refund', providerPaymentId: required(orderIdOf(o), 'refund order'), amount: required(num(o['refund_amount']), 'refund_amount'), cumulative: false }];
  }
  if (type === 'dispute.created') {
    return [{ kind: 'dispute', providerPaymentId: required(orderIdOf(o), 'dispute order'), amount: num(o['amount']) ?? 0 }];
  }
  if (type.startsWith('subscription.')) return subscriptionActions(type, o);
  return [];
}

/** The order a refund or dispute is about: on the object, its transaction, or its checkout. */
function orderIdOf(o: Json): string | null {
  return idOf(o['order']) ?? str(obj(o['transaction'])['order']) ?? idOf(obj(o['checkout'])['order']);
}

function checkoutActions(c: Json): PaymentAction[] {
  const order = obj(c['order']);
  const customer = obj(c['customer']);
  const product = obj(c['product']);
  const subscription = obj(c['subscription']);
  const metadata = { ...stringMap(subscription['metadata']), ...stringMap(c['metadata']) };
  const customerId = idOf(c['customer']) ?? str(order['customer']);
  const subscriptionId = str(subscription['id']);
  const currency = (str(order['currency']) ?? str(product['currency']) ?? 'usd').toLowerCase();
  return [
    {
      kind: 'payment',
      payment: {
        providerPaymentId: required(str(order['id']), 'order.id'),
        providerCustomerId: customerId,
        // The order's own status decides when it has one (only `paid` is paid); a completed checkout only without it.
        status: (order['status'] === undefined ? c['status'] === 'completed' : order['status'] === 'paid') ? 'succeeded' : 'processing',
        amount: required(num(order['amount']), 'order.amount'),
        currency,
        email: str(customer['email']),
        metadata,
        priceIds: [str(product['id']) ?? str(order['product'])].filter((x): x is string => !!x),
        receiptUrl: null,
        description: str(product['name']),
        // A recurring checkout's first period: billing grants the plan; a package still buys credits.
        providerSubscriptionId: subscriptionId,
        tax: num(order['tax_amount']) ?? 0,
        // The checkout: one Tally signed must be paid through the checkout Tally created.
        ...optional('checkoutId', str(c['id'])),
      },
    },
  ];
}

function subscriptionActions(type: string, s: Json): PaymentAction[] {
  const metadata = stringMap(s['metadata']);
  const product = obj(s['product']);
  const customer = obj(s['customer']);
  const customerId = idOf(s['customer']);
  const subscriptionId = required(str(s['id']), 'subscription id');
  const mapped = creemSubscriptionStatus(str(s['status']));
  const paid = type === 'subscription.paid';
  const actions: PaymentAction[] = [];
  const tx = obj(s['last_transaction']);
  const txAmount = num(tx['amount']);
  if (paid && txAmount !== null && txAmount > 0) {
    // The renewal's money: keyed on its order, so the first period (already seen through
    // checkout.completed with the same order) is not counted twice.
    actions.push({
      kind: 'payment',
      payment: {
        providerPaymentId: required(str(tx['order']) ?? str(tx['id']) ?? str(s['last_transaction_id']), 'last_transaction'),
        providerCustomerId: customerId,
        status: 'succeeded',
        amount: txAmount,
        currency: (str(tx['currency']) ?? 'usd').toLowerCase(),
        email: str(customer['email']),
        metadata,
        priceIds: [idOf(s['product'])].filter((x): x is string => !!x),
        receiptUrl: null,
        description: `subscription ${subscriptionId}`,
        providerSubscriptionId: subscriptionId,
      },
    });
  }
  actions.push({
    kind: 'subscription',
    subscription: {
      providerSubscriptionId: subscriptionId,
      providerCustomerId: customerId,
      providerPriceId: idOf(s['product']),
      planId: metadata['plan_id'] ?? null,
      status: type === 'subscription.past_due' ? 'past_due' : paid ? 'active' : mapped.status,
      cancelAtPeriodEnd: mapped.cancelAtPeriodEnd,
      interval: interval(product['billing_period']),
      currentPeriodStart: isoDate(s['current_period_start_date']),
      currentPeriodEnd: isoDate(s['current_period_end_date']),
      canceledAt: isoDate(s['canceled_at']),
      trialEnd: null,
      periodPaid: paid,
      email: str(customer['email']),
      metadata,
    },
  });
  return actions;
}
