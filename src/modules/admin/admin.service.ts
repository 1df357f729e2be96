import type { Static } from 'typebox';
import { gatewayDrift } from '../gateway/gateway.reconcile.js';
import type { Database, Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { iso } from '../../core/schemas.js';
import { reconcile } from '../credits/credits.port.js';
import { type Bucket, BUCKET_SECONDS, DEFAULT_SPAN_BUCKETS, MAX_BUCKETS, type ReconcileReport, type Stats, type StatsQuery } from './admin.js';
import { revenueSeries, statsSeries, statsTotals } from './admin.repository.js';

const int = (v: string | number | null | undefined): number => Number(v ?? 0);

/** The operator's read-only views over the whole database (service only; see docs/dashboard.md). */
export class AdminService {
  constructor(
    private readonly database: Database,
    private readonly clock: () => Date,
  ) {}

  /** Totals now, and activity per bucket over [from, to). */
  async stats(db: Executor, query: Static<typeof StatsQuery>): Promise<Static<typeof Stats>> {
    const bucket: Bucket = query.bucket ?? 'day';
    const width = BUCKET_SECONDS[bucket] * 1000;
    // `to` defaults to the end of the current bucket, so "now" is always inside the last one.
    const to = query.to ? new Date(query.to) : new Date(Math.floor(this.clock().getTime() / width) * width + width);
    const from = query.from ? new Date(query.from) : new Date(to.getTime() - DEFAULT_SPAN_BUCKETS[bucket] * width);
    if (!(from < to)) throw errors.invalidRequest('from must be before to', { field: 'from' });
    if ((to.getTime() - from.getTime()) / width > MAX_BUCKETS) {
      throw errors.invalidRequest(`At most ${MAX_BUCKETS} buckets per request: use a wider bucket or a shorter range`, { field: 'bucket' });
    }
    const schema = this.database.schema;
    const [points, revenue, totals] = await Promise.all([
      statsSeries(db, schema, bucket, from, to),
      revenueSeries(db, schema, bucket, from, to),
      statsTotals(db, schema),
    ]);
    const byAt = new Map<number, Record<string, number>>();
    for (const r of revenue) {
      const key = new Date(r.at).getTime();
      const m = byAt.get(key) ?? {};
      m[r.currency] = int(r.amount);
      byAt.set(key, m);
    }
    return {
      bucket,
      from: iso(from),
      to: iso(to),
      totals: {
        users: int(totals.one.users),
        balance: int(totals.one.balance),
        held: int(totals.one.held),
        credited: int(totals.one.credited),
        spent: int(totals.one.spent),
        expired: int(totals.one.expired),
        events: int(totals.one.events),
        revenue: Object.fromEntries(totals.revenue.map((r) => [r.currency, int(r.amount)])),
        jobs: Object.fromEntries(totals.jobs.map((r) => [r.status, int(r.n)])),
        unmatched_payments: int(totals.one.unmatched_payments),
        failed_webhooks: int(totals.one.failed_webhooks),
        rejected_webhooks: int(totals.one.rejected_webhooks),
      },
      series: points.map((p) => ({
        at: iso(p.at),
        users: int(p.users),
        granted: int(p.granted),
        spent: int(p.spent),
        held: int(p.held),
        expired: int(p.expired),
        events: int(p.events),
        revenue: byAt.get(new Date(p.at).getTime()) ?? {},
      })),
    };
  }

  /** The same checks as `tally reconcile`, over the whole database, in the caller's transaction (the service's: the owning role). */
  async reconcile(db: Executor): Promise<Static<typeof ReconcileReport>> {
    const report = await reconcile(this.database, db);
    // The gateway's carry and capture invariants join the ledger's (docs/gateway.md).
    const drift = [...report.drift, ...(await gatewayDrift(this.database, db))];
    return { ...report, ok: drift.length === 0, drift, checked_at: iso(this.clock()) };
  }
}
