import type { FastifyInstance } from 'fastify';

export interface Res<T = any> {
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
  async function call<T = any>(method: string, url: string, opts: CallOptions = {}): Promise<Res<T>> {
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
    get: <T = any>(url: string, opts?: CallOptions) => call<T>('GET', url, opts),
    post: <T = any>(url: string, body?: unknown, opts?: CallOptions) => call<T>('POST', url, { ...opts, body }),
    patch: <T = any>(url: string, body?: unknown, opts?: CallOptions) => call<T>('PATCH', url, { ...opts, body }),
    put: <T = any>(url: string, body?: unknown, opts?: CallOptions) => call<T>('PUT', url, { ...opts, body }),
    del: <T = any>(url: string, opts?: CallOptions) => call<T>('DELETE', url, opts),
  };
}
