import { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { GatewayConfig } from '../../config/config.js';
import type { Candidate, Failure } from './gateway.router.js';

/**
 * What one attempt at an upstream came to, before any byte has gone to the client. `cut`: the whole
 * request body had gone out and then no answer came (a first-byte timeout, a reset): the upstream
 * may be working on it and billing the operator, so it must never be sent to another upstream.
 */
export type Attempt =
  | { kind: 'response'; status: number; headers: Record<string, string>; body: AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown; text(): Promise<string> } }
  | {
      kind: 'failed';
      failure: Failure;
      status: number | null;
      text: string | null;
      cut: boolean;
      /** No response headers in time: for a JSON answer that depends on the length asked for (attacker review F3). */
      slow?: boolean;
    };

/**
 * Calls upstreams over keep-alive connection pools (undici), one pool per origin. Classifies what
 * comes back: errors before the body was fully sent (connect errors), 429 (with Retry-After) and 5xx
 * are retryable; an error after the body went out is `cut` (attacker review G7); 401 says the
 * credential is refused, 403 that this request is; anything else is the upstream's answer to pass through.
 */
export class UpstreamClient {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly settings: GatewayConfig) {}

  private pool(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, { connections: 256, pipelining: 1, keepAliveTimeout: 30_000, connect: { timeout: this.settings.connectTimeoutMs } });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  async call(upstream: Candidate, path: string, body: string, extraHeaders: Record<string, string>): Promise<Attempt> {
    const url = new URL(upstream.baseUrl + path);
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...extraHeaders };
    if (upstream.type === 'openai') headers['authorization'] = `Bearer ${upstream.credentials}`;
    else headers['x-api-key'] = upstream.credentials;
    // The body as a stream whose 'end' says undici has taken its last byte and written it to the
    // socket: an error after that point is a cut request (the upstream may bill it), not a refused one.
    let sent = false;
    const bytes = Buffer.from(body);
    if (body !== '') headers['content-length'] = String(bytes.length);
    const payload = Readable.from([bytes]).on('end', () => {
      sent = true;
    });
    try {
      const res = await this.pool(url.origin).request({
        path: url.pathname + url.search,
        method: body === '' ? 'GET' : 'POST',
        headers,
        body: body === '' ? null : payload,
        headersTimeout: this.settings.firstByteTimeoutMs,
        bodyTimeout: this.settings.idleTimeoutMs,
      });
      const h: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h[k] = v;
      if (res.statusCode >= 200 && res.statusCode < 300) return { kind: 'response', status: res.statusCode, headers: h, body: res.body };
      const text = await res.body.text().catch(() => '');
      // A status answer is a refusal the provider does not bill: another upstream may take the request.
      if (res.statusCode === 401) return { kind: 'failed', failure: { kind: 'auth', error: 'HTTP 401' }, status: 401, text, cut: false };
      if (res.statusCode === 403) return { kind: 'failed', failure: { kind: 'refused', error: `HTTP 403: ${clip(text, 200)}` }, status: 403, text, cut: false };
      if (res.statusCode === 429 || res.statusCode >= 500) {
        return { kind: 'failed', failure: { kind: 'retryable', error: `HTTP ${res.statusCode}: ${clip(text, 200)}`, retryAfterMs: retryAfterMs(h['retry-after']) }, status: res.statusCode, text, cut: false };
      }
      // The upstream's own answer to this request (400, 404, 422 …): the client gets it as is.
      return { kind: 'response', status: res.statusCode, headers: h, body: bodyOf(text) };
    } catch (err) {
      const error = (err as Error).message || String(err);
      return { kind: 'failed', failure: { kind: 'retryable', error, retryAfterMs: null }, status: null, text: null, cut: sent && !connectError(err), slow: (err as { code?: unknown }).code === 'UND_ERR_HEADERS_TIMEOUT' };
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
  }
}

/** Errors of the connection itself (no request can have reached the upstream). */
function connectError(err: unknown): boolean {
  const e = err as { code?: unknown; syscall?: unknown };
  return e.code === 'UND_ERR_CONNECT_TIMEOUT' || e.syscall === 'connect' || e.syscall === 'getaddrinfo';
}

/** Retry-After as seconds or an HTTP date, in ms (null when absent or unreadable; at most an hour). */
export function retryAfterMs(value: string | undefined): number | null {
  if (!value) return null;
  const s = Number(value);
  const ms = Number.isFinite(s) ? s * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), 3_600_000) : null;
}

function bodyOf(text: string): AsyncIterable<Uint8Array> & { destroy(): void; text(): Promise<string> } {
  return {
    async *[Symbol.asyncIterator]() {
      yield Buffer.from(text);
    },
    destroy() {},
    text: async () => text,
  };
}

/**
 * The first `n` UTF-16 units of an upstream's text without a broken surrogate pair at the end: a
 * lone surrogate is not valid JSON text, and PostgreSQL refuses it in a jsonb batch (attacker review F6).
 */
export function clip(text: string, n: number): string {
  const out = text.slice(0, n);
  const last = out.charCodeAt(out.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? out.slice(0, -1) : out;
}
