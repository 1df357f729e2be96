import {
  type Json,
  type NormalizedEvent,
  type PaymentAction,
  type PaymentStatus,
  type SubscriptionFacts,
  isoDate,
  MalformedEvent,
  num,
  obj,
  required,
  str,
  stringMap,
} from './payments.js';
import type { PaymentProvider, Verification } from './payments.provider.js';
import { header, verifyBodyHmac } from './payments.signing.js';

/** Lemon Squeezy as a plug-in. Its deliveries carry no event id: one is built (below). */
export const lemonsqueezy: PaymentProvider<'lemonsqueezy'> = {
  name: 'lemonsqueezy',
  title: 'Lemon Squeezy',
  signatureHeader: 'x-signature',
  settings: 'LEMONSQUEEZY_WEBHOOK_SECRET',
  verifier(config) {
    const ls = config?.lemonsqueezy;
    if (!ls) return null;
    return (raw, headers) => verifyLemonSqueezy(raw, header(headers, 'x-signature'), ls.webhookSecret);
  },
  normalize: (payload) => normalizeLemonSqueezy(payload),
  modeOf: (payload) => {
    const meta = ((payload ?? {}) as Record<string, unknown>)['meta'];
    const test = meta && typeof meta === 'object' ? (meta as Record<string, unknown>)['test_mode'] : undefined;
    return test === true ? 'test' : test === false ? 'live' : null;
  },
  eventIdOf(payload) {
    try {
      return looseEventId((payload ?? {}) as Record<string, unknown>);
    } catch {
      return '';
    }
  },
  eventTypeOf(payload) {
    const meta = ((payload ?? {}) as Record<string, unknown>)['meta'] ?? {};
    return (meta as Record<string, unknown>)['event_name'];
  },
};

/** Lemon Squeezy: `X-Signature` = hex HMAC-SHA256 of the raw body with the webhook's signing secret. */
export function verifyLemonSqueezy(raw: Buffer, signature: string | null, secret: string): Verification {
  return verifyBodyHmac(raw, signature, secret, 'X-Signature');
}

/**
 * Lemon Squeezy deliveries carry no event id. A retry resends the same body, so the id is built
 * from what identifies the delivery: event name, resource type and id, and the resource's
 * updated_at (a later change to the same order is a new event).
 */
export function lemonSqueezyEventId(payload: Json): string {
  const meta = obj(payload['meta']);
  const data = obj(payload['data']);
  const attrs = obj(data['attributes']);
  return [
    required(str(meta['event_name']), 'meta.event_name'),
    required(str(data['type']), 'data.type'),
    required(str(data['id']), 'data.id'),
    str(attrs['updated_at']) ?? str(attrs['created_at']) ?? '',
  ].join(':');
}

/**
 * The id of a delivery `normalizeLemonSqueezy` refused, to log its failure: looser than
 * `lemonSqueezyEventId` (an empty part, or an `updated_at` of any type, still makes an id), as it
 * always was — it only keys the failed row, whose retry fails the same way.
 */
function looseEventId(p: Record<string, unknown>): string {
  const meta = (p['meta'] ?? {}) as Record<string, unknown>;
  const data = (p['data'] ?? {}) as Record<string, unknown>;
  const attrs = (data['attributes'] ?? {}) as Record<string, unknown>;
  const parts = [meta['event_name'], data['type'], data['id']];
  if (parts.some((x) => typeof x !== 'string' && typeof x !== 'number')) throw new MalformedEvent('no id');
  return [...parts.map(String), String(attrs['updated_at'] ?? attrs['created_at'] ?? '')].join(':');
}

/** Order ids and subscription-invoice ids are separate sequences: prefixed so they never collide. */
export const lsOrderPaymentId = (id: string) => `order_${id}`;
export const lsInvoicePaymentId = (id: string) => `subinv_${id}`;

export function lsSubscriptionStatus(status: string | null): { status: SubscriptionFacts['status']; cancelAtPeriodEnd: boolean } {
  switch (status) {
    case 'on_trial':
      return { status: 'trialing', cancelAtPeriodEnd: false };
    case 'active':
      return { status: 'active', cancelAtPeriodEnd: false };
    // Cancelled in Lemon Squeezy = still paid until ends_at (a grace period), then `expired`.
    case 'cancelled':
      return { status: 'active', cancelAtPeriodEnd: true };
    case 'expired':
      return { status: 'canceled', cancelAtPeriodEnd: false };
    default:
      // past_due, unpaid, paused
      return { status: 'past_due', cancelAtPeriodEnd: false };
  }
}

export function normalizeLemonSqueezy(payload: unknown): NormalizedEvent {
  const p = obj(payload);
  const eventId = lemonSqueezyEventId(p);
  const meta = obj(p['meta']);
  const eventType = String(meta['event_name']);
  const custom = stringMap(meta['custom_data']);
  const data = obj(p['data']);
  const id = required(str(data['id']), 'data.id');
  const a = obj(data['attributes']);
  const currency = (str(a['currency']) ?? 'usd').toLowerCase();
  const email = str(a['user_email']);
  const customer = str(a['customer_id']);
  const actions: PaymentAction[] = [];
  switch (eventType) {
    case 'order_created': {
      const item = obj(a['first_order_item']);
      // Only `paid` is paid: a status Tally does not know (refunded, partial_refund, fraudulent …)
      // buys nothing and waits for a later event.
      const status: PaymentStatus = a['status'] === 'paid' ? 'succeeded' : a['status'] === 'failed' ? 'failed' : 'processing';
      actions.push({
        kind: 'payment',
        payment: {
          providerPaymentId: lsOrderPaymentId(id),
          providerCustomerId: customer,
          status,
          amount: required(num(a['total']), 'total'),
          currency,
          email,
          metadata: custom,
          priceIds: [str(item['variant_id']), str(item['price_id']), str(item['product_id'])].filter((x): x is string => !!x),
          receiptUrl: str(obj(a['urls'])['receipt']),
          description: str(item['product_name']),
          // An order that starts a subscription is paid again through subscription invoices.
          providerSubscriptionId: null,
          tax: num(a['tax']) ?? 0,
        },
      });
      break;
    }
    case 'order_refunded':
      actions.push({ kind: 'refund', providerPaymentId: lsOrderPaymentId(id), ...refundedAmount(a), cumulative: true });
      break;
    case 'subscription_payment_success':
    case 'subscription_payment_recovered':
    case 'subscription_payment_failed': {
      const paid = eventType !== 'subscription_payment_failed';
      const subscriptionId = required(str(a['subscription_id']), 'subscription_id');
      const total = num(a['total']) ?? 0;
      actions.push({
        kind: 'invoice',
        invoice: {
          providerInvoiceId: id,
          providerSubscriptionId: subscriptionId,
          providerCustomerId: customer,
          providerPaymentId: paid ? lsInvoicePaymentId(id) : null,
          email,
          status: paid ? 'paid' : 'open',
          amountDue: total,
          amountPaid: paid ? total : 0,
          currency,
          invoicePdfUrl: str(obj(a['urls'])['invoice_url']),
          hostedInvoiceUrl: null,
          periodStart: null,
          periodEnd: null,
          paidAt: paid ? isoDate(a['updated_at']) ?? isoDate(a['created_at']) : null,
        },
      });
      if (paid && total > 0) {
        actions.push({
          kind: 'payment',
          payment: {
            providerPaymentId: lsInvoicePaymentId(id),
            providerCustomerId: customer,
            status: 'succeeded',
            amount: total,
            currency,
            email,
            metadata: custom,
            priceIds: [],
            receiptUrl: str(obj(a['urls'])['invoice_url']),
            description: `subscription invoice ${id}`,
            providerSubscriptionId: subscriptionId,
            tax: num(a['tax']) ?? 0,
          },
        });
      }
      actions.push({
        kind: 'subscription',
        subscription: {
          providerSubscriptionId: subscriptionId,
          providerCustomerId: customer,
          providerPriceId: null,
          planId: custom['plan_id'] ?? null,
          status: paid ? 'active' : 'past_due',
          interval: null,
          currentPeriodStart: null,
          currentPeriodEnd: null,
          cancelAtPeriodEnd: false,
          canceledAt: null,
          trialEnd: null,
          periodPaid: paid,
          email,
          metadata: custom,
        },
      });
      break;
    }
    case 'subscription_payment_refunded':
      actions.push({ kind: 'refund', providerPaymentId: lsInvoicePaymentId(id), ...refundedAmount(a), cumulative: true });
      break;
    default:
      if (eventType.startsWith('subscription_') && data['type'] === 'subscriptions') {
        const mapped = lsSubscriptionStatus(str(a['status']));
        actions.push({
          kind: 'subscription',
          subscription: {
            providerSubscriptionId: id,
            providerCustomerId: customer,
            providerPriceId: str(a['variant_id']) ?? str(a['product_id']),
            planId: custom['plan_id'] ?? null,
            ...mapped,
            interval: null,
            currentPeriodStart: null,
            currentPeriodEnd: isoDate(a['renews_at']) ?? isoDate(a['ends_at']),
            canceledAt: a['cancelled'] === true || a['status'] === 'expired' ? isoDate(a['updated_at']) : null,
            trialEnd: isoDate(a['trial_ends_at']),
            periodPaid: false,
            email,
            metadata: custom,
          },
        });
      }
  }
  return { eventId, eventType, actions };
}

/** Total refunded so far: `refunded_amount` when the payload has it, else all of it once refunded. */
function refundedAmount(a: Json): { amount: number } {
  const refunded = num(a['refunded_amount']);
  if (refunded !== null) return { amount: refunded };
  return { amount: required(num(a['total']), 'total') };
}
