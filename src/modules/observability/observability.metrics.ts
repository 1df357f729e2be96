import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What /metrics reads at scrape time from the rest of the process (wired by the composition root). */
export interface MetricSources {
  /** Due background jobs not yet started, and how long the oldest has been due. */
  queue: () => Promise<{ depth: number; lagSeconds: number }>;
  /** Money operations (and usage events) waiting in this process for a ledger transaction. */
  ledgerWaiting: () => { ledger: number; usage: number };
  /** Each gateway upstream's circuit as this process sees it. */
  upstreams: () => Promise<readonly { id: string; type: string; state: string }[]>;
  /** The request-log buffer: rows waiting, dropped because it was full, lost to a failed write. */
  requestLogs: () => { buffered: number; dropped: number; failed: number } | null;
}

const UPSTREAM_STATES = ['closed', 'half_open', 'open', 'disabled'] as const;

/**
 * Tally's Prometheus metrics, on a registry of its own (never prom-client's global one: two apps in
 * one process — the tests — must not share counters). Labels are bounded: the route's template,
 * never its URL; the status code; upstream ids an operator created.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly durations: Histogram<'method' | 'route' | 'status'>;
  private readonly batchSize: Histogram<'queue'>;
  private readonly batchSeconds: Histogram<'queue' | 'outcome'>;
  private readonly deliveries: Counter<'outcome'>;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'tally_http_requests_total',
      help: 'Answered HTTP requests by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.durations = new Histogram({
      name: 'tally_http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.batchSize = new Histogram({
      name: 'tally_ledger_batch_size',
      help: 'Operations per ledger transaction (group commit)',
      labelNames: ['queue'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers,
    });
    this.batchSeconds = new Histogram({
      name: 'tally_ledger_batch_duration_seconds',
      help: 'Time a ledger transaction took, begin to commit',
      labelNames: ['queue', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    });
    this.deliveries = new Counter({
      name: 'tally_webhook_deliveries_total',
      help: 'Outgoing webhook delivery attempts by outcome (succeeded, pending = will retry, failed = gave up, canceled)',
      labelNames: ['outcome'],
      registers,
    });
    new Gauge({
      name: 'tally_ledger_waiting',
      help: 'Operations waiting in this process for a ledger transaction',
      labelNames: ['queue'],
      registers,
      collect() {
        const w = sources.ledgerWaiting();
        this.set({ queue: 'ledger' }, w.ledger);
        this.set({ queue: 'usage' }, w.usage);
      },
    });
    const queueDepth = new Gauge({ name: 'tally_queue_depth', help: 'Background jobs due and not yet started', registers });
    new Gauge({
      name: 'tally_queue_lag_seconds',
      help: 'How long the oldest due background job has waited to start',
      registers,
      async collect() {
        const q = await sources.queue();
        queueDepth.set(q.depth);
        this.set(q.lagSeconds);
      },
    });
    new Gauge({
      name: 'tally_gateway_upstream_state',
      help: "Each gateway upstream's circuit: 1 for its current state, 0 for the others",
      labelNames: ['upstream', 'type', 'state'],
      registers,
      async collect() {
        this.reset();
        for (const u of await sources.upstreams()) {
          for (const s of UPSTREAM_STATES) this.set({ upstream: u.id, type: u.type, state: s }, u.state === s ? 1 : 0);
        }
      },
    });
    const logs = (pick: 'buffered' | 'dropped' | 'failed') => sources.requestLogs()?.[pick] ?? 0;
    new Gauge({ name: 'tally_api_logs_buffered', help: 'Request-log rows waiting in memory for their batch', registers, collect() { this.set(logs('buffered')); } });
    // Counters read from the buffer's own totals at scrape time (it counts; the registry reports).
    new Counter({ name: 'tally_api_logs_dropped_total', help: 'Request-log rows dropped because the buffer was full', registers, collect() { this.reset(); this.inc(logs('dropped')); } });
    new Counter({ name: 'tally_api_logs_failed_total', help: 'Request-log rows lost to a failed batch write', registers, collect() { this.reset(); this.inc(logs('failed')); } });
  }

  request(method: string, route: string, status: number, seconds: number): void {
    const labels = { method, route, status: String(status) };
    this.requests.inc(labels);
    this.durations.observe(labels, seconds);
  }

  ledgerBatch(queue: 'ledger' | 'usage', size: number, seconds: number, ok: boolean): void {
    this.batchSize.observe({ queue }, size);
    this.batchSeconds.observe({ queue, outcome: ok ? 'ok' : 'error' }, seconds);
  }

  webhookDelivery(outcome: string): void {
    this.deliveries.inc({ outcome });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
