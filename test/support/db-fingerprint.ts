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

/** Per table: its row count and a digest of its rows (volatile columns removed). */
export type Fingerprint = Record<string, { rows: number; digest: string }>;

const fingerprintSql = new Map<string, string>();

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;
const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;

/**
 * Every row of every table in the app's schema, digested (volatile columns removed) in one
 * statement: two equal fingerprints mean the request wrote nothing anywhere, not just in the
 * table the test happened to think of. `exclude` leaves out tables a rejection writes by design
 * (a money route records the Idempotency-Key of its 4xx answers, so a retry gets the same answer).
 * One round trip, not one per table: the security and bad-input suites take thousands of these.
 */
export async function dbFingerprint(app: TestApp, opts: { exclude?: readonly string[] } = {}): Promise<Fingerprint> {
  const schema = app.database.schema;
  let text = fingerprintSql.get(schema);
  if (!text) {
    // The tables do not change within a test file: their list is read once per schema.
    const tables = await sql<{ table_name: string }>`
      select table_name from information_schema.tables
      where table_schema = ${schema} and table_type = 'BASE TABLE'
      order by table_name`.execute(app.database.root);
    if (tables.rows.length === 0) throw new Error(`dbFingerprint: no tables in schema ${schema}`);
    text = tables.rows
      .map(({ table_name: t }) => {
        const row = (VOLATILE[t] ?? []).reduce((expr, c) => `${expr} - ${literal(c)}`, 'to_jsonb(x)');
        return `select ${literal(t)} as t, count(*)::int as n, coalesce(md5(string_agg(r, E'\\n' order by r)), '') as d
          from (select (${row})::text as r from ${ident(schema)}.${ident(t)} x) s`;
      })
      .join('\nunion all\n');
    fingerprintSql.set(schema, text);
  }
  const result = await sql<{ t: string; n: number; d: string }>`${sql.raw(text)}`.execute(app.database.root);
  const out: Fingerprint = {};
  for (const { t, n, d } of result.rows) if (!opts.exclude?.includes(t)) out[t] = { rows: n, digest: d };
  return out;
}

/** Row counts per table, for readable failure messages. */
export function counts(fp: Fingerprint): Record<string, number> {
  return Object.fromEntries(Object.entries(fp).map(([t, f]) => [t, f.rows]));
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

/** Differences between two fingerprints, as readable lines naming each table written (empty = nothing was written). */
export function fingerprintDiff(before: Fingerprint, after: Fingerprint, label: string): string[] {
  const out: string[] = [];
  for (const table of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const a = before[table];
    const b = after[table];
    if (a?.digest !== b?.digest) out.push(`${label}: ${table} changed (${a?.rows ?? 0} rows before, ${b?.rows ?? 0} after)`);
  }
  return out;
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
