import type { FastifyInstance } from 'fastify';

/**
 * A parsed JSON answer, as tests read it: freely (`res.body.data[0].id`), each read checked by the
 * assertion it feeds. The one `any` the linter allows, named and kept here: typing every answer
 * would bring the whole API schema into the tests.
 */
// biome-ignore lint/suspicious/noExplicitAny: see above — the one escape hatch for JSON answers in tests
export type Json = any;

export interface Res<T = Json> {
  status: number;
  body: T;
  headers: Record<string, string | string[] | number | undefined>;
}

export interface CallOptions {
  token?: string | null;
  body?: unknown;
  headers?: Record<string, string>;
  idempotencyKey?: string;
}

/** A tiny HTTP client over Fastify's inject: real routing, validation, hooks and serialization. */
export function client(server: FastifyInstance, defaultToken: string | null = null) {
  async function call<T = Json>(method: string, url: string, opts: CallOptions = {}): Promise<Res<T>> {
    const token = opts.token === undefined ? defaultToken : opts.token;
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (token) headers['authorization'] = `Bearer ${token}`;
    if (opts.idempotencyKey) headers['idempotency-key'] = opts.idempotencyKey;
    const res = await server.inject({
      method: method as 'GET',
      url,
      headers,
      ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    });
    const text = res.body;
    return { status: res.statusCode, body: text ? JSON.parse(text) : null, headers: res.headers };
  }
  return {
    call,
    get: <T = Json>(url: string, opts?: CallOptions) => call<T>('GET', url, opts),
    post: <T = Json>(url: string, body?: unknown, opts?: CallOptions) => call<T>('POST', url, { ...opts, body }),
    patch: <T = Json>(url: string, body?: unknown, opts?: CallOptions) => call<T>('PATCH', url, { ...opts, body }),
    put: <T = Json>(url: string, body?: unknown, opts?: CallOptions) => call<T>('PUT', url, { ...opts, body }),
    del: <T = Json>(url: string, opts?: CallOptions) => call<T>('DELETE', url, opts),
  };
}
