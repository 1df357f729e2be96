import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import type { PageRequest } from '../../core/paging.js';
import type { AnalyticsFilter, AnalyticsRow } from './analytics.js';

export interface AnalyticsInsert {
  id: string;
  source: string;
  client_id: string;
  event: string;
  user_id: string | null;
  anonymous_id: string | null;
  session_id: string | null;
  properties: string;
  context: string;
  occurred_at: Date;
  api_key_id: string | null;
  request_id: string;
}

const COLUMNS = ['id', 'client_id', 'source', 'event', 'user_id', 'anonymous_id', 'session_id', 'properties', 'context', 'occurred_at', 'api_key_id', 'request_id', 'created_at'] as const;

/**
 * Inserts a batch; rows whose (source, client_id) exists already — or came earlier in the same
 * batch — are skipped. Answers the client ids that were inserted.
 */
export async function analyticsInsert(db: Executor, rows: readonly AnalyticsInsert[]): Promise<Set<string>> {
  const inserted = await db
    .insertInto('analytics_events')
    .values(rows.map((r) => ({ ...r })))
    .onConflict((oc) => oc.columns(['source', 'client_id']).doNothing())
    .returning('client_id')
    .execute();
  return new Set(inserted.map((r) => r.client_id));
}

/** The stored event ids of a caller's client ids (what a replay answers). */
export async function analyticsIdsOf(db: Executor, source: string, clientIds: readonly string[]): Promise<Map<string, string>> {
  if (clientIds.length === 0) return new Map();
  const rows = await db.selectFrom('analytics_events').select(['id', 'client_id']).where('source', '=', source).where('client_id', 'in', [...clientIds]).execute();
  return new Map(rows.map((r) => [r.client_id, r.id]));
}

export async function analyticsUsersExist(db: Executor, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db.selectFrom('users').select('id').where('id', 'in', [...ids]).execute();
  return new Set(rows.map((r) => r.id));
}

export async function analyticsList(db: Executor, page: PageRequest, f: AnalyticsFilter): Promise<(AnalyticsRow & { cursor_us: number })[]> {
  let q = db.selectFrom('analytics_events').select([...COLUMNS]).select(cursorColumn('analytics_events').as('cursor_us'));
  if (f.event) q = q.where('event', '=', f.event);
  if (f.userId) q = q.where('user_id', '=', f.userId);
  if (f.anonymousId) q = q.where('anonymous_id', '=', f.anonymousId);
  if (f.sessionId) q = q.where('session_id', '=', f.sessionId);
  if (f.from) q = q.where('occurred_at', '>=', f.from);
  if (f.to) q = q.where('occurred_at', '<', f.to);
  if (page.after) q = q.where(cursorBefore('analytics_events', page.after));
  const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
  return rows.map((r) => ({ ...r, cursor_us: Number(r.cursor_us) })) as (AnalyticsRow & { cursor_us: number })[];
}

/** Events per UTC day (of occurred_at) and name, newest day first. */
export async function analyticsCounts(
  db: Executor,
  f: { from: Date; to: Date; event?: string; userId?: string },
  limit: number,
): Promise<{ day: string; event: string; count: number }[]> {
  const day = sql<string>`to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD')`;
  let q = db
    .selectFrom('analytics_events')
    .select([day.as('day'), 'event', sql<number>`count(*)::int8`.as('count')])
    .where('occurred_at', '>=', f.from)
    .where('occurred_at', '<', f.to);
  if (f.event) q = q.where('event', '=', f.event);
  if (f.userId) q = q.where('user_id', '=', f.userId);
  const rows = await q.groupBy([day, 'event']).orderBy('day', 'desc').orderBy('event').limit(limit).execute();
  return rows.map((r) => ({ day: r.day, event: r.event, count: Number(r.count) }));
}
