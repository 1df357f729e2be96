import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import type { PageRequest } from '../../core/paging.js';
import type { ApiLog, ErrorGroup, LatencyMinute, RequestLogFilter, RouteLatency, StoredApiLog } from './observability.js';

const iso = (v: Date | string): string => (v instanceof Date ? v : new Date(v)).toISOString();
const num = (v: unknown): number => Number(v);

/**
 * Many answered requests in one statement (the buffer's batch). The rows travel as one JSON
 * parameter expanded by `jsonb_to_recordset`, not as 14 parameters a row: a 500-row batch was
 * 7,000 values for the query builder to compile and PostgreSQL to bind, paid in node on the same
 * cores that serve the requests (docs/ledger.md, "/v1/check against the empty route").
 */
export async function apiLogsInsert(db: Executor, schema: string, rows: readonly StoredApiLog[]): Promise<void> {
  if (rows.length === 0) return;
  const json = JSON.stringify(
    rows.map((r) => [
      r.requestId, r.at.toISOString(), r.method, r.route, r.path, r.status, r.durationMs,
      r.callerKind, r.callerId, r.apiKeyId, r.requestBytes, r.responseBytes, r.ip, r.userAgent,
    ]),
  );
  // A request id is unique; a batch written twice (a retried flush) must not fail the rest.
  await sql`
    insert into ${sql.table(`${schema}.api_logs`)} (request_id, created_at, method, route, path, status, duration_ms, caller_kind,
                          caller_id, api_key_id, request_bytes, response_bytes, ip, user_agent)
    select r->>0, (r->>1)::timestamptz, r->>2, r->>3, r->>4, (r->>5)::smallint, (r->>6)::double precision, r->>7,
           r->>8, r->>9, (r->>10)::integer, (r->>11)::integer, r->>12, r->>13
    from jsonb_array_elements(${json}::jsonb) as r
    on conflict do nothing`.execute(db);
}

export interface ErrorLogRow {
  requestId: string;
  at: Date;
  fingerprint: string;
  method: string;
  route: string | null;
  status: number;
  errorClass: string;
  message: string;
  stack: string | null;
  callerKind: string;
  callerId: string | null;
}

export async function errorLogsInsert(db: Executor, rows: readonly ErrorLogRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto('error_logs')
    .values(
      rows.map((r) => ({
        request_id: r.requestId,
        created_at: r.at,
        fingerprint: r.fingerprint,
        method: r.method,
        route: r.route,
        status: r.status,
        error_class: r.errorClass,
        message: r.message,
        stack: r.stack,
        caller_kind: r.callerKind,
        caller_id: r.callerId,
      })),
    )
    .onConflict((oc) => oc.doNothing())
    .execute();
}

/** Request logs, newest first, filtered. */
export async function apiLogList(db: Executor, page: PageRequest, f: RequestLogFilter): Promise<(ApiLog & { id: string; cursor_us: number })[]> {
  let q = db.selectFrom('api_logs').selectAll('api_logs').select(cursorColumn('api_logs').as('cursor_us'));
  if (f.status !== undefined) q = q.where('status', '=', f.status);
  if (f.statusClass !== undefined) q = q.where('status', '>=', f.statusClass * 100).where('status', '<', f.statusClass * 100 + 100);
  if (f.route !== undefined) q = q.where('route', '=', f.route);
  if (f.method !== undefined) q = q.where('method', '=', f.method);
  if (f.callerId !== undefined) q = q.where('caller_id', '=', f.callerId);
  if (f.requestId !== undefined) q = q.where('request_id', '=', f.requestId);
  if (f.from) q = q.where('created_at', '>=', f.from);
  if (f.to) q = q.where('created_at', '<', f.to);
  if (page.after) q = q.where(cursorBefore('api_logs', page.after, 'request_id'));
  const rows = await q.orderBy('created_at', 'desc').orderBy('request_id', 'desc').limit(page.limit + 1).execute();
  return rows.map((r) => ({
    id: r.request_id,
    cursor_us: num(r.cursor_us),
    request_id: r.request_id,
    created_at: iso(r.created_at),
    method: r.method,
    route: r.route,
    path: r.path,
    status: r.status,
    duration_ms: r.duration_ms,
    caller_kind: r.caller_kind,
    caller_id: r.caller_id,
    api_key_id: r.api_key_id,
    request_bytes: r.request_bytes,
    response_bytes: r.response_bytes,
    ip: r.ip,
    user_agent: r.user_agent,
  }));
}

/** Error occurrences grouped by fingerprint, the most recently seen first. */
export async function errorGroups(db: Executor, schema: string, f: { from?: Date; to?: Date; route?: string; limit: number }): Promise<ErrorGroup[]> {
  const t = sql.table(`${schema}.error_logs`);
  const from = f.from ?? new Date(0);
  const to = f.to ?? new Date(Date.UTC(9999, 0, 1));
  const route = f.route ?? null;
  const rows = await sql<{
    fingerprint: string; error_class: string; message: string; route: string | null; method: string; count: number;
    first_seen: Date | string; last_seen: Date | string; last_request_id: string; last_stack: string | null;
  }>`
    with g as (
      select fingerprint, count(*)::int as count, min(created_at) as first_seen, max(created_at) as last_seen
      from ${t} where created_at >= ${from} and created_at < ${to} and (${route}::text is null or route = ${route}::text)
      group by fingerprint
    )
    select g.fingerprint, g.count, g.first_seen, g.last_seen, l.error_class, l.message, l.route, l.method,
           l.request_id as last_request_id, l.stack as last_stack
    from g cross join lateral (
      select e.error_class, e.message, e.route, e.method, e.request_id, e.stack from ${t} e
      where e.fingerprint = g.fingerprint and e.created_at = g.last_seen limit 1
    ) l
    order by g.last_seen desc, g.fingerprint
    limit ${f.limit}`.execute(db);
  return rows.rows.map((r) => ({ ...r, count: num(r.count), first_seen: iso(r.first_seen), last_seen: iso(r.last_seen) }));
}

/** Exact p50/p95/p99 per route over a window, straight from the request logs. */
export async function routeLatency(db: Executor, schema: string, from: Date, to: Date): Promise<RouteLatency[]> {
  const t = sql.table(`${schema}.api_logs`);
  const rows = await sql<RouteLatency>`
    select method, route, count(*)::int as requests, (count(*) filter (where status >= 500))::int as errors,
      percentile_cont(0.5) within group (order by duration_ms) as p50_ms,
      percentile_cont(0.95) within group (order by duration_ms) as p95_ms,
      percentile_cont(0.99) within group (order by duration_ms) as p99_ms,
      max(duration_ms) as max_ms
    from ${t} where created_at >= ${from} and created_at < ${to} and route is not null
    group by method, route order by requests desc, route, method`.execute(db);
  return rows.rows.map(latencyOf);
}

/**
 * Computes performance_metrics for the whole minutes in [from, to): one upsert per (minute,
 * method, route), so running it again over the same minutes replaces them with the same values.
 */
export async function performanceCompute(db: Executor, schema: string, from: Date, to: Date): Promise<number> {
  const logs = sql.table(`${schema}.api_logs`);
  const metrics = sql.table(`${schema}.performance_metrics`);
  const result = await sql`
    insert into ${metrics} (minute, method, route, requests, errors, p50_ms, p95_ms, p99_ms, max_ms)
    select date_trunc('minute', created_at, 'UTC'), method, route, count(*), count(*) filter (where status >= 500),
      percentile_cont(0.5) within group (order by duration_ms),
      percentile_cont(0.95) within group (order by duration_ms),
      percentile_cont(0.99) within group (order by duration_ms),
      max(duration_ms)
    from ${logs} where created_at >= ${from} and created_at < ${to} and route is not null
    group by 1, 2, 3
    on conflict (minute, method, route) do update set requests = excluded.requests, errors = excluded.errors,
      p50_ms = excluded.p50_ms, p95_ms = excluded.p95_ms, p99_ms = excluded.p99_ms, max_ms = excluded.max_ms`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** The latest minute computed (where the next computation resumes), if any. */
export async function performanceLatestMinute(db: Executor): Promise<Date | null> {
  const row = await db.selectFrom('performance_metrics').select((eb) => eb.fn.max('minute').as('m')).executeTakeFirst();
  return row?.m ? new Date(row.m as Date | string) : null;
}

export async function performanceMinutes(db: Executor, f: { from: Date; to: Date; route?: string; method?: string }): Promise<LatencyMinute[]> {
  let q = db.selectFrom('performance_metrics').selectAll().where('minute', '>=', f.from).where('minute', '<', f.to);
  if (f.route !== undefined) q = q.where('route', '=', f.route);
  if (f.method !== undefined) q = q.where('method', '=', f.method);
  const rows = await q.orderBy('minute', 'desc').orderBy('route').orderBy('method').limit(5_000).execute();
  return rows.map((r) => ({ minute: iso(r.minute), ...latencyOf(r) }));
}

function latencyOf(r: { method: string; route: string; requests: unknown; errors: unknown; p50_ms: unknown; p95_ms: unknown; p99_ms: unknown; max_ms: unknown }): RouteLatency {
  return {
    method: r.method,
    route: r.route,
    requests: num(r.requests),
    errors: num(r.errors),
    p50_ms: num(r.p50_ms),
    p95_ms: num(r.p95_ms),
    p99_ms: num(r.p99_ms),
    max_ms: num(r.max_ms),
  };
}
