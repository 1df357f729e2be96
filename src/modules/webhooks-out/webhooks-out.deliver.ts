import type { Db } from '../../db/database.js';
import type { SecretBox } from '../../lib/secret-box.js';
import { deliveryLoad, deliveryRecordAttempt, endpointFind, endpointUpdate } from './webhooks-out.repository.js';
import type { WebhooksOutConfig } from '../../config/config.js';
import { signedHeaders } from './webhooks-out.signing.js';
import { endpointAad } from './webhooks-out.js';
import { RefusedAddress, type WebhookTransport } from './webhooks-out.transport.js';

export const DELIVER_JOB = 'webhook.deliver';

export interface DeliveryOutcome {
  status: 'succeeded' | 'failed' | 'canceled' | 'pending';
  /** True: the queue tries again later (with its backoff). */
  retry: boolean;
  error?: string;
}

/**
 * One attempt at one delivery. Runs outside any transaction while it waits on the receiver; each
 * write is its own statement. At least once: a crash after the receiver answered but before the
 * row is marked sends again, with the same `webhook-id` for the receiver to dedupe.
 */
export class WebhookDeliverer {
  constructor(
    private readonly box: SecretBox,
    private readonly transport: WebhookTransport,
    private readonly config: WebhooksOutConfig,
    private readonly now: () => Date,
  ) {}

  async attempt(db: Db, deliveryId: string, lastAttempt: boolean): Promise<DeliveryOutcome> {
    const d = await deliveryLoad(db, deliveryId);
    if (!d || d.status !== 'pending') return { status: (d?.status as DeliveryOutcome['status']) ?? 'canceled', retry: false };
    const endpoint = await endpointFind(db, d.endpoint_id);
    const at = this.now();
    if (!endpoint?.is_active) {
      await deliveryRecordAttempt(db, d.id, { status: 'canceled', statusCode: null, error: 'the endpoint is disabled', response: null, at });
      return { status: 'canceled', retry: false };
    }
    const secrets = [this.box.open(endpoint.secret_enc, endpointAad(endpoint.id, 'current'))];
    if (endpoint.previous_secret_enc && endpoint.previous_secret_expires_at && endpoint.previous_secret_expires_at > at) {
      secrets.push(this.box.open(endpoint.previous_secret_enc, endpointAad(endpoint.id, 'previous')));
    }
    const usable = secrets.filter((s): s is string => s !== null);
    if (usable.length === 0) return this.fail(db, d.id, endpoint.id, endpoint.failing_since, at, null, 'the signing secret cannot be opened with the configured encryption keys', null, lastAttempt);
    const body = JSON.stringify(d.payload);
    let answer: { status: number; body: string };
    try {
      answer = await this.transport.post(endpoint.url, signedHeaders(usable, d.message_id, at, body), body);
    } catch (err) {
      const refused = err instanceof RefusedAddress || (err as { cause?: unknown }).cause instanceof RefusedAddress;
      const message = refused ? `refused: ${(err as Error).message} (TALLY_WEBHOOKS_ALLOW_PRIVATE)` : `no answer: ${(err as Error).message}`;
      return this.fail(db, d.id, endpoint.id, endpoint.failing_since, at, null, message, null, lastAttempt);
    }
    if (answer.status >= 200 && answer.status < 300) {
      await deliveryRecordAttempt(db, d.id, { status: 'succeeded', statusCode: answer.status, error: null, response: answer.body, at });
      if (endpoint.failing_since) await endpointUpdate(db, endpoint.id, { failing_since: null });
      return { status: 'succeeded', retry: false };
    }
    return this.fail(db, d.id, endpoint.id, endpoint.failing_since, at, answer.status, `HTTP ${answer.status}`, answer.body, lastAttempt);
  }

  /** A failed attempt: logged; the endpoint's failure streak starts or, past the window, disables it. */
  private async fail(db: Db, deliveryId: string, endpointId: string, failingSince: Date | null, at: Date, statusCode: number | null, error: string, response: string | null, lastAttempt: boolean): Promise<DeliveryOutcome> {
    const since = failingSince ?? at;
    if (!failingSince) await endpointUpdate(db, endpointId, { failing_since: at });
    const disable = at.getTime() - since.getTime() >= this.config.disableAfterMs;
    if (disable) {
      await endpointUpdate(db, endpointId, { is_active: false, disabled_reason: `failing since ${since.toISOString()}: ${error}`.slice(0, 500) });
    }
    const final = lastAttempt || disable;
    await deliveryRecordAttempt(db, deliveryId, { status: final ? 'failed' : 'pending', statusCode, error, response, at });
    return { status: final ? 'failed' : 'pending', retry: !final, error };
  }
}
