import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { type AnalyticsConfig, DEFAULT_ANALYTICS } from '../../config/config.js';
import { newId } from '../../lib/ids.js';
import { WindowBudget } from '../../lib/window-budget.js';
import { ANALYTICS_LIMITS, type AnalyticsFilter, type EventIn } from './analytics.js';
import { type AnalyticsInsert, analyticsCounts, analyticsIdsOf, analyticsInsert, analyticsList, analyticsUsersExist } from './analytics.repository.js';

/** How long events are kept (docs/analytics.md): TALLY_ANALYTICS_RETENTION_DAYS, default 400. */
export const DEFAULT_ANALYTICS_RETENTION_DAYS = 400;

const DAY_MS = 86_400_000;

/**
 * Analytics events: who may send what, idempotency by the sender's id per caller, bounded
 * batches and sizes, reads and a daily aggregate for the service, and retention.
 */
export class AnalyticsService {
  /** Events per user per window (null: no limit); in this process, like the HTTP throttles. */
  private readonly perUser: WindowBudget | null;

  constructor(
    private readonly clock: () => Date,
    private readonly retentionDays: number = DEFAULT_ANALYTICS_RETENTION_DAYS,
    private readonly limits: AnalyticsConfig = DEFAULT_ANALYTICS,
    budgetEntries = 10_000,
  ) {
    const rate = limits.eventsPerUser;
    this.perUser = rate && rate.max > 0 ? new WindowBudget(rate.max, rate.windowSeconds * 1000, budgetEntries) : null;
  }

  /**
   * Records a batch. The service may send events about any user (or only an anonymous id); a user
   * only about themself (Segment's and PostHog's client keys send as the signed-in user). The
   * whole batch is checked before anything is written: one bad event → 4xx, nothing stored.
   */
  async send(db: Executor, principal: Principal, requestId: string, events: readonly EventIn[]) {
    if (principal.kind === 'anon') throw errors.unauthenticated();
    const now = this.clock();
    const source = principal.kind === 'user' ? `user:${principal.userId}` : 'service';
    if (events.length > this.limits.batchMax) {
      throw errors.invalidRequest(`At most ${this.limits.batchMax} events per request`, { field: 'events', limit: this.limits.batchMax });
    }
    const rows: AnalyticsInsert[] = events.map((e, i) => {
      const field = (name: string) => ({ field: `events[${i}].${name}` });
      let userId = e.user_id ?? null;
      if (principal.kind === 'user') {
        if (userId !== null && userId !== principal.userId) throw errors.forbidden('A user may send events about themself only');
        userId = principal.userId;
      } else if (userId === null && e.anonymous_id === undefined) {
        throw errors.invalidRequest('An event names a user_id or an anonymous_id', field('user_id'));
      }
      const properties = JSON.stringify(e.properties ?? {});
      const context = JSON.stringify(e.context ?? {});
      if (Buffer.byteLength(properties) > this.limits.propertiesMaxBytes) {
        throw errors.invalidRequest(`properties may be at most ${this.limits.propertiesMaxBytes} bytes of JSON`, field('properties'));
      }
      if (Buffer.byteLength(context) > ANALYTICS_LIMITS.contextBytes) {
        throw errors.invalidRequest(`context may be at most ${ANALYTICS_LIMITS.contextBytes} bytes of JSON`, field('context'));
      }
      const occurredAt = e.occurred_at ? new Date(e.occurred_at) : now;
      if (occurredAt.getTime() > now.getTime() + ANALYTICS_LIMITS.futureSkewMs) throw errors.invalidRequest('occurred_at is in the future', field('occurred_at'));
      if (this.retentionDays > 0 && occurredAt.getTime() < now.getTime() - this.retentionDays * DAY_MS) {
        throw errors.invalidRequest(`occurred_at is older than the ${this.retentionDays}-day retention`, field('occurred_at'));
      }
      return {
        id: newId('analyticsEvent'),
        source,
        client_id: e.id,
        event: e.event,
        user_id: userId,
        anonymous_id: e.anonymous_id ?? null,
        session_id: e.session_id ?? null,
        properties,
        context,
        occurred_at: occurredAt,
        api_key_id: principal.kind === 'user' ? principal.keyId : null,
        request_id: requestId,
      };
    });
    if (principal.kind === 'service') {
      const named = [...new Set(rows.flatMap((r) => (r.user_id ? [r.user_id] : [])))];
      const found = await analyticsUsersExist(db, named);
      const missing = named.find((id) => !found.has(id));
      if (missing) throw errors.notFound('User', missing);
    }
    // Last of the checks, so a refused batch spends nothing; every event counts, duplicates too
    // (each was sent and checked). One budget per user, whatever key or session sends.
    if (principal.kind === 'user' && this.perUser) {
      const taken = this.perUser.take(principal.userId, rows.length, now.getTime());
      if (!taken.ok) {
        throw errors.rateLimited(`Too many analytics events from this user; retry in ${taken.retryAfterSeconds} s`, { retry_after_seconds: taken.retryAfterSeconds });
      }
    }
    const inserted = await analyticsInsert(db, rows);
    // Duplicates answer the id stored first (by this batch or an earlier one).
    const stored = await analyticsIdsOf(db, source, rows.map((r) => r.client_id));
    const firstInBatch = new Set<string>();
    const results = rows.map((r) => {
      const duplicate = !inserted.has(r.client_id) || firstInBatch.has(r.client_id);
      firstInBatch.add(r.client_id);
      return { id: r.client_id, event_id: stored.get(r.client_id) ?? r.id, duplicate };
    });
    return { inserted: inserted.size, duplicates: results.length - inserted.size, results };
  }

  async list(db: Executor, principal: Principal, page: PageRequest, filter: AnalyticsFilter) {
    if (principal.kind !== 'service') throw errors.forbidden('Analytics events are read with the service key');
    if (filter.from && filter.to && filter.from >= filter.to) throw errors.invalidRequest('from must be before to', { field: 'from' });
    return analyticsList(db, page, filter);
  }

  /** Counts per UTC day and event name over [from, to) (default: the last 30 days), at most 400 days. */
  async counts(db: Executor, principal: Principal, q: { from?: Date; to?: Date; event?: string; userId?: string }) {
    if (principal.kind !== 'service') throw errors.forbidden('Analytics events are read with the service key');
    const to = q.to ?? new Date(this.clock().getTime() + DAY_MS);
    const from = q.from ?? new Date(to.getTime() - 31 * DAY_MS);
    if (from >= to) throw errors.invalidRequest('from must be before to', { field: 'from' });
    if (to.getTime() - from.getTime() > ANALYTICS_LIMITS.countsDays * DAY_MS) {
      throw errors.invalidRequest(`the window may span at most ${ANALYTICS_LIMITS.countsDays} days`, { field: 'from' });
    }
    const rows = await analyticsCounts(db, { from, to, ...(q.event ? { event: q.event } : {}), ...(q.userId ? { userId: q.userId } : {}) }, ANALYTICS_LIMITS.countsRows + 1);
    return { data: rows.slice(0, ANALYTICS_LIMITS.countsRows), truncated: rows.length > ANALYTICS_LIMITS.countsRows };
  }
}
