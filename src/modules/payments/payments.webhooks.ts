import type { PaymentsMode } from '../../config/config.js';
import type { Logger } from '../../core/logger.js';
import type { Db, Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { newId } from '../../lib/ids.js';
import { setAuditActor } from '../../db/request-role.js';
import type { Clawbacks } from './payments.clawbacks.js';
import { MalformedEvent, type NormalizedEvent, type PaymentAction } from './payments.js';
import type { Matcher } from './payments.matching.js';
import { type Headers, type ProviderName, type Verification, VerificationUnavailable } from './payments.provider.js';
import { providerOf, type ProviderVerifiers } from './payments.providers.js';
import type { Purchases } from './payments.purchases.js';
import { claimKey } from './payments.refs.js';
import * as repo from './payments.repository.js';
import { header } from './payments.signing.js';
import type { Subscriptions } from './payments.subscriptions.js';

export interface WebhookAnswer {
  status: number;
  body: { received: true; event_id: string; status: 'processed' | 'ignored'; outcome: string; replayed: boolean };
}

/** Actions apply in this order within an event: who the customer is, then money, then state. */
const ORDER: Record<PaymentAction['kind'], number> = { customer: 0, payment: 1, alias: 2, invoice: 3, refund: 4, dispute: 5, subscription: 6 };

/** Who applies each kind of action (the capabilities, wired by PaymentsService). */
export interface ActionHandlers {
  matcher: Matcher;
  purchases: Purchases;
  clawbacks: Clawbacks;
  subscriptions: Subscriptions;
}

/**
 * The webhook pipeline, the same for every provider: verify (the provider's plug-in, before any
 * transaction: PayPal's is an HTTP call) → normalise into actions → record the event once →
 * apply its actions in one transaction. Each provider event id is processed once, forever: the
 * webhook_events row is unique on (provider, event id) and locked for the whole processing.
 */
export class Webhooks {
  constructor(
    private readonly db: Db,
    private readonly verifiers: ProviderVerifiers,
    private readonly handlers: ActionHandlers,
    private readonly clock: () => Date,
    private readonly logger: Logger,
    /** `live`: a provider's test-mode events grant nothing (and `test` its live ones). */
    private readonly mode: PaymentsMode = 'any',
  ) {}

  async receive(provider: ProviderName, raw: Buffer, headers: Headers): Promise<WebhookAnswer> {
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
    // A test-mode payment in a live deployment (a test endpoint's secret configured beside the
    // live one) buys nothing: recorded as ignored, answered 200 so the provider stops sending it.
    const mode = plugin.modeOf?.(payload) ?? null;
    if (mode !== null && this.mode !== 'any' && mode !== this.mode && event.actions.length > 0) {
      event = { ...event, actions: [], ignored: `${mode}-mode event ignored: this deployment takes ${this.mode}-mode payments (TALLY_PAYMENTS_MODE)` };
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
        this.logger.warn({ provider, err: err.message }, 'webhook verification unavailable');
        throw errors.unavailable(`${providerOf(provider).title} signature verification is unavailable: ${err.message}`);
      }
      throw err;
    }
  }

  /**
   * Bad, missing or stale signature: 400, counted in one `rejected` row per (provider, reason),
   * without the untrusted payload.
   */
  private async reject(provider: ProviderName, signature: string | null, reason: string): Promise<never> {
    this.logger.warn({ provider, reason }, 'webhook rejected');
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
        // The audit log names the provider as the actor, and its event id as the request.
        await setAuditActor(trx, { kind: 'provider', id: provider }, `webhook:${provider}:${eventId}`);
        const row = await repo.webhookLock(trx, provider, eventId);
        if (!row) throw new Error(`webhook event ${provider}/${eventId} vanished`);
        if (row.status === 'processed' || row.status === 'ignored') {
          const status = row.status;
          return { status: 200, body: { received: true, event_id: eventId, status, outcome: row.outcome ?? '', replayed: true } };
        }
        if (parseError) throw parseError;
        await repo.webhookUpdate(trx, provider, eventId, { status: 'processing', attempts: row.attempts + 1 });
        const outcomes: string[] = [];
        const actions = [...event.actions].sort((a, b) => ORDER[a.kind] - ORDER[b.kind]);
        for (const action of actions) outcomes.push(await this.apply(trx, provider, eventId, action, payload));
        const status = actions.length === 0 ? 'ignored' : 'processed';
        const outcome = actions.length === 0 ? (event.ignored ?? `event type ${eventType} ignored`) : outcomes.join('; ');
        const body = { received: true as const, event_id: eventId, status: status as 'processed' | 'ignored', outcome: outcome.slice(0, 1000), replayed: false };
        await repo.webhookUpdate(trx, provider, eventId, {
          status,
          outcome: body.outcome,
          error: null,
          response: JSON.stringify(body),
          processed_at: this.clock(),
        });
        return { status: 200, body };
      });
    } catch (err) {
      const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      this.logger.error({ provider, eventId, eventType, err: message }, 'webhook processing failed');
      await repo.webhookFail(this.db, provider, eventId, message).catch(() => undefined);
      // A signed event Tally cannot read is bad input, not Tally's failure: 400 with the reason
      // (the row is `failed` all the same, and providers retry any non-2xx, so a fixed parser
      // still gets it). Everything else is ours or transient: 500, retried.
      if (err instanceof MalformedEvent) throw errors.invalidRequest(`${providerOf(provider).title} event ${eventId} cannot be read: ${err.message}`, { provider, event_id: eventId });
      throw errors.internal();
    }
  }

  /** One action, by whoever owns its capability; its outcome for the log. */
  private async apply(trx: Executor, provider: ProviderName, eventId: string, action: PaymentAction, payload: unknown): Promise<string> {
    const h = this.handlers;
    switch (action.kind) {
      case 'payment':
        return h.purchases.apply(trx, provider, eventId, action.payment, payload);
      case 'refund':
        return h.clawbacks.refund(trx, provider, eventId, action);
      case 'dispute':
        return h.clawbacks.dispute(trx, provider, eventId, action);
      case 'alias': {
        const key = await claimKey(trx, provider, action.providerPaymentId, action.refs);
        return `payment ${key} is also known as ${action.refs.filter((r) => r !== key).join(', ')}`;
      }
      case 'invoice':
        return h.subscriptions.invoice(trx, provider, action.invoice, payload);
      case 'subscription':
        return h.subscriptions.subscription(trx, provider, eventId, action.subscription);
      case 'customer':
        return h.matcher.linkCustomer(trx, provider, action);
    }
  }
}
