/** The one way the dashboard talks to Tally: the public API, with the signed-in caller's own credentials. */
import type { components, paths } from '../../clients/typescript/src/api.gen';

export type Session =
  | { kind: 'service'; token: string }
  | { kind: 'user'; token: string; user: { id: string; email: string } };

const KEY = 'tally.dashboard.session';

/** Kept in sessionStorage only: closing the tab forgets the service key or the JWT. */
export const sessionStore = {
  get(): Session | null {
    try {
      const raw = sessionStorage.getItem(KEY);
      return raw ? (JSON.parse(raw) as Session) : null;
    } catch {
      return null;
    }
  },
  set(s: Session | null): void {
    if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
    else sessionStorage.removeItem(KEY);
  },
};

/** An error the API answered (its envelope's code and message), or a network failure. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

/**
 * The API's types come from its own OpenAPI document: src/api.gen.ts is generated from
 * GET /openapi.json by scripts/api-types.ts (`npm run gen:api`) into the client package, and a test fails
 * while it is stale. Pages name what the API answers through Ok and Schema, never by hand.
 */
type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
/** The methods `path` has. */
type MethodOf<P extends keyof paths> = { [M in Method]: paths[P][M] extends { responses: unknown } ? M : never }[Method];
type Json<R> = R extends { content: { 'application/json': infer T } } ? T : never;

/** A schema the API names (its title in /openapi.json): `Schema<'Balance'>`. */
export type Schema<Name extends keyof components['schemas']> = components['schemas'][Name];

/**
 * The JSON body of the success answer (200, 201 or 202) to `method path`: `Ok<'/v1/admin/stats', 'get'>`.
 * `unknown` (so any use fails to compile) if the operation documents no JSON success.
 */
export type Ok<P extends keyof paths, M extends MethodOf<P>> = paths[P][M] extends { responses: infer R }
  ? [Json<R[Extract<keyof R, 200 | 201 | 202>]>] extends [never]
    ? unknown
    : Json<R[Extract<keyof R, 200 | 201 | 202>]>
  : unknown;

/** The JSON request body of `method path`: `Body<'/v1/plans', 'post'>` (what a form sends). */
export type Body<P extends keyof paths, M extends MethodOf<P>> = paths[P][M] extends { requestBody?: infer B }
  ? Json<NonNullable<B>>
  : never;

/**
 * Every value of a union the API defines (a status), in the order written, for a select: the object
 * must name each value once, so a value the API adds or drops fails to compile here.
 */
export const valuesOf = <T extends string>(all: Record<T, true>): T[] => Object.keys(all) as T[];

/** The API's error envelope (every 4xx and 5xx). */
export type ErrorBody = Schema<'Error'>;

/** A page of a paged list (`limit`, `cursor`; see API.md): what usePaged reads. */
export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

let onUnauthorized: () => void = () => {};
/** Called when a token is refused (expired JWT, rotated key): the app signs out. */
export const setUnauthorizedHandler = (fn: () => void): void => {
  onUnauthorized = fn;
};

export async function api<T = unknown>(
  method: string,
  path: string,
  opts: { body?: unknown; idempotencyKey?: string; token?: string | null } = {},
): Promise<T> {
  const token = opts.token === undefined ? sessionStore.get()?.token : opts.token;
  const headers: Record<string, string> = {};
  if (token) headers['authorization'] = `Bearer ${token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.idempotencyKey) headers['idempotency-key'] = opts.idempotencyKey;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) });
  } catch (e) {
    throw new ApiError(0, 'network_error', `Could not reach Tally: ${(e as Error).message}`);
  }
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    // Whatever answered may not be Tally (a proxy's HTML 502): every field of the envelope is optional here.
    const err = (body as { error?: Partial<ErrorBody['error']> } | null)?.error;
    if (res.status === 401 && token) onUnauthorized();
    throw new ApiError(res.status, err?.code ?? 'http_error', err?.message ?? `HTTP ${res.status} ${res.statusText}`, err?.request_id);
  }
  return body as T;
}

/** Builds a query string from the defined, non-empty values. */
export function qs(params: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

export const newIdempotencyKey = (prefix: string): string =>
  `${prefix}-${Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('')}`;
