/**
 * Each provider's documented subscription and invoice payloads → the normalised actions that
 * billing's SubscriptionPort receives (as ProviderSubscriptionSync, once the user is matched).
 * Pure functions: no database.
 */
import { describe, expect, it } from 'vitest';
import { normalizeCreem } from '../src/modules/payments/payments.creem.js';
import { normalizeLemonSqueezy } from '../src/modules/payments/payments.lemonsqueezy.js';
import { type PaymentAction, toMinorUnits } from '../src/modules/payments/payments.js';
import { normalizePayPal } from '../src/modules/payments/payments.paypal.js';
import { normalizeStripe, verifyStripe } from '../src/modules/payments/payments.stripe.js';
import { createHmac } from 'node:crypto';
import { must } from '../src/lib/must.js';

const subOf = (actions: PaymentAction[]) => actions.find((a) => a.kind === 'subscription') as Extract<PaymentAction, { kind: 'subscription' }> | undefined;

describe('Stripe', () => {
  it('invoice.paid → paid invoice, the payment, and an active subscription whose period was paid', () => {
    const ev = normalizeStripe({
      id: 'evt_1',
      type: 'invoice.paid',
      data: {
        object: {
          id: 'in_1', customer: 'cus_1', customer_email: 'a@b.c', payment_intent: 'pi_1', amount_due: 900, amount_paid: 900, currency: 'usd',
          parent: { subscription_details: { subscription: 'sub_1', metadata: { plan_id: 'plan_pro', user_id: 'u1' } } },
          lines: { data: [{ pricing: { price_details: { price: 'price_1' } }, period: { start: 1767225600, end: 1769904000 } }] },
          status_transitions: { paid_at: 1767225700 },
        },
      },
    });
    expect(ev.actions.map((a) => a.kind)).toEqual(['invoice', 'payment', 'subscription']);
    expect(must(subOf(ev.actions), 'subOf(ev.actions)').subscription).toMatchObject({
      providerSubscriptionId: 'sub_1', providerCustomerId: 'cus_1', providerPriceId: 'price_1', planId: 'plan_pro', status: 'active',
      periodPaid: true, currentPeriodStart: new Date(1767225600_000), currentPeriodEnd: new Date(1769904000_000),
    });
    const payment = ev.actions[1] as Extract<PaymentAction, { kind: 'payment' }>;
    expect(payment.payment).toMatchObject({ providerPaymentId: 'pi_1', providerSubscriptionId: 'sub_1', amount: 900, priceIds: ['price_1'] });
  });

  it('invoice.payment_failed → open invoice and past_due, nothing paid', () => {
    const ev = normalizeStripe({ id: 'evt_2', type: 'invoice.payment_failed', data: { object: { id: 'in_2', customer: 'cus_1', subscription: 'sub_1', amount_due: 900, amount_paid: 0, currency: 'usd' } } });
    expect(ev.actions.map((a) => a.kind)).toEqual(['invoice', 'subscription']);
    expect(must(subOf(ev.actions), 'subOf(ev.actions)').subscription).toMatchObject({ status: 'past_due', periodPaid: false });
  });

  it('customer.subscription.* map statuses, the interval and cancel-at-period-end', () => {
    const sub = (status: string, type = 'customer.subscription.updated') =>
      must(subOf(normalizeStripe({ id: 'e', type, data: { object: { id: 'sub_1', customer: 'cus_1', status, cancel_at_period_end: true, canceled_at: null, trial_end: 1767225600, items: { data: [{ price: { id: 'price_y', recurring: { interval: 'year' } }, current_period_start: 1, current_period_end: 2 }] }, metadata: { plan_id: 'p' } } } }).actions), 'the event has a subscription action').subscription;
    expect(sub('trialing')).toMatchObject({ status: 'trialing', interval: 'yearly', cancelAtPeriodEnd: true, trialEnd: new Date(1767225600_000), currentPeriodEnd: new Date(2000), planId: 'p' });
    expect(sub('unpaid').status).toBe('past_due');
    expect(sub('active', 'customer.subscription.deleted').status).toBe('canceled');
  });

  it('verification accepts any v1 under any configured secret, inside the tolerance only', () => {
    const raw = Buffer.from('{"id":"evt"}');
    const t = 1_800_000_000;
    const sig = (secret: string) => createHmac('sha256', secret).update(`${t}.`).update(raw).digest('hex');
    const now = new Date(t * 1000 + 299_000);
    expect(verifyStripe(raw, `t=${t},v1=${'0'.repeat(64)},v1=${sig('new')}`, ['old', 'new'], 300, now).ok).toBe(true);
    expect(verifyStripe(raw, `t=${t},v1=${sig('other')}`, ['old', 'new'], 300, now).ok).toBe(false);
    expect(verifyStripe(raw, `t=${t},v1=${sig('new')}`, ['new'], 300, new Date(t * 1000 + 301_000)).ok).toBe(false);
    expect(verifyStripe(raw, `t=${t},v0=${sig('new')}`, ['new'], 300, now).ok).toBe(false);
  });
});

describe('Lemon Squeezy', () => {
  const sub = (event: string, status: string) =>
    normalizeLemonSqueezy({
      meta: { event_name: event, custom_data: { user_id: 'u1', plan_id: 'basic' } },
      data: { type: 'subscriptions', id: '42', attributes: { customer_id: 7, variant_id: 99, user_email: 'a@b.c', status, renews_at: '2026-02-01T00:00:00.000000Z', trial_ends_at: null, updated_at: '2026-01-01T00:00:00Z' } },
    });

  it('subscription_* events map Lemon Squeezy statuses (cancelled = paid until the period ends)', () => {
    expect(must(subOf(sub('subscription_created', 'on_trial').actions), 'the event has a subscription action').subscription).toMatchObject({ status: 'trialing', providerPriceId: '99', planId: 'basic', providerCustomerId: '7' });
    expect(must(subOf(sub('subscription_cancelled', 'cancelled').actions), 'the event has a subscription action').subscription).toMatchObject({ status: 'active', cancelAtPeriodEnd: true });
    expect(must(subOf(sub('subscription_expired', 'expired').actions), 'the event has a subscription action').subscription.status).toBe('canceled');
    expect(must(subOf(sub('subscription_updated', 'past_due').actions), 'the event has a subscription action').subscription.status).toBe('past_due');
    expect(sub('subscription_updated', 'active').eventId).toBe('subscription_updated:subscriptions:42:2026-01-01T00:00:00Z');
  });

  it('subscription_payment_success pays a period; subscription_payment_failed is past_due', () => {
    const inv = (event: string, status: string) =>
      normalizeLemonSqueezy({ meta: { event_name: event, custom_data: {} }, data: { type: 'subscription-invoices', id: '5', attributes: { subscription_id: 42, customer_id: 7, total: 999, currency: 'USD', status, updated_at: 'x' } } });
    const ok = inv('subscription_payment_success', 'paid');
    expect(ok.actions.map((a) => a.kind)).toEqual(['invoice', 'payment', 'subscription']);
    expect(must(subOf(ok.actions), 'subOf(ok.actions)').subscription).toMatchObject({ providerSubscriptionId: '42', status: 'active', periodPaid: true });
    expect(must(subOf(inv('subscription_payment_failed', 'failed').actions), 'the event has a subscription action').subscription).toMatchObject({ status: 'past_due', periodPaid: false });
  });
});

describe('Creem', () => {
  it('subscription.paid pays the period (and records the renewal payment); subscription.canceled cancels', () => {
    const s = (eventType: string, status: string) =>
      normalizeCreem({
        id: 'evt_x', eventType, created_at: 1,
        object: {
          id: 'sub_1', object: 'subscription', status, product: { id: 'prod_1', billing_period: 'every-month' }, customer: { id: 'cust_1', email: 'a@b.c' },
          current_period_start_date: '2026-01-01T00:00:00.000Z', current_period_end_date: '2026-02-01T00:00:00.000Z', canceled_at: null,
          last_transaction: { id: 'tran_1', order: 'ord_9', amount: 1000, currency: 'EUR' }, metadata: { user_id: 'u1' },
        },
      });
    const paid = s('subscription.paid', 'active');
    expect(paid.actions.map((a) => a.kind)).toEqual(['payment', 'subscription']);
    expect(must(subOf(paid.actions), 'subOf(paid.actions)').subscription).toMatchObject({ status: 'active', periodPaid: true, interval: 'monthly', providerPriceId: 'prod_1', currentPeriodEnd: new Date('2026-02-01T00:00:00.000Z') });
    expect(must(subOf(s('subscription.canceled', 'canceled').actions), 'the event has a subscription action').subscription).toMatchObject({ status: 'canceled', periodPaid: false });
    expect(must(subOf(s('subscription.update', 'scheduled_cancel').actions), 'the event has a subscription action').subscription).toMatchObject({ status: 'active', cancelAtPeriodEnd: true });
  });
});

describe('PayPal', () => {
  it('BILLING.SUBSCRIPTION.* and PAYMENT.FAILED map to billing statuses; amounts become minor units', () => {
    const s = (event_type: string, status: string) =>
      must(subOf(normalizePayPal({ id: 'WH-1', event_type, resource: { id: 'I-SUB', plan_id: 'P-PLAN', status, custom_id: 'u1', subscriber: { email_address: 'a@b.c', payer_id: 'PAYER' }, billing_info: { next_billing_time: '2026-02-01T10:00:00Z' } } }).actions), 'the event has a subscription action').subscription;
    expect(s('BILLING.SUBSCRIPTION.ACTIVATED', 'ACTIVE')).toMatchObject({ status: 'active', providerPriceId: 'P-PLAN', providerCustomerId: 'PAYER', metadata: { user_id: 'u1' }, currentPeriodEnd: new Date('2026-02-01T10:00:00Z') });
    expect(s('BILLING.SUBSCRIPTION.CANCELLED', 'CANCELLED').status).toBe('canceled');
    expect(s('BILLING.SUBSCRIPTION.PAYMENT.FAILED', 'ACTIVE').status).toBe('past_due');
    expect(toMinorUnits('10.5', 'usd')).toBe(1050);
    expect(toMinorUnits('1000', 'jpy')).toBe(1000);
  });

  it('CUSTOMER.DISPUTE.CREATED names the disputed capture', () => {
    const ev = normalizePayPal({ id: 'WH-2', event_type: 'CUSTOMER.DISPUTE.CREATED', resource: { dispute_id: 'PP-D-1', disputed_transactions: [{ seller_transaction_id: 'CAP-1' }], dispute_amount: { currency_code: 'USD', value: '5.00' } } });
    expect(ev.actions).toEqual([{ kind: 'dispute', providerPaymentId: 'CAP-1', amount: 500 }]);
  });
});
