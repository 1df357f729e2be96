import type { WebhooksOutConfig } from '../../config/config.js';
import type { DomainEvent, EventSink, EventType } from '../../core/events.js';
import { DomainError, errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import { toPage } from '../../core/paging.js';
import type { Executor } from '../../db/database.js';
import type { Principal } from '../../core/principal.js';
import { elevate } from '../../db/request-role.js';
import { kyselyRunner, type RunStatement } from '../../db/statements.js';
import { newId } from '../../lib/ids.js';
import type { SecretBox } from '../../lib/secret-box.js';
import type { QueueService } from '../queue/queue.service.js';
import { DELIVER_JOB, type DeliveryOutcome, WebhookDeliverer } from './webhooks-out.deliver.js';
import {
  deliveryInsert,
  deliveryList,
  deliveryLoad,
  deliverySetStatus,
  endpointCountOfWorkspace,
  endpointDelete,
  endpointFind,
  endpointInsert,
  endpointList,
  type EndpointPatch,
  endpointUpdate,
  messageInsert,
  outboxWrite,
} from './webhooks-out.repository.js';
import { newSigningSecret } from './webhooks-out.signing.js';
import type { WebhookTransport } from './webhooks-out.transport.js';
import { deliveryToApi, endpointAad, type EndpointRow, endpointToApi, PAYLOAD_VERSION } from './webhooks-out.js';

/** Who may manage a workspace's endpoints (the workspaces module: owners and admins). */
export interface WorkspaceManagers {
  assertManager(db: Executor, principal: Principal, workspaceId: string): Promise<void>;
}

export interface EndpointInput {
  url: string;
  event_types: string[];
  description?: string | null;
  workspace_id?: string | null;
}

/**
 * Outgoing webhooks (docs/webhooks-out.md). `emit` is the EventSink other modules report to, in
 * their own transaction: it writes the message and one delivery per endpoint that wants it, each
 * with its queue job — so an event exists exactly when its change commits, and goes out at least once.
 */
export class WebhooksOutService implements EventSink {
  private readonly deliverer: WebhookDeliverer;

  constructor(
    private readonly box: SecretBox,
    private readonly queue: QueueService,
    transport: WebhookTransport,
    private readonly config: WebhooksOutConfig,
    private readonly now: () => Date,
    /** The database schema Tally's tables live in (the outbox statement names them). */
    private readonly schema: string,
    private readonly managers: WorkspaceManagers,
  ) {
    this.deliverer = new WebhookDeliverer(box, transport, config, now);
    queue.register(DELIVER_JOB, async (job, ctx) => {
      const id = (job.input as { delivery_id?: unknown }).delivery_id;
      if (typeof id !== 'string') throw new Error(`${DELIVER_JOB}: no delivery_id`);
      const outcome: DeliveryOutcome = await this.deliverer.attempt(ctx.db, id, job.attempts >= job.maxAttempts);
      this.deliveryObserver?.(outcome.status);
      // Thrown, the queue retries with backoff; returned, the delivery is settled.
      if (outcome.retry) throw new Error(outcome.error ?? 'delivery failed');
      return outcome;
    });
  }

  private deliveryObserver: ((outcome: DeliveryOutcome['status']) => void) | null = null;

  /** Told every delivery attempt's outcome (the composition root wires GET /metrics here). */
  observeDeliveries(observer: (outcome: DeliveryOutcome['status']) => void): void {
    this.deliveryObserver = observer;
  }

  async emit(trx: Executor, event: DomainEvent): Promise<void> {
    await this.record(kyselyRunner(trx), [event]);
  }

  /**
   * Events in the caller's transaction, in one statement (webhooks-out.repository.ts `outboxWrite`):
   * matched to the endpoints that want them, each with its deliveries and their queue jobs.
   */
  async record(run: RunStatement, events: readonly DomainEvent[]): Promise<void> {
    if (events.length === 0) return;
    const timestamp = this.now();
    const rows = events.map((event) => {
      const id = newId('webhookMessage');
      return {
        id,
        type: event.type,
        user_id: event.userId ?? null,
        workspace_id: event.workspaceId ?? null,
        payload: { id, type: event.type, version: PAYLOAD_VERSION, timestamp: timestamp.toISOString(), data: event.data },
      };
    });
    await outboxWrite(run, this.schema, rows, { type: DELIVER_JOB, runAt: timestamp, maxAttempts: this.config.maxAttempts });
  }

  private async write(trx: Executor, event: DomainEvent, endpointIds: string[]): Promise<string> {
    const id = newId('webhookMessage');
    const at = this.now();
    const payload = { id, type: event.type, version: PAYLOAD_VERSION, timestamp: at.toISOString(), data: event.data };
    await messageInsert(trx, { id, type: event.type, user_id: event.userId ?? null, workspace_id: event.workspaceId ?? null, payload });
    for (const endpointId of endpointIds) {
      const deliveryId = newId('webhookDelivery');
      await deliveryInsert(trx, { id: deliveryId, message_id: id, endpoint_id: endpointId });
      await this.enqueue(trx, deliveryId, 0);
    }
    return id;
  }

  private enqueue(trx: Executor, deliveryId: string, round: number) {
    return this.queue.enqueue(trx, { type: DELIVER_JOB, input: { delivery_id: deliveryId }, maxAttempts: this.config.maxAttempts, dedupeKey: `webhook:${deliveryId}:${round}` });
  }

  /**
   * Access (docs/webhooks-out.md, "Endpoints"): the service manages every endpoint; a workspace's
   * owner or admin manages that workspace's endpoints only (end users hold no grant on these
   * tables: once the check passed, the operation runs as the owner, like `elevate` elsewhere).
   */
  private async asManagerOf(db: Executor, principal: Principal, workspaceId: string | null | undefined): Promise<void> {
    if (principal.kind === 'service') return;
    if (!workspaceId) throw errors.forbidden('Users manage only the webhook endpoints of their workspaces: pass workspace_id');
    await this.managers.assertManager(db, principal, workspaceId);
    await elevate(db);
  }

  /** The endpoint, if the caller may manage it (a user: only a workspace's endpoint, as its manager; else 404). */
  private async endpointFor(db: Executor, principal: Principal, id: string, lock = false): Promise<EndpointRow> {
    if (principal.kind !== 'service') await elevate(db);
    const row = must(await endpointFind(db, id, lock), id);
    if (principal.kind !== 'service') {
      if (!row.workspace_id) throw errors.notFound('Webhook endpoint', id);
      await this.managers.assertManager(db, principal, row.workspace_id);
    }
    return row;
  }

  async createEndpoint(db: Executor, principal: Principal, input: EndpointInput) {
    await this.asManagerOf(db, principal, input.workspace_id);
    const url = this.checkUrl(input.url);
    // Every event fans out to every endpoint that wants it: a workspace's managers (end users) get
    // a few; the operator is not bounded.
    if (principal.kind !== 'service' && input.workspace_id && (await endpointCountOfWorkspace(db, input.workspace_id)) >= MAX_WORKSPACE_ENDPOINTS) {
      throw errors.invalidState(`A workspace has at most ${MAX_WORKSPACE_ENDPOINTS} webhook endpoints; delete one first`, { limit: MAX_WORKSPACE_ENDPOINTS });
    }
    const id = newId('webhookEndpoint');
    const secret = newSigningSecret();
    const row = await endpointInsert(db, {
      id,
      url,
      workspace_id: input.workspace_id ?? null,
      description: input.description ?? null,
      event_types: normaliseTypes(input.event_types),
      secret_enc: this.box.seal(secret, endpointAad(id, 'current')),
      key_id: this.box.keyId,
    });
    return { ...endpointToApi(row), secret };
  }

  async getEndpoint(db: Executor, principal: Principal, id: string) {
    return endpointToApi(await this.endpointFor(db, principal, id));
  }

  async listEndpoints(db: Executor, principal: Principal, page: PageRequest, workspaceId?: string) {
    await this.asManagerOf(db, principal, workspaceId);
    return toPage(await endpointList(db, page, workspaceId), page.limit, endpointToApi);
  }

  /** Re-enabling (`is_active: true`) clears the failure streak; a new URL is checked again. */
  async updateEndpoint(db: Executor, principal: Principal, id: string, patch: { url?: string; description?: string | null; event_types?: string[]; is_active?: boolean }) {
    await this.endpointFor(db, principal, id, true);
    const set: EndpointPatch = {};
    if (patch.url !== undefined) set.url = this.checkUrl(patch.url);
    if (patch.description !== undefined) set.description = patch.description;
    if (patch.event_types !== undefined) set.event_types = normaliseTypes(patch.event_types);
    if (patch.is_active !== undefined) {
      set.is_active = patch.is_active;
      set.disabled_reason = patch.is_active ? null : 'disabled by the operator';
      if (patch.is_active) set.failing_since = null;
    }
    return endpointToApi(must(await endpointUpdate(db, id, set), id));
  }

  async deleteEndpoint(db: Executor, principal: Principal, id: string): Promise<void> {
    await this.endpointFor(db, principal, id, true);
    if (!(await endpointDelete(db, id))) throw errors.notFound('Webhook endpoint', id);
  }

  /**
   * A new signing secret, shown once. The previous one keeps signing (both signatures are sent)
   * for `graceSeconds`, so receivers can switch without dropping a delivery.
   */
  async rotateSecret(db: Executor, principal: Principal, id: string, graceSeconds = this.config.rotationGraceSeconds) {
    const row = await this.endpointFor(db, principal, id, true);
    const current = this.box.open(row.secret_enc, endpointAad(id, 'current'));
    if (current === null) throw errors.invalidState('The endpoint secret cannot be opened with the configured encryption keys', { id });
    const secret = newSigningSecret();
    const updated = await endpointUpdate(db, id, {
      secret_enc: this.box.seal(secret, endpointAad(id, 'current')),
      previous_secret_enc: graceSeconds > 0 ? this.box.seal(current, endpointAad(id, 'previous')) : null,
      previous_secret_expires_at: graceSeconds > 0 ? new Date(this.now().getTime() + graceSeconds * 1000) : null,
      key_id: this.box.keyId,
    });
    return { ...endpointToApi(must(updated, id)), secret };
  }

  /** Sends a `webhook.test` event to this endpoint only (even if it does not subscribe to it). */
  async sendTest(db: Executor, principal: Principal, id: string) {
    const row = await this.endpointFor(db, principal, id);
    if (!row.is_active) throw errors.invalidState('The endpoint is disabled; enable it first', { is_active: false });
    const messageId = await this.write(db, { type: 'webhook.test', data: { endpoint_id: id } }, [id]);
    return { message_id: messageId };
  }

  async listDeliveries(db: Executor, principal: Principal, endpointId: string, page: PageRequest, status?: string) {
    await this.endpointFor(db, principal, endpointId);
    return toPage(await deliveryList(db, endpointId, page, status), page.limit, deliveryToApi);
  }

  /** Sends a delivery again (a failed or a succeeded one: replay), as a new round of attempts. */
  async retryDelivery(db: Executor, principal: Principal, deliveryId: string) {
    if (principal.kind !== 'service') await elevate(db);
    const d = await deliveryLoad(db, deliveryId);
    if (!d) throw errors.notFound('Webhook delivery', deliveryId);
    const endpoint = await this.endpointFor(db, principal, d.endpoint_id).catch((err: unknown) => {
      // Someone else's delivery is not found, whatever the reason.
      throw err instanceof DomainError && err.code === 'not_found' ? errors.notFound('Webhook delivery', deliveryId) : err;
    });
    if (d.status === 'pending') throw errors.invalidState('The delivery is still being attempted', { status: d.status });
    if (!endpoint.is_active) throw errors.invalidState('The endpoint is disabled; enable it first', { is_active: false });
    await deliverySetStatus(db, deliveryId, 'pending');
    await this.enqueue(db, deliveryId, d.attempts);
    return deliveryToApi({ ...must(await deliveryLoad(db, deliveryId), deliveryId) });
  }

  private checkUrl(raw: string): string {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw errors.invalidRequest('url must be an absolute http(s) URL', { field: 'url' });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw errors.invalidRequest('url must be http(s)', { field: 'url' });
    if (url.username || url.password) throw errors.invalidRequest('url must not carry credentials', { field: 'url' });
    return url.toString();
  }
}

function must(row: EndpointRow | undefined, id: string): EndpointRow;
function must<T>(row: T | undefined, id: string): T;
function must<T>(row: T | undefined, id: string): T {
  if (!row) throw errors.notFound('Webhook endpoint', id);
  return row;
}

/** Endpoints one workspace may have (its owners and admins are end users). */
export const MAX_WORKSPACE_ENDPOINTS = 10;

/** `*` alone means every type; otherwise the listed ones, once each, in catalogue order. */
function normaliseTypes(types: string[]): EventType[] | ['*'] {
  if (types.includes('*')) return ['*'];
  return [...new Set(types)] as EventType[];
}
