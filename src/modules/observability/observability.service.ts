import { isIP } from 'node:net';
import type { Executor } from '../../db/database.js';
import type { ObservabilityConfig } from '../../config/config.js';
import { BatchBuffer } from '../../lib/batch-buffer.js';
import { errors } from '../../core/errors.js';
import { type Page, pageRequest, toPage } from '../../core/paging.js';
import type { Logger } from '../../core/logger.js';
import { fingerprint } from './observability.fingerprint.js';
import { Metrics, type MetricSources } from './observability.metrics.js';
import {
  apiLogList,
  apiLogsInsert,
  type ErrorLogRow,
  errorGroups,
  errorLogsInsert,
  performanceCompute,
  performanceLatestMinute,
  performanceMinutes,
  routeLatency,
} from './observability.repository.js';
import { Retention, type RetentionReport } from './observability.retention.js';
import { Scrubber } from './observability.scrub.js';
import type { ApiLog, ApiLogEntry, ErrorGroup, FailureEntry, LatencyMinute, RequestLogFilter, RequestRecorder, RouteLatency, StoredApiLog } from './observability.js';

/** Retention runs at most this often (the scheduler ticks every 30 s; a month's partitions need far less). */
const RETENTION_EVERY_MS = 10 * 60_000;
/** Minutes computed again on every run: rows of a minute may arrive until its buffer flushed. */
const RECOMPUTE_MINUTES = 2;
/** How far back the first run (or one after a long stop) computes. */
const MAX_CATCH_UP_MS = 24 * 3_600_000;

interface PendingError {
  entry: ApiLogEntry;
  failure: FailureEntry;
}

/**
 * The operator's view of the running API: every answered request into api_logs and every 5xx into
 * error_logs (both buffered and written in batches, off the request's path), the Prometheus
 * metrics, per-minute route latency (performance_metrics) and retention for every registered table.
 */
export class ObservabilityService implements RequestRecorder {
  readonly metrics: Metrics;
  readonly retention: Retention;
  private readonly apiLogs: BatchBuffer<ApiLogEntry> | null;
  private readonly errorLogs: BatchBuffer<PendingError> | null;
  private lastRetention = -Infinity;

  constructor(
    private readonly db: Executor,
    private readonly schema: string,
    config: ObservabilityConfig | undefined,
    private readonly scrubber: Scrubber,
    private readonly now: () => Date,
    sources: Omit<MetricSources, 'requestLogs'>,
    private readonly logger: Logger,
  ) {
    const buffering = config?.requestLogs ?? null;
    this.apiLogs = buffering ? new BatchBuffer((rows) => apiLogsInsert(this.db, this.schema, rows.map((r) => this.toStored(r))), buffering, (err, n) => this.logger.warn({ err, rows: n }, 'api_logs: a batch could not be written; its rows are lost')) : null;
    this.errorLogs = config?.errorLogs
      ? new BatchBuffer((rows) => errorLogsInsert(this.db, rows.map((r) => this.toErrorRow(r))), buffering ?? { batchSize: 100, flushMs: 1_000, maxBuffered: 10_000 }, (err, n) =>
          this.logger.warn({ err, rows: n }, 'error_logs: a batch could not be written; its rows are lost'),
        )
      : null;
    this.metrics = new Metrics({
      ...sources,
      requestLogs: () => (this.apiLogs ? { buffered: this.apiLogs.buffered, dropped: this.apiLogs.dropped, failed: this.apiLogs.failed } : null),
    });
    this.retention = new Retention(db, schema);
    const days = config?.retentionDays ?? {};
    const daysOf = (table: string, fallback: number | null) => (table in days ? (days[table] ?? null) : fallback);
    this.retention.register({ table: 'api_logs', column: 'created_at', days: daysOf('api_logs', 30), partitioned: true });
    this.retention.register({ table: 'error_logs', column: 'created_at', days: daysOf('error_logs', 90), partitioned: true });
    this.retention.register({ table: 'performance_metrics', column: 'minute', days: daysOf('performance_metrics', 90), partitioned: false });
    // Analytics events go by when Tally received them (docs/analytics.md).
    this.retention.register({ table: 'analytics_events', column: 'created_at', days: daysOf('analytics_events', 400), partitioned: false });
  }

  /** The HTTP layer's report of one answered request: counted at once, logged in the next batch. */
  answered(entry: ApiLogEntry, failure: FailureEntry | null): void {
    this.metrics.request(entry.method, entry.route ?? 'unmatched', entry.status, entry.durationMs / 1000);
    this.apiLogs?.add(entry);
    if (entry.status >= 500) this.errorLogs?.add({ entry, failure });
  }

  /** Writes every buffered row now (tests; shutdown goes through `close`). */
  async flush(): Promise<void> {
    await Promise.all([this.apiLogs?.flush(), this.errorLogs?.flush()]);
  }

  /** Shutdown: refuses new rows and writes the buffered ones. */
  async close(): Promise<void> {
    await Promise.all([this.apiLogs?.close(), this.errorLogs?.close()]);
  }

  async listRequests(query: RequestLogFilter & { limit?: number; cursor?: string }): Promise<Page<ApiLog>> {
    const page = pageRequest(query);
    if (query.from && query.to && query.from >= query.to) throw errors.invalidRequest('from must be before to', { field: 'from' });
    const rows = await apiLogList(this.db, page, query);
    return toPage(rows, page.limit, ({ id: _id, cursor_us: _c, ...log }) => log);
  }

  async listErrors(query: { from?: Date; to?: Date; route?: string; limit?: number }): Promise<{ data: ErrorGroup[] }> {
    return { data: await errorGroups(this.db, this.schema, { ...query, limit: query.limit ?? 50 }) };
  }

  /** p50/p95/p99 per route over the last `minutes` (exact, from the request logs). */
  async latency(minutes: number): Promise<{ from: string; to: string; data: RouteLatency[] }> {
    const to = this.now();
    const from = new Date(to.getTime() - minutes * 60_000);
    return { from: from.toISOString(), to: to.toISOString(), data: await routeLatency(this.db, this.schema, from, to) };
  }

  /** The per-minute series the scheduler computed, newest first. */
  async latencyMinutes(query: { minutes: number; route?: string; method?: string }): Promise<{ data: LatencyMinute[] }> {
    const to = this.now();
    const from = new Date(to.getTime() - query.minutes * 60_000);
    return { data: await performanceMinutes(this.db, { from, to, ...(query.route ? { route: query.route } : {}), ...(query.method ? { method: query.method } : {}) }) };
  }

  /**
   * The scheduler's work: performance_metrics for the minutes that ended (again for the last few,
   * whose rows may have arrived late), and retention when due (`force`: now).
   */
  async maintain(options: { force?: boolean } = {}): Promise<{ minutes: number; retention: RetentionReport[] | null }> {
    const now = this.now();
    const minutes = await this.computeMinutes(now);
    let retention: RetentionReport[] | null = null;
    if (options.force || now.getTime() - this.lastRetention >= RETENTION_EVERY_MS) {
      this.lastRetention = now.getTime();
      const run = await this.retention.run(now);
      for (const f of run.failures) this.logger.error({ err: f.error, table: f.table }, 'retention failed for a table');
      retention = run.reports;
    }
    return { minutes, retention };
  }

  async computeMinutes(now: Date): Promise<number> {
    // A minute is complete once its rows were flushed: its end plus the buffer's wait has passed.
    const settled = now.getTime() - 5_000;
    const to = new Date(Math.floor(settled / 60_000) * 60_000);
    const latest = await performanceLatestMinute(this.db);
    const resume = latest ? latest.getTime() - (RECOMPUTE_MINUTES - 1) * 60_000 : -Infinity;
    const from = new Date(Math.max(resume, to.getTime() - MAX_CATCH_UP_MS));
    if (from >= to) return 0;
    return performanceCompute(this.db, this.schema, from, to);
  }

  private toStored(e: ApiLogEntry): StoredApiLog {
    return {
      requestId: e.requestId,
      at: e.at,
      method: e.method.slice(0, 16),
      route: e.route === null ? null : e.route.slice(0, 512),
      path: this.scrubber.scrub(e.path).slice(0, 2048),
      status: e.status,
      durationMs: Math.max(0, Math.round(e.durationMs * 1000) / 1000),
      callerKind: e.callerKind,
      callerId: e.callerId,
      apiKeyId: e.apiKeyId,
      requestBytes: bytes(e.requestBytes),
      responseBytes: bytes(e.responseBytes),
      ip: e.ip !== undefined && isIP(e.ip) !== 0 ? e.ip : null,
      userAgent: this.productOf(e.userAgent),
    };
  }

  /** The user agent's product token, unless it is (or holds) something the scrubber takes out. */
  private productOf(ua: string | undefined): string | null {
    const product = productOf(ua);
    return product !== null && this.scrubber.scrub(product) === product ? product : null;
  }

  private toErrorRow({ entry, failure }: PendingError): ErrorLogRow {
    const err = describe(failure, entry.status);
    const message = this.scrubber.scrub(err.message).slice(0, 2000);
    const stack = err.stack === null ? null : this.scrubber.scrub(err.stack).slice(0, 8000);
    return {
      requestId: entry.requestId,
      at: entry.at,
      fingerprint: fingerprint(err.errorClass, message, stack),
      method: entry.method.slice(0, 16),
      route: entry.route,
      status: entry.status,
      errorClass: err.errorClass.slice(0, 200),
      message,
      stack,
      callerKind: entry.callerKind,
      callerId: entry.callerId,
    };
  }
}

function bytes(v: string | number | undefined): number | null {
  const n = typeof v === 'number' ? v : v !== undefined && /^\d{1,10}$/.test(v) ? Number(v) : Number.NaN;
  return Number.isSafeInteger(n) && n >= 0 && n <= 2_147_483_647 ? n : null;
}

/**
 * The user agent's first product token (`curl/8.5.0`, `tally-client/1.2`) and nothing else: the
 * rest of a User-Agent is free text a caller controls, where a secret could sit as well as anywhere.
 */
export function productOf(ua: string | undefined): string | null {
  if (!ua) return null;
  const m = /^([A-Za-z][A-Za-z0-9._-]{0,63})\/([A-Za-z0-9._+-]{1,32})(?=\s|$)/.exec(ua);
  return m ? `${m[1]}/${m[2]}` : null;
}

/** An error's class, message and stack; a 5xx answered without one is described by its status. */
function describe(failure: FailureEntry, status: number): { errorClass: string; message: string; stack: string | null } {
  if (failure instanceof Error) {
    const code = (failure as { code?: unknown }).code;
    const errorClass = failure.constructor.name === 'Error' && typeof code === 'string' ? `Error(${code})` : failure.constructor.name || failure.name;
    return { errorClass, message: failure.message || '(no message)', stack: failure.stack ?? null };
  }
  if (failure !== null && failure !== undefined) return { errorClass: typeof failure, message: String(failure), stack: null };
  return { errorClass: 'HttpStatus', message: `answered ${status} without an error`, stack: null };
}
