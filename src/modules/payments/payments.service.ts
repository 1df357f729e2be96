import type { Logger } from '../../core/logger.js';
import type { PaymentsConfig } from '../../config/config.js';
import type { Database, Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { type EventSink, NO_EVENTS } from '../../core/events.js';
import { type PageRequest, toPage } from '../../core/paging.js';
import { newId } from '../../lib/ids.js';
import type { Ledger } from '../credits/credits.port.js';
import { CheckoutService } from './checkout/checkout.service.js';
import { SignedCheckouts } from './checkout/checkout.verify.js';
import { Catalogue } from './payments.catalogue.js';
import { Clawbacks } from './payments.clawbacks.js';
import { customerBody, emailAliasBody, invoiceBody, paymentBody, webhookEventBody } from './payments.js';
import { PaymentsLedger } from './payments.ledger.js';
import { Matcher } from './payments.matching.js';
import type { SubscriptionPort } from './payments.ports.js';
import { ProviderVerifiers } from './payments.providers.js';
import { Purchases } from './payments.purchases.js';
import { type CheckoutReference, signReference } from './payments.reference.js';
import * as repo from './payments.repository.js';
import { Subscriptions } from './payments.subscriptions.js';
import { Webhooks } from './payments.webhooks.js';

export interface PaymentsDeps {
  database: Database;
  credits: Ledger;
  /** Billing's port (null until billing is wired in: subscription events are then logged only). */
  subscriptions: SubscriptionPort | null;
  config: PaymentsConfig | undefined;
  /** Keys checkout references are signed with (the first) and verified with (all): payments.reference.ts. */
  referenceKeys: readonly Buffer[];
  /** Keys checkouts are signed with (the first) and verified with (all): checkout/checkout.signing.ts. */
  checkoutKeys: readonly Buffer[];
  clock: () => Date;
  logger: Logger;
  /** Where payment events go (payment.succeeded|refunded|disputed|unmatched; docs/webhooks-out.md). */
  events?: EventSink;
}

/**
 * Payments, composed from its capabilities (docs/payments.md, "Code map"): `webhooks` (receive,
 * verify, record once, dispatch), `purchases` (record, match, price, grant; the unmatched queue),
 * `catalogue` (credit packages, plans, the credit price); matching, clawbacks, subscriptions and
 * the ledger calls behind them. What is left here are the reads, checkout references and aliases
 * — small service-layer operations the routes call directly.
 */
export class PaymentsService {
  readonly webhooks: Webhooks;
  readonly purchases: Purchases;
  readonly catalogue: Catalogue;
  /** Checkouts Tally creates and signs (POST /v1/checkout). */
  readonly checkouts: CheckoutService;

  constructor(private readonly deps: PaymentsDeps) {
    const { database, config, clock } = deps;
    const ledger = new PaymentsLedger(deps.credits, clock);
    const matcher = new Matcher(deps.referenceKeys, clock, config?.unsignedUserIds ?? true);
    const subscriptions = new Subscriptions(matcher, deps.subscriptions);
    this.catalogue = new Catalogue(config?.creditPrice ?? null);
    const events = deps.events ?? NO_EVENTS;
    const signed = new SignedCheckouts(deps.checkoutKeys, clock);
    this.purchases = new Purchases(database.db, matcher, this.catalogue, ledger, subscriptions, signed, clock, events);
    this.checkouts = new CheckoutService(database.db, deps.checkoutKeys, config?.checkout, clock, deps.logger);
    const clawbacks = new Clawbacks(ledger, subscriptions, clock, events);
    const verifiers = new ProviderVerifiers(config, clock);
    this.webhooks = new Webhooks(database.db, verifiers, { matcher, purchases: this.purchases, clawbacks, subscriptions }, clock, deps.logger, config?.mode ?? 'any');
  }

  /** Signs a checkout reference for a user (and optionally a package or plan): docs/payments.md. */
  async createReference(db: Executor, b: { user_id: string; package_id?: string; plan_id?: string; expires_in_seconds?: number }) {
    await this.assertUser(db, b.user_id);
    if (b.package_id && b.plan_id) throw errors.invalidRequest('Name a package or a plan, not both', { field: 'plan_id' });
    if (b.package_id) {
      const pkg = await repo.packageFind(db, b.package_id);
      if (!pkg) throw errors.notFound('Credit package', b.package_id);
      if (!pkg.is_active) throw errors.invalidState(`Credit package ${b.package_id} is not active`);
    }
    if (b.plan_id && !(await repo.planFind(db, b.plan_id))) throw errors.notFound('Plan', b.plan_id);
    const key = this.deps.referenceKeys[0];
    if (!key) throw errors.unavailable('No key to sign checkout references with');
    const expiresAt = new Date(Math.floor(this.deps.clock().getTime() / 1000) * 1000 + (b.expires_in_seconds ?? 86_400) * 1000);
    const ref: CheckoutReference = { userId: b.user_id, packageId: b.package_id ?? null, planId: b.plan_id ?? null, expiresAt };
    return { reference: signReference(key, ref), user_id: ref.userId, package_id: ref.packageId, plan_id: ref.planId, expires_at: expiresAt.toISOString() };
  }

  // Reads --------------------------------------------------------------------------------------

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

  // E-mail aliases: other addresses a user pays with, trusted for matching (only the service adds them).

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
