import type { FastifyBaseLogger } from 'fastify';
import type { PaymentsConfig } from '../../config/config.js';
import type { Database, Db, Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { type PageRequest, toPage } from '../../core/paging.js';
import { newId } from '../../lib/ids.js';
import type { LedgerOp, OpResult } from '../credits/credits.js';
import { type CreditsService, moneyScope } from '../credits/credits.service.js';
import {
  customerBody,
  emailAliasBody,
  invoiceBody,
  isSettled,
  MalformedEvent,
  type NormalizedEvent,
  type PaymentAction,
  type PaymentFacts,
  type PaymentStatus,
  paymentBody,
  type SubscriptionFacts,
  webhookEventBody,
  creditPackageBody,
  type InvoiceFacts,
} from './payments.js';
import type { SubscriptionPort } from './payments.ports.js';
import { type Headers, type ProviderName, type Verification, VerificationUnavailable } from './payments.provider.js';
import { providerOf, ProviderVerifiers } from './payments.providers.js';
import { type CheckoutReference, signReference, verifyReference } from './payments.reference.js';
import * as repo from './payments.repository.js';
import { header } from './payments.signing.js';

type Row = Record<string, unknown>;

export interface PaymentsDeps {
  database: Database;
  credits: CreditsService;
  /** Billing's port (null until billing is wired in: subscription events are then logged only). */
  subscriptions: SubscriptionPort | null;
  config: PaymentsConfig | undefined;
  /** Keys checkout references are signed with (the first) and verified with (all): payments.reference.ts. */
  referenceKeys: readonly Buffer[];
  clock: () => Date;
  logger: FastifyBaseLogger;
}

export interface WebhookAnswer {
  status: number;
  body: { received: true; event_id: string; status: 'processed' | 'ignored'; outcome: string; replayed: boolean };
}

/** The principal payments' own ledger operations are recorded under (idempotency scopes). */
const PRINCIPAL = 'payments';

/** Actions apply in this order within an event: who the customer is, then money, then state. */
const ORDER: Record<PaymentAction['kind'], number> = { customer: 0, payment: 1, alias: 2, invoice: 3, refund: 4, dispute: 5, subscription: 6 };

type MatchedBy = 'reference' | 'metadata' | 'customer' | 'email' | 'alias';
interface Match {
  userId: string;
  by: MatchedBy | 'admin';
}
/** Only these may link a provider customer to a user (first link wins, so a weak claim must not). */
const LINKS: ReadonlySet<string> = new Set(['reference', 'customer', 'email', 'alias', 'admin']);

/**
 * Payment webhooks, records and the unmatched queue. A delivery is verified with its provider's
 * scheme before anything is written; each provider event id is processed once, forever (the
 * webhook_events row, locked for the whole processing transaction); each provider payment id is
 * one payments row; and every credit movement is a ledger operation with an idempotency scope,
 * run with `executeIn` in the same transaction as the rows that explain it.
 */
export class PaymentsService {
  private readonly db: Db;
  private readonly verifiers: ProviderVerifiers;

  constructor(private readonly deps: PaymentsDeps) {
    this.db = deps.database.db;
    this.verifiers = new ProviderVerifiers(deps.config, deps.clock);
  }

  // -------------------------------------------------------------------------------------------
  // Webhooks
  // -------------------------------------------------------------------------------------------

  async receiveWebhook(provider: ProviderName, raw: Buffer, headers: Headers): Promise<WebhookAnswer> {
    const plugin = providerOf(provider);
    const verification = await this.verify(provider, raw, headers);
    const signature = header(headers, plugin.signatureHeader)?.slice(0, 2048) ?? null;
    if (!verification.ok) return this.reject(provider, signature, verification.reason);
    const payload = verification.payload;
    let event: NormalizedEvent;
    try {
      if (payload === undefined) throw new MalformedEvent('body is not JSON');
      event = plugin.normalize(payload);
    } catch (err) {
      // A signed body with no readable event id cannot be keyed, so it cannot be processed once.
      const eventId = plugin.eventIdOf(payload);
      if (err instanceof MalformedEvent && eventId === '') return this.reject(provider, signature, `unreadable event: ${err.message}`);
      const type = plugin.eventTypeOf(payload);
      event = { eventId, eventType: typeof type === 'string' ? type.slice(0, 255) : 'unknown', actions: [] };
      return this.process(provider, event, payload, signature, err as Error);
    }
    return this.process(provider, event, payload, signature, null);
  }

  /** The provider's verdict; an unconfigured provider or one that cannot be asked is a 503. */
  private async verify(provider: ProviderName, raw: Buffer, headers: Headers): Promise<Verification> {
    const verifier = this.verifiers.require(provider);
    try {
      return await verifier(raw, headers);
    } catch (err) {
      if (err instanceof VerificationUnavailable) {
        this.deps.logger.warn({ provider, err: err.message }, 'webhook verification unavailable');
        throw errors.unavailable(`${providerOf(provider).title} signature verification is unavailable: ${err.message}`);
      }
      throw err;
    }
  }

  /** Bad, missing or stale signature: 400, a `rejected` log row without the untrusted payload. */
  private async reject(provider: ProviderName, signature: string | null, reason: string): Promise<never> {
    this.deps.logger.warn({ provider, reason }, 'webhook rejected');
    await repo.webhookReject(this.db, { id: newId('webhookEvent'), provider, error: reason.slice(0, 4000), signature });
    throw errors.invalidRequest(`Webhook signature verification failed: ${reason}`, { provider });
  }

  /**
   * The event is recorded as received (its own commit, so the log shows it even if processing
   * dies), then processed in one transaction that holds the event row's lock: a concurrent
   * duplicate delivery waits, then sees `processed` and replays. Any failure rolls the whole
   * processing back, is recorded as `failed` with its error, and answers 5xx so the provider retries.
   */
  private async process(
    provider: ProviderName,
    event: NormalizedEvent,
    payload: unknown,
    signature: string | null,
    parseError: Error | null,
  ): Promise<WebhookAnswer> {
    const { eventId, eventType } = event;
    await repo.webhookReceive(this.db, {
      id: newId('webhookEvent'),
      provider,
      event_id: eventId,
      event_type: eventType,
      payload: JSON.stringify(payload ?? null),
      signature,
    });
    try {
      return await this.db.transaction().execute(async (trx) => {
        const row = await repo.webhookLock(trx, provider, eventId);
        if (!row) throw new Error(`webhook event ${provider}/${eventId} vanished`);
        if (row['status'] === 'processed' || row['status'] === 'ignored') {
          const status = row['status'] as 'processed' | 'ignored';
          return { status: 200, body: { received: true, event_id: eventId, status, outcome: String(row['outcome'] ?? ''), replayed: true } };
        }
        if (parseError) throw parseError;
        await repo.webhookUpdate(trx, provider, eventId, { status: 'processing', attempts: Number(row['attempts']) + 1 });
        const outcomes: string[] = [];
        const actions = [...event.actions].sort((a, b) => ORDER[a.kind] - ORDER[b.kind]);
        for (const action of actions) outcomes.push(await this.applyAction(trx, provider, eventId, action, payload));
        const status = actions.length === 0 ? 'ignored' : 'processed';
        const outcome = actions.length === 0 ? `event type ${eventType} ignored` : outcomes.join('; ');
        const body = { received: true as const, event_id: eventId, status: status as 'processed' | 'ignored', outcome: outcome.slice(0, 1000), replayed: false };
        await repo.webhookUpdate(trx, provider, eventId, {
          status,
          outcome: body.outcome,
          error: null,
          response: JSON.stringify(body),
          processed_at: this.deps.clock(),
        });
        return { status: 200, body };
      });
    } catch (err) {
      const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      this.deps.logger.error({ provider, eventId, eventType, err: message }, 'webhook processing failed');
      await repo.webhookFail(this.db, provider, eventId, message).catch(() => undefined);
      throw errors.internal();
    }
  }

  private async applyAction(trx: Executor, provider: ProviderName, eventId: string, action: PaymentAction, payload: unknown): Promise<string> {
    switch (action.kind) {
      case 'payment':
        return this.applyPayment(trx, provider, eventId, action.payment, payload);
      case 'refund':
        return this.applyRefund(trx, provider, action);
      case 'alias': {
        const key = await this.claimKey(trx, provider, action.providerPaymentId, action.refs);
        return `payment ${key} is also known as ${action.refs.filter((r) => r !== key).join(', ')}`;
      }
      case 'dispute':
        return this.applyDispute(trx, provider, action);
      case 'invoice':
        return this.applyInvoice(trx, provider, action.invoice, payload);
      case 'subscription':
        return this.applySubscription(trx, provider, eventId, action.subscription);
      case 'customer': {
        const match = await this.match(trx, provider, { metadata: action.metadata, providerCustomerId: action.providerCustomerId, email: action.email });
        if (!match) return `customer ${action.providerCustomerId} not matched to a user`;
        if (!LINKS.has(match.by)) return `customer ${action.providerCustomerId} not linked: an unsigned metadata user id does not link customers`;
        await this.link(trx, provider, action.providerCustomerId, match.userId, action.email);
        return `customer ${action.providerCustomerId} linked to ${match.userId}`;
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Payments: record once, match, grant once
  // -------------------------------------------------------------------------------------------

  private async applyPayment(trx: Executor, provider: ProviderName, eventId: string, p: PaymentFacts, payload: unknown): Promise<string> {
    // The row is keyed by the first id any event named for this payment (payment_refs).
    const key = await this.claimKey(trx, provider, p.providerPaymentId, p.refs ?? []);
    const { row, created } = await repo.paymentClaim(trx, {
      id: newId('payment'),
      provider,
      provider_payment_id: key,
      provider_customer_id: p.providerCustomerId,
      status: 'created',
      amount: p.amount,
      currency: p.currency,
      email: p.email,
      match_status: 'unmatched',
      receipt_url: p.receiptUrl,
      description: p.description,
      metadata: JSON.stringify(p.metadata),
      raw_payload: JSON.stringify(payload ?? null),
    });
    const id = String(row['id']);
    const current = row['status'] as PaymentStatus;
    if (isSettled(current)) return `payment ${id} already ${current}${created ? '' : ' (seen before)'}`;

    const ref = this.reference(p.metadata);
    const match: Match | null = row['user_id']
      ? { userId: String(row['user_id']), by: (row['matched_by'] ?? 'metadata') as Match['by'] }
      : await this.match(trx, provider, { metadata: p.metadata, providerCustomerId: p.providerCustomerId, email: p.email });
    const customerId =
      match && p.providerCustomerId && LINKS.has(match.by) ? String((await this.link(trx, provider, p.providerCustomerId, match.userId, p.email))['id']) : null;
    const base = {
      status: p.status,
      amount: p.amount,
      currency: p.currency,
      email: p.email ?? row['email'] ?? null,
      receipt_url: p.receiptUrl ?? row['receipt_url'] ?? null,
      raw_payload: JSON.stringify(payload ?? null),
      ...(match ? { user_id: match.userId, match_status: row['match_status'] === 'resolved' ? 'resolved' : 'matched', matched_by: match.by, customer_id: customerId } : {}),
    };
    if (p.status !== 'succeeded') {
      await repo.paymentUpdate(trx, id, base);
      return `payment ${id} ${p.status}`;
    }

    const priced = await this.purchaseOf(trx, provider, p, ref);
    const purchase = priced.purchase;
    const bought = {
      credits: priced.ok ? purchase.credits : 0,
      package_id: purchase.packageId,
      plan_id: priced.ok ? purchase.planId : null,
      credit_class: purchase.class,
      credits_expire_days: purchase.expireDays,
      provider_price_id: p.priceIds[0] ?? null,
      processed_at: this.deps.clock(),
    };
    if (!priced.ok) {
      // A price that does not match (or a payment that buys nothing): never a grant. It waits in
      // the unmatched queue, without a user, for an admin to resolve (and decide the credits).
      const who = match ? ` (the payment names ${match.userId}, matched by ${match.by})` : '';
      await repo.paymentUpdate(trx, id, {
        ...base,
        ...bought,
        user_id: null,
        match_status: 'unmatched',
        matched_by: null,
        customer_id: null,
        unmatched_reason: `${priced.reason}${who}`.slice(0, 500),
      });
      return `payment ${id} succeeded; ${priced.reason} — waiting in the unmatched queue`;
    }
    const updated = await repo.paymentUpdate(trx, id, { ...base, ...bought, unmatched_reason: match ? null : 'no user matched' });
    if (!match) return `payment ${id} succeeded; no user matched — waiting in the unmatched queue`;
    return this.fulfil(trx, provider, eventId, updated, purchase, p);
  }

  /**
   * The provider payment id a payment's row is keyed by, given every id an event names for it:
   * the first one known (a row, or an alias recorded by an earlier event), else the event's own.
   * All the ids are recorded as its aliases (payment_refs), so later events naming any of them —
   * a refund by payment intent, a dispute by charge, an invoice by its id — find the same row.
   */
  private async claimKey(trx: Executor, provider: ProviderName, primary: string, refs: readonly string[]): Promise<string> {
    const all = [primary, ...refs.filter((r) => r !== primary)];
    const known = (await repo.paymentKeyOf(trx, provider, all)) ?? primary;
    await repo.refsRecord(trx, provider, all, known);
    // Read again: a concurrent event may have recorded one of these ids first (we waited for it).
    return (await repo.paymentKeyOf(trx, provider, all)) ?? known;
  }

  /** The payment a refund or dispute names, by any of its ids (locked); learns the ids it did not know. */
  private async paymentByAnyId(trx: Executor, provider: ProviderName, primary: string, refs: readonly string[]): Promise<Row | undefined> {
    const all = [primary, ...refs.filter((r) => r !== primary)];
    const key = await repo.paymentKeyOf(trx, provider, all);
    if (!key) return undefined;
    await repo.refsRecord(trx, provider, all, key);
    return repo.paymentLockByProviderId(trx, provider, key);
  }

  /** A checkout reference in the metadata that Tally signed and that has not expired (else null). */
  private reference(metadata: Record<string, string>): CheckoutReference | null {
    const value = metadata['tally_ref'];
    if (!value) return null;
    return verifyReference(this.deps.referenceKeys, value, this.deps.clock()).ref;
  }

  /** Grants what a matched, succeeded payment bought (credits exactly once; a plan through billing). */
  private async fulfil(
    trx: Executor,
    provider: ProviderName,
    eventId: string,
    payment: Row,
    purchase: Purchase,
    p: Pick<PaymentFacts, 'providerCustomerId' | 'priceIds'>,
  ): Promise<string> {
    const id = String(payment['id']);
    const userId = String(payment['user_id']);
    const outcomes: string[] = [];
    if (purchase.credits > 0) {
      const result = await this.ledger(trx, userId, {
        kind: 'grant',
        requestId: `payment:${id}`,
        idem: moneyScope(PRINCIPAL, `payment:${id}:grant`, '/internal/payments/grant', { payment_id: id, credits: purchase.credits }),
        amount: purchase.credits,
        reason: `purchase (${provider} ${String(payment['provider_payment_id'])})`,
        class: purchase.class,
        source: 'purchase',
        expiresAt: purchase.expireDays === null ? null : new Date(this.deps.clock().getTime() + purchase.expireDays * 86_400_000),
        priority: 0,
        metadata: { payment_id: id, provider, provider_payment_id: payment['provider_payment_id'] },
      });
      const txn = (result.body as { transaction: { id: string; grant_id: string | null } }).transaction;
      await repo.paymentUpdate(trx, id, { grant_transaction_id: txn.id, grant_id: txn.grant_id });
      outcomes.push(`payment ${id} granted ${purchase.credits} credits to ${userId}`);
    }
    if (purchase.planId) {
      outcomes.push(
        await this.syncSubscription(trx, {
          provider,
          eventId,
          userId,
          providerSubscriptionId: String(payment['provider_payment_id']),
          providerCustomerId: p.providerCustomerId,
          providerPriceId: p.priceIds[0] ?? null,
          planId: purchase.planId,
          status: 'active',
          interval: purchase.interval,
          currentPeriodStart: null,
          currentPeriodEnd: null,
          cancelAtPeriodEnd: false,
          canceledAt: null,
          trialEnd: null,
          periodPaid: true,
        }),
      );
    }
    return outcomes.length > 0 ? outcomes.join('; ') : `payment ${id} succeeded; it buys nothing (no credits, package, plan or credit price)`;
  }

  /**
   * What a payment buys, from server-side configuration only (never from metadata a buyer may
   * set): the credit package its price/variant/product id maps to, or the package a signed
   * checkout reference names — at that package's price, net of tax, in its currency; for a
   * one-time payment, else the plan its price (or the reference) names, at the plan's price; else
   * the configured credit price, floor(net ÷ price). A subscription's payment buys only a package
   * (its plan comes through billing's port). Anything else — a price that does not match, a
   * package without a price, a one-time payment that buys nothing — is not ok: it never grants.
   */
  private async purchaseOf(trx: Executor, provider: ProviderName, p: PaymentFacts, ref: CheckoutReference | null): Promise<Priced> {
    const none: Purchase = { credits: 0, class: 'default', expireDays: null, packageId: null, planId: null, interval: null };
    const ok = (purchase: Purchase): Priced => ({ ok: true, purchase });
    const fail = (reason: string, purchase: Purchase = none): Priced => ({ ok: false, reason, purchase });
    const net = p.amount - (p.tax ?? 0);
    const paid = `paid ${net} ${p.currency}${p.tax ? ` (net of ${p.tax} tax)` : ''}`;

    const byPrice = await repo.packageByPrice(trx, provider, p.priceIds);
    let pkg = byPrice;
    if (ref?.packageId) {
      const named = await repo.packageFind(trx, ref.packageId);
      if (!named || named['provider'] !== provider || !named['is_active']) {
        return fail(`the checkout reference names package ${ref.packageId}, which is not an active ${provider} package`);
      }
      if (byPrice && byPrice['id'] !== named['id']) {
        return fail(`the checkout reference names package ${String(named['id'])}, but the price paid is package ${String(byPrice['id'])}`, fromPackage(named));
      }
      pkg = named;
    }
    if (pkg) {
      const bought = fromPackage(pkg);
      const price = pkg['price_amount'] === null ? null : Number(pkg['price_amount']);
      const currency = (pkg['currency'] as string | null) ?? null;
      if (price === null || currency === null) return fail(`package ${bought.packageId!} has no price to check the payment against`, bought);
      if (price !== net || currency !== p.currency) return fail(`package ${bought.packageId!} costs ${price} ${currency}; ${paid}`, bought);
      return ok(bought);
    }
    if (p.providerSubscriptionId) return ok(none);

    const plan = ref?.planId ? await repo.planFind(trx, ref.planId) : await repo.planByPrice(trx, provider, p.priceIds);
    if (ref?.planId && !plan) return fail(`the checkout reference names plan ${ref.planId}, which does not exist`);
    if (plan) {
      const planId = String(plan['id']);
      const prices: Array<['monthly' | 'yearly', number]> = [
        ['monthly', Number(plan['price_monthly'])],
        ['yearly', Number(plan['price_yearly'])],
      ];
      const allowed = plan['billing_interval'] ? prices.filter(([i]) => i === plan['billing_interval']) : prices;
      const hit = allowed.find(([, price]) => price > 0 && price === net);
      if (!plan['is_active']) return fail(`plan ${planId} is not active`);
      if (!hit || plan['currency'] !== p.currency) {
        return fail(`plan ${planId} costs ${allowed.map(([i, price]) => `${price} ${String(plan['currency'])} ${i}`).join(' or ')}; ${paid}`);
      }
      return ok({ ...none, planId, interval: hit[0] });
    }
    const unit = this.deps.config?.creditPrice;
    if (unit && unit.currency === p.currency && net >= unit.unitAmount) return ok({ ...none, credits: Math.floor(net / unit.unitAmount) });
    return fail(`it buys nothing: no package or plan for its price${p.priceIds.length ? ` (${p.priceIds.join(', ')})` : ''} and no credit price in ${p.currency}`);
  }

  // -------------------------------------------------------------------------------------------
  // Refunds and disputes: claw back what the payment granted
  // -------------------------------------------------------------------------------------------

  private async applyRefund(trx: Executor, provider: ProviderName, r: Extract<PaymentAction, { kind: 'refund' }>): Promise<string> {
    const row = await this.paymentByAnyId(trx, provider, r.providerPaymentId, r.refs ?? []);
    // Out of order (the refund before its payment): fail, so the provider retries after the payment.
    if (!row) throw new Error(`refund for unknown ${provider} payment ${r.providerPaymentId} (retry after the payment event)`);
    const amount = Number(row['amount']);
    const before = Number(row['amount_refunded']);
    const refunded = Math.min(amount, r.cumulative ? Math.max(before, r.amount) : before + r.amount);
    const full = refunded >= amount;
    const status = row['status'] === 'disputed' ? 'disputed' : full && isSettled(row['status'] as PaymentStatus) ? 'refunded' : row['status'];
    await repo.paymentUpdate(trx, String(row['id']), { amount_refunded: refunded, status, refunded_at: this.deps.clock() });
    // Pro rata: the share of the credits that the refunded share of the money bought.
    const credits = Number(row['credits']);
    const target = amount > 0 ? Math.round((credits * refunded) / amount) : credits;
    const clawed = await this.clawBack(trx, row, target, `refund of ${provider} payment ${r.providerPaymentId}`);
    return `payment ${String(row['id'])} refunded ${refunded}/${amount}${clawed > 0 ? `; clawed back ${clawed} credits` : ''}`;
  }

  private async applyDispute(trx: Executor, provider: ProviderName, d: Extract<PaymentAction, { kind: 'dispute' }>): Promise<string> {
    const row = await this.paymentByAnyId(trx, provider, d.providerPaymentId, d.refs ?? []);
    if (!row) throw new Error(`dispute for unknown ${provider} payment ${d.providerPaymentId} (retry after the payment event)`);
    await repo.paymentUpdate(trx, String(row['id']), { status: 'disputed', disputed_at: this.deps.clock() });
    const clawed = await this.clawBack(trx, row, Number(row['credits']), `dispute of ${provider} payment ${d.providerPaymentId}`);
    return `payment ${String(row['id'])} disputed${clawed > 0 ? `; clawed back ${clawed} credits` : ''}`;
  }

  /**
   * Brings the payment's clawed-back credits up to `target` (never down). The ledger key names the
   * target, so the same refund level claws back once however often it is delivered.
   */
  private async clawBack(trx: Executor, payment: Row, target: number, reason: string): Promise<number> {
    const id = String(payment['id']);
    const done = Number(payment['credits_clawed_back']);
    // Nothing was granted yet (unmatched, or not succeeded): nothing to take back.
    if (!payment['grant_transaction_id'] || !payment['user_id'] || target <= done) return 0;
    const amount = target - done;
    await this.ledger(trx, String(payment['user_id']), {
      kind: 'clawback',
      requestId: `payment:${id}`,
      idem: moneyScope(PRINCIPAL, `payment:${id}:clawback:${target}`, '/internal/payments/clawback', { payment_id: id, target }),
      amount,
      reason: reason.slice(0, 500),
      transactionId: String(payment['grant_transaction_id']),
      metadata: { payment_id: id },
    });
    await repo.paymentUpdate(trx, id, { credits_clawed_back: target });
    return amount;
  }

  // -------------------------------------------------------------------------------------------
  // Invoices and subscriptions
  // -------------------------------------------------------------------------------------------

  private async applyInvoice(trx: Executor, provider: ProviderName, inv: InvoiceFacts, payload: unknown): Promise<string> {
    const match = await this.match(trx, provider, { metadata: {}, providerCustomerId: inv.providerCustomerId, email: inv.email });
    const customer = inv.providerCustomerId ? await repo.customerFind(trx, provider, inv.providerCustomerId) : undefined;
    const paymentKey = inv.providerPaymentId ? await repo.paymentKeyOf(trx, provider, [inv.providerPaymentId]) : undefined;
    const payment = paymentKey ? await repo.paymentLockByProviderId(trx, provider, paymentKey) : undefined;
    await repo.invoiceUpsert(trx, {
      id: newId('invoice'),
      provider,
      provider_invoice_id: inv.providerInvoiceId,
      provider_subscription_id: inv.providerSubscriptionId,
      user_id: match?.userId ?? null,
      customer_id: customer ? String(customer['id']) : null,
      payment_id: payment ? String(payment['id']) : null,
      status: inv.status,
      amount_due: inv.amountDue,
      amount_paid: inv.amountPaid,
      currency: inv.currency,
      invoice_pdf_url: inv.invoicePdfUrl,
      hosted_invoice_url: inv.hostedInvoiceUrl,
      period_start: inv.periodStart,
      period_end: inv.periodEnd,
      paid_at: inv.paidAt,
      raw_payload: JSON.stringify(payload ?? null),
    });
    return `invoice ${inv.providerInvoiceId} ${inv.status}`;
  }

  private async applySubscription(trx: Executor, provider: ProviderName, eventId: string, s: SubscriptionFacts): Promise<string> {
    const match = await this.match(trx, provider, { metadata: s.metadata, providerCustomerId: s.providerCustomerId, email: s.email });
    if (!match) return `subscription ${s.providerSubscriptionId} ${s.status}: no user matched`;
    if (s.providerCustomerId && LINKS.has(match.by)) await this.link(trx, provider, s.providerCustomerId, match.userId, s.email);
    const { email: _e, metadata: _m, ...rest } = s;
    // The plan is the one its price maps to (billing looks it up): metadata never chooses it.
    return this.syncSubscription(trx, { ...rest, planId: null, provider, eventId, userId: match.userId });
  }

  private async syncSubscription(trx: Executor, input: Parameters<SubscriptionPort['syncProviderSubscription']>[1]): Promise<string> {
    if (!this.deps.subscriptions) return `subscription ${input.providerSubscriptionId} ${input.status}: subscription sync not configured`;
    const { subscriptionId } = await this.deps.subscriptions.syncProviderSubscription(trx, input);
    if (!subscriptionId) return `subscription ${input.providerSubscriptionId}: price ${input.providerPriceId ?? '(none)'} buys no plan; nothing to sync`;
    return `subscription ${input.providerSubscriptionId} ${input.status} synced to ${subscriptionId}`;
  }

  // -------------------------------------------------------------------------------------------
  // Matching: signed reference → linked customer → metadata user_id → verified e-mail → alias → queue.
  // An unverified address never matches: a stranger may have signed up with the payer's address.
  // Aliases are added by the service only, so they are trusted as they stand.
  // -------------------------------------------------------------------------------------------

  /**
   * Who paid. A checkout reference Tally signed is the app's word; a linked customer is Tally's
   * own record. An unsigned metadata user id (buyers can set it on some providers' checkout links)
   * still matches — apps rely on it — but it comes after the linked customer, never links a
   * customer itself, and never decides what the payment buys.
   */
  private async match(
    trx: Executor,
    provider: ProviderName,
    q: { metadata: Record<string, string>; providerCustomerId: string | null; email: string | null },
  ): Promise<{ userId: string; by: MatchedBy } | null> {
    const ref = this.reference(q.metadata);
    if (ref && (await repo.userExists(trx, ref.userId))) return { userId: ref.userId, by: 'reference' };
    if (q.providerCustomerId) {
      const customer = await repo.customerFind(trx, provider, q.providerCustomerId);
      if (customer) return { userId: String(customer['user_id']), by: 'customer' };
    }
    const fromMeta = q.metadata['user_id'] ?? q.metadata['userId'] ?? q.metadata['tally_user_id'];
    if (fromMeta && (await repo.userExists(trx, fromMeta))) return { userId: fromMeta, by: 'metadata' };
    if (q.email) {
      const byEmail = await repo.userIdByVerifiedEmail(trx, q.email);
      if (byEmail) return { userId: byEmail, by: 'email' };
      const byAlias = await repo.userIdByAlias(trx, q.email);
      if (byAlias) return { userId: byAlias, by: 'alias' };
    }
    return null;
  }

  private link(trx: Executor, provider: ProviderName, providerCustomerId: string, userId: string, email: string | null): Promise<Row> {
    return repo.customerLink(trx, { id: newId('customer'), user_id: userId, provider, provider_customer_id: providerCustomerId, email });
  }

  /** A ledger movement in the caller's transaction; a refusal fails the webhook (5xx, retried). */
  private async ledger(trx: Executor, userId: string, op: LedgerOp): Promise<OpResult> {
    const [result] = await this.deps.credits.executeIn(trx, { userId }, [op]);
    if (!result || result.status >= 300) {
      const code = (result?.body as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new Error(`ledger refused ${op.kind} for ${userId}: ${code?.code ?? 'unknown'} ${code?.message ?? ''}`.trim());
    }
    return result;
  }

  // -------------------------------------------------------------------------------------------
  // The unmatched queue (admin) and reads
  // -------------------------------------------------------------------------------------------

  /** Assigns an unmatched payment to a user and grants what it bought — once, whatever retries. */
  async resolve(paymentId: string, userId: string, addAlias: boolean, creditsOverride?: number) {
    return this.db.transaction().execute(async (trx) => {
      const row = await repo.paymentLock(trx, paymentId);
      if (!row) throw errors.notFound('Payment', paymentId);
      if (row['match_status'] !== 'unmatched') {
        throw errors.invalidState(`Payment ${paymentId} is already ${String(row['match_status'])}`, { match_status: row['match_status'] });
      }
      if (row['status'] !== 'succeeded' || Number(row['amount_refunded']) > 0) {
        throw errors.invalidState(`Payment ${paymentId} is ${String(row['status'])}${Number(row['amount_refunded']) > 0 ? ' (partly refunded)' : ''}; only a succeeded payment can be resolved`, { status: row['status'] });
      }
      if (!(await repo.userExists(trx, userId))) throw errors.notFound('User', userId);
      const provider = row['provider'] as ProviderName;
      const providerCustomerId = (row['provider_customer_id'] as string | null) ?? null;
      const customer = providerCustomerId ? await this.link(trx, provider, providerCustomerId, userId, (row['email'] as string | null) ?? null) : null;
      if (addAlias && row['email']) await repo.aliasInsert(trx, { id: newId('emailAlias'), user_id: userId, email: String(row['email']), note: `payment ${paymentId}` });
      const updated = await repo.paymentUpdate(trx, paymentId, {
        user_id: userId,
        match_status: 'resolved',
        matched_by: 'admin',
        customer_id: customer ? String(customer['id']) : null,
        unmatched_reason: null,
        ...(creditsOverride !== undefined ? { credits: creditsOverride } : {}),
      });
      const full = await repo.paymentLock(trx, paymentId);
      // Exactly what the payment was priced at when paid (frozen on its row): a package changed
      // or deleted since changes nothing.
      const days = updated['credits_expire_days'];
      await this.fulfil(trx, provider, `resolve:${paymentId}`, full!, {
        credits: Number(updated['credits']),
        class: (updated['credit_class'] as string | null) ?? 'default',
        expireDays: days === null || days === undefined ? null : Number(days),
        packageId: (updated['package_id'] as string | null) ?? null,
        planId: (updated['plan_id'] as string | null) ?? null,
        interval: null,
      }, { providerCustomerId, priceIds: updated['provider_price_id'] ? [String(updated['provider_price_id'])] : [] });
      return paymentBody((await repo.paymentFind(trx, paymentId))!);
    });
  }

  /** Signs a checkout reference for a user (and optionally a package or plan): docs/payments.md. */
  async createReference(db: Executor, b: { user_id: string; package_id?: string; plan_id?: string; expires_in_seconds?: number }) {
    await this.assertUser(db, b.user_id);
    if (b.package_id && b.plan_id) throw errors.invalidRequest('Name a package or a plan, not both', { field: 'plan_id' });
    if (b.package_id) {
      const pkg = await repo.packageFind(db, b.package_id);
      if (!pkg) throw errors.notFound('Credit package', b.package_id);
      if (!pkg['is_active']) throw errors.invalidState(`Credit package ${b.package_id} is not active`);
    }
    if (b.plan_id && !(await repo.planFind(db, b.plan_id))) throw errors.notFound('Plan', b.plan_id);
    const key = this.deps.referenceKeys[0];
    if (!key) throw errors.unavailable('No key to sign checkout references with');
    const expiresAt = new Date(Math.floor(this.deps.clock().getTime() / 1000) * 1000 + (b.expires_in_seconds ?? 86_400) * 1000);
    const ref: CheckoutReference = { userId: b.user_id, packageId: b.package_id ?? null, planId: b.plan_id ?? null, expiresAt };
    return { reference: signReference(key, ref), user_id: ref.userId, package_id: ref.packageId, plan_id: ref.planId, expires_at: expiresAt.toISOString() };
  }

  async payment(db: Executor, id: string) {
    const row = await repo.paymentFind(db, id);
    if (!row) throw errors.notFound('Payment', id);
    return paymentBody(row);
  }

  async payments(db: Executor, page: PageRequest, filter: { userId?: string; status?: string; matchStatus?: string; provider?: string }) {
    return toPage(await repo.paymentsPage(db, page, filter), page.limit, paymentBody);
  }

  async invoices(db: Executor, userId: string, page: PageRequest) {
    await this.assertUser(db, userId);
    return toPage(await repo.invoicesOfUser(db, userId, page), page.limit, invoiceBody);
  }

  async customers(db: Executor, userId: string, page: PageRequest) {
    await this.assertUser(db, userId);
    return toPage(await repo.customersOfUser(db, userId, page), page.limit, customerBody);
  }

  async webhookEvents(db: Executor, page: PageRequest, filter: { provider?: string; status?: string }) {
    return toPage(await repo.webhookPage(db, page, filter), page.limit, webhookEventBody);
  }

  async assertUser(db: Executor, userId: string): Promise<void> {
    if (!(await repo.userExists(db, userId))) throw errors.notFound('User', userId);
  }

  // Credit packages (service CRUD) ---------------------------------------------------------------

  async createPackage(db: Executor, b: PackageInput & { provider: ProviderName; provider_price_id: string }) {
    const row = await repo.packageInsert(db, { id: newId('creditPackage'), ...packageRow(b) });
    return creditPackageBody(row);
  }

  async getPackage(db: Executor, id: string) {
    const row = await repo.packageFind(db, id);
    if (!row) throw errors.notFound('Credit package', id);
    return creditPackageBody(row);
  }

  async updatePackage(db: Executor, id: string, b: PackageInput) {
    const row = await repo.packageUpdate(db, id, packageRow(b));
    if (!row) throw errors.notFound('Credit package', id);
    return creditPackageBody(row);
  }

  async deletePackage(db: Executor, id: string) {
    if (!(await repo.packageDelete(db, id))) throw errors.notFound('Credit package', id);
    return { id, deleted: true as const };
  }

  async packages(db: Executor, page: PageRequest) {
    return toPage(await repo.packagesPage(db, page), page.limit, creditPackageBody);
  }

  // E-mail aliases -------------------------------------------------------------------------------

  async addAlias(db: Executor, userId: string, email: string, note: string | null) {
    await this.assertUser(db, userId);
    const row = await repo.aliasInsert(db, { id: newId('emailAlias'), user_id: userId, email, note });
    if (!row) throw errors.conflict(`The e-mail ${email} is already an alias`, { field: 'email' });
    return emailAliasBody(row);
  }

  async aliases(db: Executor, userId: string, page: PageRequest) {
    await this.assertUser(db, userId);
    return toPage(await repo.aliasesOfUser(db, userId, page), page.limit, emailAliasBody);
  }

  async deleteAlias(db: Executor, id: string) {
    if (!(await repo.aliasDelete(db, id))) throw errors.notFound('E-mail alias', id);
    return { id, deleted: true as const };
  }
}

interface Purchase {
  credits: number;
  class: string;
  /** Days from the grant until the credits expire (a package's; null: never). */
  expireDays: number | null;
  packageId: string | null;
  planId: string | null;
  interval: 'monthly' | 'yearly' | null;
}

/** A price check's outcome; `purchase` is what it would buy (kept on the row even when not ok). */
type Priced = { ok: true; purchase: Purchase } | { ok: false; reason: string; purchase: Purchase };

function fromPackage(pkg: Row): Purchase {
  return {
    credits: Number(pkg['credits']),
    class: String(pkg['class']),
    expireDays: pkg['expires_in_days'] === null ? null : Number(pkg['expires_in_days']),
    packageId: String(pkg['id']),
    planId: null,
    interval: null,
  };
}

interface PackageInput {
  name?: string;
  credits?: number;
  class?: string;
  expires_in_days?: number | null;
  price_amount?: number | null;
  currency?: string | null;
  is_active?: boolean;
  metadata?: Record<string, unknown>;
}

function packageRow(b: PackageInput & { provider?: string; provider_price_id?: string }): Record<string, unknown> {
  const { metadata, ...rest } = b;
  return { ...rest, ...(metadata !== undefined ? { metadata: JSON.stringify(metadata) } : {}) };
}
