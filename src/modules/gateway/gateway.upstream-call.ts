import { Pool } from 'undici';
import type { GatewayConfig } from '../../config/config.js';
import type { Candidate, Failure } from './gateway.router.js';

/** What one attempt at an upstream came to, before any byte has gone to the client. */
export type Attempt =
  | { kind: 'response'; status: number; headers: Record<string, string>; body: AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown; text(): Promise<string> } }
  | { kind: 'failed'; failure: Failure; status: number | null; text: string | null };

/**
 * Calls upstreams over keep-alive connection pools (undici), one pool per origin. Classifies what
 * comes back: connect errors, timeouts, 429 (with Retry-After) and 5xx are retryable; 401/403 say the
 * credential is refused; anything else is the upstream's answer to pass through.
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
    try {
      const res = await this.pool(url.origin).request({
        path: url.pathname + url.search,
        method: body === '' ? 'GET' : 'POST',
        headers,
        ...(body === '' ? {} : { body }),
        headersTimeout: this.settings.firstByteTimeoutMs,
        bodyTimeout: this.settings.idleTimeoutMs,
      });
      const h: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h[k] = v;
      if (res.statusCode >= 200 && res.statusCode < 300) return { kind: 'response', status: res.statusCode, headers: h, body: res.body };
      const text = await res.body.text().catch(() => '');
      if (res.statusCode === 401 || res.statusCode === 403) return { kind: 'failed', failure: { kind: 'auth', error: `HTTP ${res.statusCode}` }, status: res.statusCode, text };
      if (res.statusCode === 429 || res.statusCode >= 500) {
        return { kind: 'failed', failure: { kind: 'retryable', error: `HTTP ${res.statusCode}: ${text.slice(0, 200)}`, retryAfterMs: retryAfterMs(h['retry-after']) }, status: res.statusCode, text };
      }
      // The upstream's own answer to this request (400, 404, 422 …): the client gets it as is.
      return { kind: 'response', status: res.statusCode, headers: h, body: bodyOf(text) };
    } catch (err) {
      return { kind: 'failed', failure: { kind: 'retryable', error: (err as Error).message || String(err), retryAfterMs: null }, status: null, text: null };
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
  }
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
