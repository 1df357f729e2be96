import { sql } from 'kysely';
import type { Db, Executor } from '../../db/database.js';
import { DomainError, errors } from '../../core/errors.js';
import { requestHash } from '../idempotency/idempotency.js';
import { API_KEY_PREFIX } from '../api-keys/api-keys.scopes.js';
import { costModelFind } from '../billing/billing.catalog.repository.js';
import type { Owner } from '../credits/credits.port.js';
import type { GatewayConfig } from '../../config/config.js';
import { modelMatches, NO_TOKENS, type Tokens, type UsageSource } from './gateway.js';
import type { GatewayLedger } from './gateway.ledger.js';
import { costMicros, holdCredits, inputBoundOf, maxCostMicros, type ModelPrice, priceMetric, priceOf } from './gateway.pricing.js';
import type { KeyResolver } from '../api-keys/api-keys.resolver.js';
import { hasScope } from '../../core/principal.js';
import { must } from '../../lib/must.js';
import { carryAddTotal, pricedModels, type RequestInsert, requestFind, requestFindByKey, requestInsert, requestInsertMany, requestLockMany, requestSettleMany, requestsRenew, requestsStale } from './gateway.repository.js';
import { GroupCommit, type ItemOutcome } from '../../lib/group-commit.js';
import type { Candidate, UpstreamRouter } from './gateway.router.js';
import type { Attempt, UpstreamClient } from './gateway.upstream-call.js';
import { SseSplitter, StreamUsage, usageOfBody, type Wire } from './gateway.wire.js';
import { boundOf } from './gateway.bounds.js';
import { assertRelayable, withStandardTier } from './gateway.relayed.js';
import { admit, assertModelAllowed, counted, keyNowAllows, type KeyLimits, NO_LIMITS } from './gateway.key-limits.js';
import { keySpent, keysLiveNow, keysLiveNowWithLockWait, keyWindowTrueUp } from './gateway.key-limits.repository.js';

/** The relayed endpoints: which wire, which upstream path. */
export const ENDPOINTS = {
  'openai.chat': { wire: 'openai', path: '/chat/completions', label: 'chat.completions' },
  'openai.embeddings': { wire: 'openai', path: '/embeddings', label: 'embeddings' },
  'anthropic.messages': { wire: 'anthropic', path: '/v1/messages', label: 'messages' },
} as const satisfies Record<string, { wire: Wire; path: string; label: string }>;
export type EndpointName = keyof typeof ENDPOINTS;

export interface RelayRequest {
  endpoint: EndpointName;
  /** The `tly_` key (Bearer or x-api-key). */
  apiKey: string | null;
  body: unknown;
  /** Size of the body as received (the input-token bound). */
  rawBytes: number;
  idempotencyKey: string | null;
  /** The x-request-id of the response: the usage record's id. */
  requestId: string;
  /** Provider headers passed through (anthropic-version, anthropic-beta). */
  forward: Record<string, string>;
}

/**
 * Where a stream goes. `start` is called once, with the first event: until then nothing has reached
 * the client and another upstream may still be tried. `write` answers false once the client left.
 */
export interface StreamSink {
  start(headers: Record<string, string>): void;
  write(chunk: string): boolean;
  end(): void;
  readonly closed: boolean;
}

export type RelayAnswer =
  | { kind: 'json'; status: number; body: string; headers: Record<string, string>; replayed?: boolean; settled: Promise<void> }
  | { kind: 'streamed'; settled: Promise<void> };

interface Caller {
  userId: string;
  workspaceId: string | null;
  keyId: string;
  owner: Owner;
  limits: KeyLimits;
}

interface Open {
  caller: Caller;
  model: string;
  price: ModelPrice;
  holdId: string;
  held: number;
  stream: boolean;
  started: number;
  /** The media parts' input tokens the hold counted (images, files): part of any input estimate. */
  mediaTokens: number;
}

interface Settlement {
  status: 'completed' | 'failed' | 'aborted';
  httpStatus: number | null;
  upstreamId: string | null;
  attempts: number;
  tokens: Tokens;
  source: UsageSource;
  ttftMs: number | null;
  error: string | null;
  response: string | null;
}

/** A hold outlives any request by far: the reaper settles the few a crash leaves (docs/gateway.md). */
const HOLD_SECONDS = 24 * 3600;
const PRICE_TTL_MS = 1_000;
const ZERO_PRICE: ModelPrice = { metric: '', input: 0n, cachedInput: 0n, cacheWrite: 0n, cacheWrite1h: null, output: 0n, reasoning: 0n, requestFee: 0n, maxOutputTokens: 0, maxTokensPerImage: null, maxTokensPerFile: null };

/**
 * The relay (issue 14): authenticate the key, price the model, hold the request's maximum cost and
 * record it — one transaction, before any byte goes upstream — then call upstreams in the router's
 * order (retrying only before the first byte reaches the client), pass the answer through, and
 * settle exactly once: capture the cost of the provider's own usage, give back the rest.
 *
 * This is an HTTP relay, so upstream statuses are its domain: it answers the upstream's status and
 * body as they came. Its own refusals are DomainErrors the route renders in the client's wire format.
 */
export class RelayService {
  private readonly prices = new Map<string, { at: number; price: ModelPrice | string }>();
  /** This process's requests in flight, whose lease it renews until they settle. */
  private readonly leased = new Set<string>();
  private renewer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Db,
    /** The schema Tally's tables live in (set-based statements name it: gateway.repository.ts). */
    private readonly schema: string,
    private readonly ledger: GatewayLedger,
    private readonly router: UpstreamRouter,
    private readonly upstreams: UpstreamClient,
    private readonly settings: GatewayConfig,
    private readonly now: () => Date,
    private readonly onSettleError: (err: unknown, requestId: string) => void,
    /** The API-key lookup the Authenticator shares (one query per request; uses counted apart). */
    private readonly keys: KeyResolver,
    /** Told when a batch failed and its requests ran again one by one (a warning: nothing is lost). */
    private readonly onBatchError: (err: unknown, batch: string) => void = () => {},
  ) {}

  /**
   * Opens and settlements are group-committed (docs/gateway.md, "Batched opens and settlements"):
   * under load, the requests that arrive while a transaction runs share the next one — one ledger
   * batch and one statement per table for all of them — instead of queueing one by one on their
   * account's row lock. Idle, a request goes at once, alone.
   */
  private readonly opens = new GroupCommit<OpenItem, string>((items) => this.openBatch(items), (item) => this.openOne(item), BATCHING, (err, n) => this.onBatchError(err, `${n} opens`));
  private readonly settles = new GroupCommit<SettleItem, void>((items) => this.settleBatch(items), (item) => this.settleOne(item), BATCHING, (err, n) => this.onBatchError(err, `${n} settlements`));

  /** How the group commits have gone (tests, metrics). */
  get batching(): { opens: GroupCommit<OpenItem, string>['stats']; settles: GroupCommit<SettleItem, void>['stats'] } {
    return { opens: this.opens.stats, settles: this.settles.stats };
  }

  /** Waits for the opens and settlements queued or running (tests, shutdown). */
  async drained(): Promise<void> {
    await Promise.all([this.opens.drained(), this.settles.drained()]);
  }

  /**
   * The caller of a `tly_` key that holds the `gateway` scope (or `*`, which holds every scope): a
   * key made for other routes (credits:read, storage:write …) may not spend through the gateway.
   * Refused here, before any price, hold or upstream call (docs/gateway.md, "Keys and scopes").
   */
  async authenticate(apiKey: string | null): Promise<Caller> {
    if (!apiKey) throw errors.unauthenticated('Send your Tally API key (tly_…) as the bearer token or x-api-key');
    if (!apiKey.startsWith(API_KEY_PREFIX) || apiKey.length > 512) throw errors.unauthenticated('API key is invalid, revoked or expired');
    const { principal, workspaceId, limits } = await this.keys.resolve(apiKey);
    if (!hasScope(principal, 'gateway')) throw errors.forbidden('This API key lacks the "gateway" scope the gateway needs');
    return {
      userId: principal.userId,
      workspaceId,
      keyId: must(principal.keyId, 'an API key principal names its key'),
      owner: workspaceId ? { workspaceId } : { userId: principal.userId },
      limits,
    };
  }

  /** `GET /gateway/v1/models`: priced models that an active upstream of the wire serves. */
  async models(apiKey: string | null, wire: Wire): Promise<{ id: string; created: number }[]> {
    const caller = await this.authenticate(apiKey);
    const rows = await pricedModels(this.db);
    const out: { id: string; created: number }[] = [];
    for (const r of rows) {
      const model = r.metric.slice('llm:'.length);
      if (caller.limits.models !== null && !modelMatches(model, caller.limits.models)) continue;
      if ((await this.router.candidates(wire, model, { peek: true })).length > 0) out.push({ id: model, created: Math.floor(r.created_at.getTime() / 1000) });
    }
    return out;
  }

  async relay(req: RelayRequest, sink: StreamSink | null): Promise<RelayAnswer> {
    const started = performance.now();
    const ep = ENDPOINTS[req.endpoint];
    const caller = await this.authenticate(req.apiKey);
    const body = asObject(req.body);
    const model = body['model'];
    if (typeof model !== 'string' || model.length === 0 || model.length > 128) throw errors.invalidRequest('model is required', { field: 'body.model' });
    const stream = body['stream'] === true;
    if (stream && ep.label === 'embeddings') throw errors.invalidRequest('embeddings do not stream', { field: 'body.stream' });
    if (stream && !sink) throw errors.internal();
    assertRelayable(ep.wire, ep.label === 'embeddings', body, req.forward);
    assertModelAllowed(caller.limits, model);
    const price = await this.priceFor(model);
    const hash = requestHash(`gateway.${req.endpoint}`, {}, body);

    if (req.idempotencyKey) {
      const replay = await this.replayOf(caller, req.idempotencyKey, hash);
      if (replay) return replay;
    }

    // The maximum cost: every byte of the body an input token, max_tokens (or the model's limit) out.
    const messages = Array.isArray(body['messages']) ? body['messages'].length : Array.isArray(body['input']) ? body['input'].length : 1;
    const embeddings = ep.label === 'embeddings';
    const clientMax = embeddings ? null : clientMaxOutputOf(ep.wire, body);
    const maxOut = embeddings ? 0 : (clientMax ?? price.maxOutputTokens);
    const bound = boundOf(ep.wire, embeddings, body, price, maxOut, clientMax !== null);
    const held = holdCredits(maxCostMicros(price, inputBoundOf(req.rawBytes, messages) + bound.mediaTokens, maxOut * bound.choices, bound.oneHourCache));
    // What the key's tokens-per-minute window reserves: an estimate (about four bytes a token), trued up at settlement.
    const reserve = Math.ceil(req.rawBytes / 4) + bound.mediaTokens + maxOut * bound.choices;
    const holdId = await this.open(caller, req, ep.label, model, stream, held, hash, reserve, bound.mediaTokens);
    const open: Open = { caller, model, price, holdId, held, stream, started, mediaTokens: bound.mediaTokens };

    let upstreamBody = body;
    // The output the hold was taken for is the most the upstream may produce.
    if (bound.injectMaxTokens !== null) upstreamBody = { ...body, [ep.wire === 'openai' ? 'max_completion_tokens' : 'max_tokens']: bound.injectMaxTokens };
    // OpenAI has two names for one limit, and which one a provider obeys when both come is its
    // choice: the hold is for the larger, and every name the client used is sent as that (G2).
    if (ep.wire === 'openai' && clientMax !== null) {
      upstreamBody = { ...upstreamBody };
      for (const k of OPENAI_MAX_OUTPUT) if (body[k] !== undefined && body[k] !== null) upstreamBody[k] = clientMax;
    }
    const clientAskedUsage = asObjectOrNull(body['stream_options'])?.['include_usage'] === true;
    if (stream && ep.wire === 'openai') upstreamBody = { ...upstreamBody, stream_options: { ...(asObjectOrNull(body['stream_options']) ?? {}), include_usage: true } };
    const plain = JSON.stringify(upstreamBody);
    const tiered = withStandardTier(ep.wire, embeddings, upstreamBody);
    const payload: Payload = { plain, standardTier: tiered ? JSON.stringify(tiered) : plain };

    // Whatever goes wrong from here on, the hold is settled: nothing reached the client → 0; a
    // stream already started → the estimate (the upstream may have billed it).
    let reachedClient = false;
    const watched: StreamSink | null = sink && {
      start: (h) => {
        reachedClient = true;
        sink.start(h);
      },
      write: (c) => sink.write(c),
      end: () => sink.end(),
      get closed() {
        return sink.closed;
      },
    };
    try {
      return await this.attempts(req, open, ep, model, payload, stream, clientAskedUsage, watched);
    } catch (err) {
      const reason = `internal error: ${(err as Error).message || String(err)}`;
      const settlement = reachedClient
        ? { status: 'failed' as const, httpStatus: 200, upstreamId: null, attempts: 1, tokens: estimate(req.rawBytes, 0, open.mediaTokens), source: 'estimated' as const, ttftMs: null, error: reason, response: null }
        : failed(0, null, null, reason);
      await this.settle(req.requestId, open, settlement);
      throw err;
    }
  }

  /** Tries the router's upstreams in order until one answers (see relay). */
  private async attempts(req: RelayRequest, open: Open, ep: (typeof ENDPOINTS)[EndpointName], model: string, payload: Payload, stream: boolean, clientAskedUsage: boolean, sink: StreamSink | null): Promise<RelayAnswer> {
    const candidates = await this.router.candidates(ep.wire, model);
    const progress = { called: 0 };
    try {
      return await this.tryInOrder(req, open, ep, model, payload, stream, clientAskedUsage, sink, candidates, progress);
    } finally {
      // The candidates never called free their half-open probes (attacker review F2); the called
      // ones settled theirs by their outcome.
      for (const c of candidates.slice(progress.called)) this.router.release(c.id);
    }
  }

  private async tryInOrder(req: RelayRequest, open: Open, ep: (typeof ENDPOINTS)[EndpointName], model: string, payload: Payload, stream: boolean, clientAskedUsage: boolean, sink: StreamSink | null, candidates: Candidate[], progress: { called: number }): Promise<RelayAnswer> {
    let last: Extract<Attempt, { kind: 'failed' }> | null = null;
    for (const upstream of candidates) {
      const attempts = ++progress.called;
      const attempt = await this.upstreams.call(upstream, ep.path, upstream.standardTier ? payload.standardTier : payload.plain, req.forward);
      if (attempt.kind === 'failed') {
        // A JSON answer's headers come once it is all generated, so its time depends on the length
        // the client asked for: a client must not be able to open an upstream's circuit by asking
        // for long answers (attacker review F3). Streams send headers at once: their timeout counts.
        if (attempt.cut && attempt.slow && !stream) this.router.release(upstream.id);
        else this.router.failed(upstream.id, attempt.failure);
        // The upstream took the whole request and then went quiet: it may be billing for it, so it
        // goes nowhere else (one request, one upstream bill) and is settled like a cut stream.
        if (attempt.cut) return this.cut(req, open, upstream.id, attempts, null, attempt.failure.error);
        last = attempt;
        continue;
      }
      if (attempt.status >= 300) {
        // The upstream answered this request with its own refusal: passed through, costs nothing.
        this.router.succeeded(upstream.id);
        const text = await attempt.body.text();
        const settled = this.settle(req.requestId, open, { ...failed(attempts, upstream.id, attempt.status, `upstream answered ${attempt.status}`) });
        return { kind: 'json', status: attempt.status, body: text, headers: jsonHeaders(attempt.headers), settled };
      }
      if (!stream) {
        let text: string;
        try {
          text = await attempt.body.text();
        } catch (err) {
          // The answer started and broke off (idle timeout, reset): the request was taken and may be billed.
          const error = (err as Error).message || String(err);
          this.router.failed(upstream.id, { kind: 'retryable', error, retryAfterMs: null });
          return this.cut(req, open, upstream.id, attempts, attempt.status, error);
        }
        this.router.succeeded(upstream.id);
        const usage = usageOfBody(ep.wire, safeJson(text), ep.label !== 'embeddings');
        const settled = this.settle(req.requestId, open, {
          status: 'completed',
          httpStatus: attempt.status,
          upstreamId: upstream.id,
          attempts,
          tokens: usage ?? estimate(req.rawBytes, text.length, open.mediaTokens),
          source: usage ? 'provider' : 'estimated',
          ttftMs: null,
          error: usage ? null : 'the upstream reported no usage',
          response: req.idempotencyKey ? text : null,
        });
        return { kind: 'json', status: attempt.status, body: text, headers: jsonHeaders(attempt.headers), settled };
      }
      const streamed = await this.pipe(req, open, ep.wire, upstream, attempt, attempts, clientAskedUsage, sink as StreamSink);
      if ('cut' in streamed) return this.cut(req, open, upstream.id, attempts, attempt.status, `the stream broke before its first event: ${streamed.cut}`);
      return { kind: 'streamed', settled: streamed.settled };
    }

    // No upstream served it: nothing reached the client, so nothing is charged.
    const reason = candidates.length === 0 ? `no upstream can serve ${model} now` : `every upstream failed: ${last?.failure.error ?? 'unknown'}`;
    if (last?.status && last.text !== null) {
      const settled = this.settle(req.requestId, open, failed(progress.called, null, last.status, reason));
      return { kind: 'json', status: last.status, body: last.text, headers: { 'content-type': 'application/json' }, settled };
    }
    await this.settle(req.requestId, open, failed(progress.called, null, 503, reason));
    throw errors.unavailable(reason);
  }

  /**
   * A request an upstream took (its whole body went out) and never answered before anything reached
   * the client: the provider may bill it, so it is settled now — by the usage if any came, else an
   * estimate of its input (as the reaper bills a crash), capped at the hold, marked `estimated`,
   * never 0 — and the client gets 503. No other upstream is tried (attacker review G7).
   */
  private async cut(req: RelayRequest, open: Open, upstreamId: string, attempts: number, status: number | null, error: string): Promise<never> {
    await this.settle(req.requestId, open, {
      status: 'failed',
      httpStatus: status,
      upstreamId,
      attempts,
      tokens: estimate(req.rawBytes, 0, open.mediaTokens),
      source: 'estimated',
      ttftMs: null,
      error: `the upstream took the request and did not answer: ${error}`,
      response: null,
    });
    // Not to be retried: the official clients retry a 503 by themselves (without an Idempotency-Key,
    // in Anthropic's case), and each retry would be a second request the provider bills.
    throw errors.unavailable('The upstream took the request but did not answer it in time; it is billed as sent', { retryable: false });
  }

  /**
   * Forwards a stream event by event, reading the provider's usage as it passes. A client that
   * leaves does not stop the reading: the upstream is read on (up to the drain timeout) for its
   * final usage, and that is what is billed. Under an Idempotency-Key the events the client is
   * shown are recorded too — those read on after it left included, since they are paid for — and
   * kept if the stream ended cleanly, so a retry with the key replays the whole answer.
   */
  private async pipe(req: RelayRequest, open: Open, wire: Wire, upstream: Candidate, attempt: Extract<Attempt, { kind: 'response' }>, attempts: number, clientAskedUsage: boolean, sink: StreamSink): Promise<{ settled: Promise<void> } | { cut: string }> {
    const splitter = new SseSplitter();
    const usage = new StreamUsage(wire);
    let first: number | null = null;
    let error: string | null = null;
    let drainTimer: NodeJS.Timeout | null = null;
    /** Tally stopped reading because the client left: the upstream did nothing wrong. */
    let drained = false;
    const recording = req.idempotencyKey ? new StreamRecording() : null;
    try {
      for await (const chunk of attempt.body) {
        for (const event of splitter.push(chunk)) {
          const seen = event.data === null ? { usageOnly: false } : usage.see(event.data);
          if (first === null) {
            first = performance.now();
            sink.start({ 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
          }
          // The usage chunk Tally asked for on the client's behalf is not the client's to see.
          if (wire === 'openai' && seen.usageOnly && !clientAskedUsage) continue;
          recording?.add(event.raw);
          if (!sink.closed) sink.write(event.raw);
        }
        if (sink.closed && drainTimer === null) {
          drainTimer = setTimeout(() => {
            drained = true;
            attempt.body.destroy(new Error('drain timeout after the client left'));
          }, this.settings.drainTimeoutMs);
        }
      }
      const rest = splitter.rest();
      if (rest.trim() !== '') recording?.add(rest);
      if (rest.trim() !== '' && !sink.closed) sink.write(rest);
    } catch (err) {
      error = (err as Error).message || String(err);
    } finally {
      if (drainTimer) clearTimeout(drainTimer);
    }
    if (first === null && error !== null) {
      this.router.failed(upstream.id, { kind: 'retryable', error, retryAfterMs: null });
      return { cut: error };
    }
    if (first === null) {
      // An empty but clean stream: nothing to forward; the client gets an empty event stream.
      sink.start({ 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    }
    const clientLeft = sink.closed;
    sink.end();
    if (error === null) this.router.succeeded(upstream.id);
    // The drain timeout is the client's doing (it left a long stream), not the upstream's failure:
    // counting it let any client open any upstream's circuit (attacker review F3).
    else if (drained) this.router.release(upstream.id);
    else this.router.failed(upstream.id, { kind: 'retryable', error: `mid-stream: ${error}`, retryAfterMs: null });
    const provider = usage.tokens !== null && (usage.done || wire === 'openai');
    return { settled: this.settle(req.requestId, open, {
      status: clientLeft ? 'aborted' : error ? 'failed' : 'completed',
      httpStatus: attempt.status,
      upstreamId: upstream.id,
      attempts,
      tokens: provider ? (usage.tokens as Tokens) : cutEstimate(usage, req.rawBytes, open.mediaTokens),
      source: provider ? 'provider' : 'estimated',
      ttftMs: first === null ? null : Math.round(first - open.started),
      error: error ?? (provider ? null : 'the stream ended without usage'),
      // A stream cut by the upstream is not an answer to replay (its charge stands; a retry needs a new key).
      response: error === null ? (recording?.text() ?? null) : null,
    }) };
  }

  /** Hold and record, in one transaction: no hold without its record, no record without its hold. */
  private async open(caller: Caller, req: RelayRequest, endpoint: string, model: string, stream: boolean, held: number, hash: string, reserve: number, mediaTokens: number): Promise<string> {
    const item: OpenItem = {
      caller,
      held,
      reserve,
      row: {
        id: req.requestId,
        user_id: caller.userId,
        workspace_id: caller.workspaceId,
        api_key_id: caller.keyId,
        idempotency_key: req.idempotencyKey,
        request_hash: req.idempotencyKey ? hash : null,
        endpoint,
        model,
        stream,
        held,
        // What the reaper bills if this process dies before settling (docs/gateway.md, "Crash").
        input_tokens: estimate(req.rawBytes, 0, mediaTokens).input,
        window_start: null,
        reserved_tokens: 0,
        lease_until: this.leaseUntil(),
      },
    };
    try {
      // Alone: a key with counted limits (admitted under its own row lock, one request at a time),
      // and a request under an Idempotency-Key — its record's unique index refuses a twin, and in a
      // batch that refusal would fail everyone's opens, which any client could cause for free
      // (attacker review F5). Request ids are the server's, so a batch has no unique clash.
      const holdId = counted(caller.limits) || req.idempotencyKey ? await this.openOne(item) : await this.opens.submit(item);
      this.track(req.requestId);
      return holdId;
    } catch (err) {
      // The same key raced in: the first one's record decides (replay or 409).
      if ((err as { code?: string }).code === '23505' && req.idempotencyKey) throw inFlight();
      throw err;
    }
  }

  private async openOne({ caller, held, reserve, row }: OpenItem): Promise<string> {
    return this.db.transaction().execute(async (trx) => {
      // The key as it is now, not as the cache kept it: a key revoked or narrowed meanwhile moves nothing.
      const limits = keyNowAllows((await keysLiveNow(trx, [caller.keyId])).get(caller.keyId), caller, row.model);
      if (limits instanceof DomainError) throw limits;
      // The key's own limits first, under its row lock: refused here, nothing is held or counted.
      const admitted = counted(limits) ? await admit(trx, caller.keyId, { held, tokens: reserve }, this.now()) : null;
      // A workspace key spends the pool as its user: a viewer's key never spends, and the cap holds.
      const hold = await this.ledger.hold(trx, caller.owner, row.id, held, HOLD_SECONDS, memberOf(caller));
      if (!hold.ok) throw hold.error;
      await requestInsert(trx, { ...row, hold_id: hold.holdId, window_start: admitted?.windowStart ?? null, reserved_tokens: admitted?.reservedTokens ?? 0 });
      return hold.holdId;
    });
  }

  /** Many uncounted keys' opens: one ledger batch for the holds, one insert for the records. */
  private async openBatch(items: OpenItem[]): Promise<ItemOutcome<string>[]> {
    return this.db.transaction().execute(async (trx) => {
      // The keys as they are now (see openOne), read in the statement that bounds the batch's lock
      // waits. One that gained counted limits since it was cached must be admitted under its row
      // lock: the batch then runs again one by one (rare: a PATCH).
      const now = await keysLiveNowWithLockWait(trx, items.map((it) => it.caller.keyId), BATCH_LOCK_WAIT);
      const checks = items.map(({ caller, row }) => keyNowAllows(now.get(caller.keyId), caller, row.model));
      if (checks.some((c) => !(c instanceof DomainError) && counted(c))) throw new Error('a key gained counted limits since it was cached');
      const live = items.filter((_, i) => !(checks[i] instanceof DomainError));
      const holds = live.length === 0 ? [] : await this.ledger.holdMany(
        trx,
        live.map(({ caller, held, row }) => ({ owner: caller.owner, requestId: row.id, amount: held, expiresInSeconds: HOLD_SECONDS, memberId: memberOf(caller) })),
      );
      const rows: RequestInsert[] = [];
      let next = 0;
      const outcomes = items.map((item, i): ItemOutcome<string> => {
        const check = checks[i];
        if (check instanceof DomainError) return { ok: false, error: check };
        const h = must(holds[next++], 'a hold for each live key');
        if (!h.ok) return { ok: false, error: h.error };
        rows.push({ ...item.row, hold_id: h.holdId });
        return { ok: true, value: h.holdId };
      });
      await requestInsertMany(trx, rows);
      return outcomes;
    });
  }


  /**
   * The stored answer of a request already made under this key (docs/gateway.md, "Idempotency"):
   * a JSON answer as it was, a stream as the events the client was shown (one event-stream body);
   * 409 `conflict` while the first runs (retryable: the clients retry a 409 after Retry-After and
   * then get the replay) or when its answer is not kept (a failure, a cut stream: not retryable).
   */
  private async replayOf(caller: Caller, key: string, hash: string): Promise<RelayAnswer | null> {
    const prior = await requestFindByKey(this.db, caller.userId, key);
    if (!prior) return null;
    if (prior.request_hash !== hash) throw errors.idempotencyKeyReused();
    if (prior.status === 'pending') throw inFlight();
    if (prior.response === null || prior.http_status === null) throw errors.conflict('This Idempotency-Key answered a request whose answer is not kept (a failure or a cut stream); use a new key', { retryable: false });
    const headers: Record<string, string> = prior.stream ? { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' } : { 'content-type': 'application/json' };
    return { kind: 'json', status: prior.http_status, body: prior.response, headers, replayed: true, settled: Promise.resolve() };
  }

  private async priceFor(model: string): Promise<ModelPrice> {
    const metric = priceMetric(model);
    const cached = this.prices.get(metric);
    let price = cached && Date.now() - cached.at < PRICE_TTL_MS ? cached.price : undefined;
    if (price === undefined) {
      const row = await costModelFind(this.db, metric);
      const result = row ? priceOf(metric, row.is_active, row.metadata) : { ok: false as const, reason: `no cost model ${metric}: the model is not priced` };
      price = result.ok ? result.price : result.reason;
      this.prices.set(metric, { at: Date.now(), price });
    }
    if (typeof price === 'string') throw errors.invalidRequest(`Model ${model} is not available: ${price}`, { field: 'body.model' });
    return price;
  }

  /** Settles a request its process never settled (see reapStale). */
  async settleOrphan(row: { id: string; user_id: string; workspace_id: string | null; api_key_id: string | null; model: string; hold_id: string | null; held: number; input_tokens: number }): Promise<void> {
    if (!row.hold_id) return;
    const owner: Owner = row.workspace_id ? { workspaceId: row.workspace_id } : { userId: row.user_id };
    let price: ModelPrice | null = null;
    try {
      price = await this.priceFor(row.model);
    } catch {
      price = null;
    }
    const caller: Caller = { userId: row.user_id, workspaceId: row.workspace_id, keyId: row.api_key_id ?? '', owner, limits: NO_LIMITS };
    const open: Open = { caller, model: row.model, price: price ?? ZERO_PRICE, holdId: row.hold_id, held: Number(row.held), stream: false, started: -1, mediaTokens: 0 };
    await this.settleOne({ requestId: row.id, open, s: {
      status: 'failed',
      httpStatus: null,
      upstreamId: null,
      attempts: 0,
      tokens: { ...NO_TOKENS, input: Number(row.input_tokens) },
      source: price ? 'estimated' : 'none',
      ttftMs: null,
      error: 'the process ended before the request settled (reaped)',
      response: null,
    } });
  }

  /**
   * Settles a request exactly once: under the row lock, a pending record becomes final, the exact
   * cost joins the account's running total, and the whole credits that crossed are captured (the
   * capture is keyed on the request id, so even a second settlement that got past the lock cannot
   * move money twice). Runs after the answer went out; failures are logged and left to the reaper.
   */
  settle(requestId: string, open: Open, s: Settlement): Promise<void> {
    return this.settles
      .submit({ requestId, open, s })
      .catch((err) => this.onSettleError(err, requestId))
      .finally(() => this.untrack(requestId));
  }

  private get leaseMs(): number {
    return this.settings.leaseMs ?? 60_000;
  }

  private leaseUntil(): Date {
    return new Date(this.now().getTime() + this.leaseMs);
  }

  /**
   * Renews the lease of every request this process has in flight, every third of the lease, while
   * there are any: a stream may outlive any fixed age, and the reaper must only take the requests
   * of a process that is gone (docs/gateway.md, "Crash").
   */
  private track(requestId: string): void {
    this.leased.add(requestId);
    if (this.renewer) return;
    this.renewer = setInterval(() => {
      requestsRenew(this.db, [...this.leased], this.leaseUntil()).catch((err) => this.onSettleError(err, 'lease renewal'));
    }, Math.max(10, Math.floor(this.leaseMs / 3)));
    this.renewer.unref();
  }

  private untrack(requestId: string): void {
    this.leased.delete(requestId);
    if (this.leased.size === 0 && this.renewer) {
      clearInterval(this.renewer);
      this.renewer = null;
    }
  }

  /** One settlement alone (the reaper; a failed batch's items): the batch path with the usual lock bounds. */
  private settleOne(item: SettleItem): Promise<void> {
    return this.settleAll([item], false);
  }

  private async settleBatch(items: SettleItem[]): Promise<ItemOutcome<void>[]> {
    await this.settleAll(items, true);
    return items.map(() => ({ ok: true, value: undefined }));
  }

  /**
   * Settlements in one transaction, locking the request rows, then the carries, the keys and the
   * accounts, each in id order — the key's row before the account's, the order open() takes them in
   * (key limits, then the hold) — so no two settlements, and no settlement and open, can deadlock.
   * A pool carries each member's fraction apart (R9): the capture names the member, so what it
   * captures is the crossing of that member's own running total. Each carry takes its settlements'
   * sum in one statement and the credits that crossed are split among them in order, floor(running
   * total) each. A capture the ledger refuses fails the whole transaction (in a batch, each
   * settlement then runs alone: GroupCommit). `shortWait`: a batch's bounded lock wait.
   */
  private async settleAll(items: SettleItem[], shortWait: boolean): Promise<void> {
    const at = this.now();
    await this.db.transaction().execute(async (trx) => {
      if (shortWait) await shortLockWait(trx);
      const rows = new Map((await requestLockMany(trx, [...new Set(items.map((i) => i.requestId))])).map((r) => [r.id, r]));
      const live: { item: SettleItem; row: NonNullable<ReturnType<typeof rows.get>>; billable: number; exact: number; latency: number | null; carry: { accountId: string; memberId: string }; due: number }[] = [];
      for (const item of items) {
        const row = rows.get(item.requestId);
        // Settled already (the reaper, a twin in this batch): nothing moves.
        if (!row || row.status !== 'pending') continue;
        rows.delete(item.requestId);
        live.push({ item, row, ...this.costOf(item.open, item.s), carry: carryOf(this.ledger, item.open.caller), due: 0 });
      }
      const carries = groupSorted(live.filter((l) => l.billable > 0), (l) => `${l.carry.accountId}\u0000${l.carry.memberId}`);
      for (const group of carries) {
        const sum = group.reduce((n, l) => n + l.billable, 0);
        let running = (await carryAddTotal(trx, (group[0] as (typeof live)[number]).carry, sum)) - sum;
        for (const l of group) {
          const before = running;
          running += l.billable;
          l.due = Math.floor(running / 1_000_000) - Math.floor(before / 1_000_000);
        }
      }
      for (const group of groupSorted(live.filter((l) => l.row.api_key_id), (l) => l.row.api_key_id as string)) {
        const keyId = (group[0] as (typeof live)[number]).row.api_key_id as string;
        await keySpent(trx, keyId, group.reduce((n, l) => n + l.billable, 0));
        for (const w of groupSorted(group.filter((l) => l.row.window_start), (l) => (l.row.window_start as Date).toISOString())) {
          const delta = w.reduce((n, l) => n + tokenCount(l.item.s.tokens) - Number(l.row.reserved_tokens), 0);
          await keyWindowTrueUp(trx, keyId, (w[0] as (typeof live)[number]).row.window_start as Date, delta);
        }
      }
      const captured = await this.ledger.captureMany(
        trx,
        live.map((l) => ({ owner: l.item.open.caller.owner, requestId: l.item.requestId, holdId: l.item.open.holdId, amount: l.due })),
      );
      const refused = captured.find((c) => !c.ok);
      if (refused && !refused.ok) throw refused.error;
      await requestSettleMany(
        trx,
        this.schema,
        live.map((l) => ({ id: l.item.requestId, s: settledRow(l.item.s, l.billable, l.exact, l.due, l.latency, l.carry.memberId, at) })),
      );
    });
  }

  /** The exact cost, what of it is billable (never more than was held), and the latency. */
  private costOf(open: Open, s: Settlement): { exact: number; billable: number; latency: number | null } {
    const exact = s.source === 'none' ? 0 : costMicros(open.price, s.tokens);
    // Never more than was held: the hold is what the payer agreed could be spent. What the hold
    // did not cover is recorded (uncharged_micros), never forgiven silently.
    const billable = Math.min(exact, open.held * 1_000_000);
    return { exact, billable, latency: open.started < 0 ? null : Math.round(performance.now() - open.started) };
  }
}

/**
 * The reaper (scheduler): a pending request whose lease its process stopped renewing belongs to a
 * process that died mid-request (a live one renews its leases, however long a stream runs). Policy (docs/gateway.md, "Crash"): bill the estimate of its input — it was sent
 * upstream, and the provider bills that — and no output, marked `estimated`; capped at the hold,
 * settled through the same exactly-once path (a late real settlement finds it final and does
 * nothing). An unpriced model by then: nothing is billed, the hold is released.
 */
export async function reapStale(relay: RelayService, db: Db, now: Date, olderThanMs: number, limit = 200): Promise<number> {
  const ids = await requestsStale(db, now, new Date(now.getTime() - olderThanMs), limit);
  let n = 0;
  for (const id of ids) {
    const row = await requestFind(db, id);
    if (!row || row.status !== 'pending' || !row.hold_id) continue;
    await relay.settleOrphan(row);
    n++;
  }
  return n;
}

/** The first request under a key is still running: come back for its answer (one second is a guess; the clients honour it). */
function inFlight() {
  return errors.conflict('A request with this Idempotency-Key is in progress; retry it after it ends for its answer', { retryable: true, retry_after_seconds: 1 });
}

/** Most of a stream kept for replays; a longer one is not kept (a retry with its key → 409, use a new key). */
const STREAM_RECORD_MAX_BYTES = 4 * 1024 * 1024;

/** The events of a stream as the client was shown them, up to STREAM_RECORD_MAX_BYTES. */
class StreamRecording {
  private readonly parts: string[] = [];
  private bytes = 0;
  private over = false;
  add(raw: string): void {
    if (this.over) return;
    this.bytes += Buffer.byteLength(raw);
    if (this.bytes > STREAM_RECORD_MAX_BYTES) {
      this.over = true;
      this.parts.length = 0;
      return;
    }
    this.parts.push(raw);
  }
  text(): string | null {
    return this.over ? null : this.parts.join('');
  }
}

/** Every token the provider counted, whatever its price category (what a tokens-per-minute limit counts). */
function tokenCount(t: Tokens): number {
  return t.input + t.cachedInput + t.cacheWrite + t.output + t.reasoning;
}

function failed(attempts: number, upstreamId: string | null, status: number | null, error: string): Settlement {
  return { status: 'failed', httpStatus: status, upstreamId, attempts, tokens: NO_TOKENS, source: 'none', ttftMs: null, error, response: null };
}

/**
 * When the provider never said: about four characters a token, for what was sent and what came
 * back, plus the tokens the hold counted for media parts (an image by URL is a few bytes and
 * hundreds of tokens: bytes alone would bill it as nearly nothing; attacker review G5).
 */
function estimate(inputBytes: number, outputChars: number, mediaTokens: number): Tokens {
  return { ...NO_TOKENS, input: Math.ceil(inputBytes / 4) + mediaTokens, output: Math.ceil(outputChars / 4) };
}

/**
 * A stream that ended without its whole usage: the input side the provider did report (Anthropic's
 * message_start: input, cache reads and writes, images included) is billed as reported, the output
 * estimated from what was streamed (or the last cumulative count, if larger); otherwise the estimate.
 */
function cutEstimate(usage: StreamUsage, inputBytes: number, mediaTokens: number): Tokens {
  const guess = estimate(inputBytes, usage.textChars, mediaTokens);
  if (!usage.startTokens) return guess;
  return { ...usage.startTokens, output: Math.max(usage.startTokens.output, guess.output) };
}

const OPENAI_MAX_OUTPUT = ['max_completion_tokens', 'max_tokens'] as const;

/** The upstream body, and the same with the standard tier named for hosts that need it. */
interface Payload {
  plain: string;
  standardTier: string;
}

/**
 * The output limit the client named, if any: on OpenAI's wire the larger of its two names (G2), on
 * Anthropic's `max_tokens` only — the one field Anthropic obeys (G3). A limit that is not a positive
 * integer is refused: what the provider would make of it cannot be held for.
 */
function clientMaxOutputOf(wire: Wire, body: Record<string, unknown>): number | null {
  let max: number | null = null;
  for (const k of wire === 'openai' ? OPENAI_MAX_OUTPUT : (['max_tokens'] as const)) {
    const v = body[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw errors.invalidRequest(`${k} must be a positive integer`, { field: `body.${k}` });
    max = Math.max(max ?? 0, v);
  }
  return max;
}

function asObject(v: unknown): Record<string, unknown> {
  const o = asObjectOrNull(v);
  if (!o) throw errors.invalidRequest('The body must be a JSON object', { field: 'body' });
  return o;
}
function asObjectOrNull(v: unknown): Record<string, unknown> | null {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}
function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
function jsonHeaders(upstream: Record<string, string>): Record<string, string> {
  return { 'content-type': upstream['content-type'] ?? 'application/json' };
}

/** Group-commit bounds for opens and settlements: two transactions at a time each, up to 64 requests. */
const BATCHING = { maxBatch: 64, maxParallel: 2 };

/**
 * A batch waits at most this long for a row lock another transaction holds (then it fails and its
 * requests run alone, each waiting only for its own rows): one busy account must not hold up every
 * other account's requests queued behind it (attacker review F4).
 */
const BATCH_LOCK_WAIT = '200ms';

async function shortLockWait(trx: Executor): Promise<void> {
  await sql`select set_config('lock_timeout', ${BATCH_LOCK_WAIT}, true)`.execute(trx);
}

interface OpenItem {
  caller: Caller;
  held: number;
  /** Tokens the key's minute reserves (counted keys only). */
  reserve: number;
  row: Omit<RequestInsert, 'hold_id'>;
}

interface SettleItem {
  requestId: string;
  open: Open;
  s: Settlement;
}

/** A workspace key's hold and carry name its user as the pool's member. */
const memberOf = (caller: Caller): string | null => (caller.workspaceId ? caller.userId : null);

const carryOf = (ledger: GatewayLedger, caller: Caller) => ({ accountId: ledger.accountOf(caller.owner), memberId: memberOf(caller) ?? '' });

function settledRow(s: Settlement, billable: number, exact: number, due: number, latency: number | null, carryMemberId: string, at: Date) {
  return {
    status: s.status,
    http_status: s.httpStatus,
    upstream_id: s.upstreamId,
    attempts: s.attempts,
    tokens: s.tokens,
    cost_micros: billable,
    uncharged_micros: exact - billable,
    charged: due,
    usage_source: s.source,
    latency_ms: latency,
    ttft_ms: s.ttftMs,
    error: s.error,
    response: s.response,
    carry_member_id: carryMemberId,
    settled_at: at,
  };
}

/** Items grouped by a key, the groups in key order (the order their rows are locked in). */
function groupSorted<T>(items: readonly T[], keyOf: (t: T) => string): T[][] {
  const groups = new Map<string, T[]>();
  for (const t of items) {
    const k = keyOf(t);
    const g = groups.get(k);
    if (g) g.push(t);
    else groups.set(k, [t]);
  }
  return [...groups.keys()].sort().map((k) => groups.get(k) as T[]);
}
