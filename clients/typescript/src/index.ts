import createClient, { type Client, type Middleware } from 'openapi-fetch';
import type { components, paths } from './api.gen.js';
import { TallyError } from './errors.js';

export type { components, paths } from './api.gen.js';
export { type ErrorCode, TallyError } from './errors.js';

/** A named shape of the API: `Schema<'Balance'>`, `Schema<'Transaction'>` … */
export type Schema<N extends keyof components['schemas']> = components['schemas'][N];

export interface TallyOptions {
  /** Where Tally listens, e.g. `https://tally.example.com` (no trailing `/v1`). */
  baseUrl: string;
  /** The service key, a user's `tly_` API key, or a user's access token (all sent as Bearer). */
  token?: string;
  /**
   * Retries of a request that got no answer or 503 `unavailable` (Tally is away, or past a bound).
   * A write is retried with the same Idempotency-Key, so it takes effect once. Default 2.
   */
  maxRetries?: number;
  /** The first retry's wait in ms (doubled each time, jittered; a Retry-After header wins). Default 250. */
  retryDelayMs?: number;
  /** New Idempotency-Keys for writes that do not bring their own. Default: `crypto.randomUUID()`. */
  idempotencyKey?: () => string;
  /** Sends one request (default: the global fetch); a test or a proxy may wrap it. */
  fetch?: (request: Request) => Promise<Response>;
}

/**
 * `paths` with the Idempotency-Key header optional: money routes require it on the wire, and the
 * client always sends one, so a caller names it only to choose it.
 */
type KeyOptional<H> = H extends { 'idempotency-key': string } ? Omit<H, 'idempotency-key'> & { 'idempotency-key'?: string } : H;
type OperationWithOptionalKey<Op> = Op extends { parameters: { header: infer H } }
  ? Omit<Op, 'parameters'> & { parameters: Omit<Op['parameters'], 'header'> & { header?: KeyOptional<H> } }
  : Op;
export type TallyPaths = { [P in keyof paths]: { [M in keyof paths[P]]: OperationWithOptionalKey<paths[P][M]> } };

export type TallyClient = Client<TallyPaths>;

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * A typed client for Tally's HTTP API (openapi-fetch over the generated `paths`): every path,
 * body and answer is checked by TypeScript. Every write carries an Idempotency-Key (yours, or a
 * fresh one), so retries — the client's own and yours with the same key — charge once.
 *
 *   const tally = createTally({ baseUrl, token: process.env.TALLY_SERVICE_KEY });
 *   const tx = await unwrap(tally.POST('/v1/credits/debit', { body: { user_id, amount: 5, reason: 'render' } }));
 */
export function createTally(options: TallyOptions): TallyClient {
  const client = createClient<TallyPaths>({ baseUrl: options.baseUrl.replace(/\/+$/, ''), fetch: retrying(options) });
  const newKey = options.idempotencyKey ?? (() => globalThis.crypto.randomUUID());
  const headers: Middleware = {
    onRequest({ request }) {
      if (options.token && !request.headers.has('authorization')) request.headers.set('authorization', `Bearer ${options.token}`);
      if (WRITES.has(request.method) && !request.headers.has('idempotency-key')) request.headers.set('idempotency-key', newKey());
      return request;
    },
  };
  client.use(headers);
  return client;
}

/** The data of a successful call, or a thrown `TallyError` with the catalogue's code. */
export async function unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const r = await call;
  if (r.response.ok && r.error === undefined) return r.data as T;
  throw TallyError.fromResponse(r.response.status, r.error);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function retrying(options: TallyOptions): (request: Request) => Promise<Response> {
  const send = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const max = options.maxRetries ?? 2;
  const base = options.retryDelayMs ?? 250;
  return async (request) => {
    // Only a request that is safe to repeat: a read, or a write with its Idempotency-Key.
    const repeatable = !WRITES.has(request.method) || request.headers.has('idempotency-key');
    for (let attempt = 0; ; attempt++) {
      const last = !repeatable || attempt >= max;
      let response: Response;
      try {
        response = await send(last ? request : request.clone());
      } catch (err) {
        if (last) throw new TallyError(0, 'network', `No answer from Tally: ${(err as Error).message}`, {}, null);
        await sleep(backoff(base, attempt));
        continue;
      }
      if (response.status !== 503 || last) return response;
      const after = Number(response.headers.get('retry-after'));
      await response.body?.cancel();
      await sleep(Number.isFinite(after) && after > 0 ? Math.min(after, 30) * 1000 : backoff(base, attempt));
    }
  };
}

const backoff = (base: number, attempt: number) => base * 2 ** attempt * (0.5 + Math.random() / 2);
export { type TallyEvent, type VerifyOptions, type WebhookHeaders, WebhookVerificationError, verifyWebhook } from './webhooks.js';
