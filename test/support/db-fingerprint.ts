import { sql } from 'kysely';
import type { TestApp } from './harness.js';
import { client, type Res } from './client.js';

/**
 * Columns that change when nothing was *written* by a request: authenticating with an API key
 * counts the use (last_used_at, request_count, and the updated_at its trigger keeps), and a
 * session JWT records its activity at most once a minute (so a suite that runs longer than a
 * minute sees it move between two fingerprints).
 */
const VOLATILE: Record<string, readonly string[]> = {
  api_keys: ['last_used_at', 'request_count', 'updated_at'],
  user_sessions: ['last_activity_at', 'updated_at'],
};

export type Fingerprint = Record<string, string[]>;

/**
 * Every row of every table in the app's schema, as sorted JSON text (volatile columns removed).
 * Two equal fingerprints mean the request wrote nothing anywhere, not just in the table the
 * test happened to think of. `exclude` leaves out tables a rejection writes by design (a money
 * route records the Idempotency-Key of its 4xx answers, so a retry gets the same answer).
 */
export async function dbFingerprint(app: TestApp, opts: { exclude?: readonly string[] } = {}): Promise<Fingerprint> {
  const schema = app.database.schema;
  const tables = await sql<{ table_name: string }>`
    select table_name from information_schema.tables
    where table_schema = ${schema} and table_type = 'BASE TABLE'
    order by table_name`.execute(app.database.root);
  if (tables.rows.length === 0) throw new Error(`dbFingerprint: no tables in schema ${schema}`);
  const out: Fingerprint = {};
  for (const { table_name } of tables.rows) {
    if (opts.exclude?.includes(table_name)) continue;
    const rows = await sql<{ r: string }>`select row_to_json(t)::text as r from ${sql.table(`${schema}.${table_name}`)} t`.execute(
      app.database.root,
    );
    const drop = VOLATILE[table_name] ?? [];
    out[table_name] = rows.rows
      .map(({ r }) => {
        const row = JSON.parse(r) as Record<string, unknown>;
        for (const c of drop) delete row[c];
        return JSON.stringify(row);
      })
      .sort();
  }
  return out;
}

/** Row counts per table, for readable failure messages. */
export function counts(fp: Fingerprint): Record<string, number> {
  return Object.fromEntries(Object.entries(fp).map(([t, rows]) => [t, rows.length]));
}

/**
 * The error envelope of API.md, checked strictly: the expected status and closed code, a human
 * message, a request id that matches the x-request-id header. Returns the problems (empty = fine)
 * so a test can check many requests and report every failure at once.
 */
export function errorProblems(res: Res, status: number, code: string, label: string): string[] {
  const p: string[] = [];
  const b = res.body as { error?: { code?: unknown; message?: unknown; request_id?: unknown; details?: unknown } } | null;
  if (res.status !== status) p.push(`${label}: expected status ${status}, got ${res.status} ${JSON.stringify(b)?.slice(0, 300)}`);
  const e = b && typeof b === 'object' ? b.error : undefined;
  if (!e || typeof e !== 'object') return [...p, `${label}: no error envelope: ${JSON.stringify(b)?.slice(0, 300)}`];
  const top = Object.keys(b as object);
  if (top.length !== 1) p.push(`${label}: error body has extra top-level keys: ${top.join(', ')}`);
  const extra = Object.keys(e).filter((k) => !['code', 'message', 'request_id', 'details'].includes(k));
  if (extra.length > 0) p.push(`${label}: error object has unknown keys: ${extra.join(', ')}`);
  if (e.code !== code) p.push(`${label}: expected code ${code}, got ${String(e.code)} (${String(e.message)})`);
  if (typeof e.message !== 'string' || e.message.trim().length < 5 || e.message === e.code || /\n\s+at\s/.test(e.message)) {
    p.push(`${label}: message is not a human sentence: ${JSON.stringify(e.message)}`);
  }
  if (typeof e.request_id !== 'string' || e.request_id.length === 0) p.push(`${label}: request_id missing`);
  else if (res.headers['x-request-id'] !== e.request_id) {
    p.push(`${label}: request_id ${e.request_id} differs from x-request-id ${String(res.headers['x-request-id'])}`);
  }
  return p;
}

/** Differences between two fingerprints, as readable lines (empty = nothing was written). */
export function fingerprintDiff(before: Fingerprint, after: Fingerprint, label: string): string[] {
  const out: string[] = [];
  for (const table of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const a = new Set(before[table] ?? []);
    const b = new Set(after[table] ?? []);
    const added = [...b].filter((r) => !a.has(r));
    const removed = [...a].filter((r) => !b.has(r));
    if (added.length || removed.length) {
      out.push(`${label}: ${table} changed (+${added.length} -${removed.length}) ${describeChange(added, removed).slice(0, 600)}`);
    }
  }
  return out;
}

/** A row that was rewritten (same id) shows only the columns that changed; others show whole. */
function describeChange(added: string[], removed: string[]): string {
  const idOf = (r: string): unknown => (JSON.parse(r) as Record<string, unknown>)['id'];
  const gone = new Map<unknown, string>();
  const parts: string[] = [];
  for (const r of removed) {
    const id = idOf(r);
    if (id === undefined || gone.has(id)) parts.push(`-${r}`);
    else gone.set(id, r);
  }
  for (const r of added) {
    const id = idOf(r);
    const old = id !== undefined ? gone.get(id) : undefined;
    if (old === undefined) {
      parts.push(`+${r}`);
      continue;
    }
    gone.delete(id);
    const x = JSON.parse(old) as Record<string, unknown>;
    const y = JSON.parse(r) as Record<string, unknown>;
    const cols = [...new Set([...Object.keys(x), ...Object.keys(y)])].filter((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]));
    parts.push(`~${String(id)} ${cols.map((k) => `${k}: ${JSON.stringify(x[k])} -> ${JSON.stringify(y[k])}`).join(', ')}`);
  }
  for (const r of gone.values()) parts.push(`-${r}`);
  return parts.join(' ');
}

/**
 * One raw request (any payload, any content type), parsed leniently: the point of these tests
 * is what comes back when the request is wrong, so nothing here may throw on a non-JSON answer.
 */
export async function rawRequest(
  app: TestApp,
  req: { method: string; url: string; token?: string | null; headers?: Record<string, string>; payload?: string | Buffer | object },
): Promise<Res> {
  const headers: Record<string, string> = { ...(req.headers ?? {}) };
  if (req.token) headers['authorization'] = `Bearer ${req.token}`;
  const res = await app.server.inject({
    method: req.method as 'GET',
    url: req.url,
    headers,
    ...(req.payload !== undefined ? { payload: req.payload } : {}),
  });
  let body: unknown = res.body;
  try {
    body = res.body ? JSON.parse(res.body) : null;
  } catch {
    // keep the text
  }
  return { status: res.statusCode, body, headers: res.headers };
}

/** The service's view of the API, for set-up and for listing state before/after. */
export const serviceClient = (app: TestApp) => client(app.server, app.serviceKey);
