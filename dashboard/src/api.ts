/** The one way the dashboard talks to Tally: the public API, with the signed-in caller's own credentials. */

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
    const err = (body as { error?: { code?: string; message?: string; request_id?: string } } | null)?.error;
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
