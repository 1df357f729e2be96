import { describe, expect, it } from 'vitest';
import { type DbSample, judge, type KindWindow, type Sample, type SoakTotals } from '../bench/src/soak-judge.js';
import { must } from '../src/lib/must.js';

/**
 * The soak's verdict (bench/src/soak-judge.ts) on synthetic runs: a steady one passes, and each kind
 * of drift the soak exists to catch — a leak, a p99 that climbs, holds or queue rows that pile up,
 * idempotency rows that do not match the traffic, a 5xx — fails it, by name.
 */
const db = (over: Partial<DbSample> = {}): DbSample => ({
  open_holds: 40,
  expired_unswept_holds: 5,
  idempotency_keys: 1000,
  idempotency_client_keys: 900,
  queue_due: 0,
  queue_pending: 10,
  queue_running: 0,
  queue_failed: 0,
  queue_rows: 100,
  ledger_entries: 5000,
  jobs_open: 10,
  webhook_events: 50,
  webhook_failed: 0,
  payments: 50,
  payments_unmatched: 0,
  ...over,
});

const kind = (p99: number, count = 1000): KindWindow => ({ count, p50: p99 / 3, p99, max: p99 * 2, statuses: { '201': count } });

interface Minute {
  rss?: [number, number];
  /** Mean load average in the window. */
  load?: number;
  /** CPU seconds both processes used in the window (12,000 requests a window). */
  cpu?: number;
  p99?: number;
  holds?: number;
  due?: number;
}

/**
 * start, minutes 1…n, end, drained; every minute steady (150 MB, p99 20 ms, 40 open holds, load 1.5,
 * 1 ms of CPU a request) unless `minutes[i]` says otherwise.
 */
function run(n: number, minutes: Record<number, Minute> = {}, drained: Partial<DbSample> = {}): Sample[] {
  let cpu = 0;
  const child = (name: string, rss: number) => ({
    name,
    pid: 1,
    rss_mb: rss,
    hwm_mb: rss,
    fds: 40,
    cpu_s: cpu / 2,
    ready_status: 200,
    ready_ms: 2,
    ready: {},
    log_warnings: 0,
    log_errors: 0,
    exited: null,
  });
  const sample = (label: string, minute: number | null, m: Minute, window: boolean, over: Partial<DbSample> = {}): Sample => {
    if (window) cpu += m.cpu ?? 12;
    return {
    label,
    minute,
    at: '2026-12-06T00:00:00.000Z',
    elapsed_s: 0,
    children: [child('tally-a', m.rss?.[0] ?? 150), child('tally-b', m.rss?.[1] ?? 150)],
    loadgen_rss_mb: 100,
    loadavg_1m: 1,
    db: db({ open_holds: m.holds ?? 40, queue_due: m.due ?? 0, ...over }),
    window: window ? { seconds: 60, requests: 12000, kinds: { debit_hot: kind(m.p99 ?? 20), check: kind(5) }, errors: 0, timeouts: 0, max_lag_ms: 3, load_mean: m.load ?? 1.5 } : null,
    };
  };
  const out = [sample('start', null, { rss: [120, 120], holds: 0 }, false, { idempotency_client_keys: 0, jobs_open: 0 })];
  for (let i = 1; i <= n; i++) out.push(sample(`minute ${i}`, i, minutes[i] ?? {}, true));
  const last = minutes[n] ?? {};
  out.push(sample('end', null, last, true));
  out.push(sample('drained', null, { ...last, holds: 0 }, false, { jobs_open: 0, queue_pending: 0, ...drained }));
  return out;
}

const totals = (over: Partial<SoakTotals> = {}): SoakTotals => ({
  target_rate: 200,
  achieved_rate: 199.5,
  requests: 60_000,
  dropped: 0,
  retries: 0,
  errors: 0,
  timeouts: 0,
  statuses: { debit_hot: { '201': 30_000, '402': 10 }, check: { '200': 29_990 } },
  unexpected: [],
  client_keys_answered: 900,
  client_keys_unknown: 0,
  ...over,
});

const clean = { ok: true, detail: 'no drift' };
const failed = (samples: Sample[], t: SoakTotals = totals(), reconcile = clean) =>
  judge({ samples, totals: t, reconcile, cores: 2 })
    .filter((v) => !v.ok)
    .map((v) => v.name);

describe('the soak verdict', () => {
  it('passes a steady run: memory flat after the first minute, p99 the same, holds and queue level, one row per key', () => {
    expect(failed(run(5))).toEqual([]);
    // Warming up in the first minute is not a leak; noise within the bounds is not either.
    expect(failed(run(5, { 1: { rss: [180, 175], p99: 30 }, 3: { p99: 60 }, 5: { rss: [200, 190], p99: 70, holds: 120 } }))).toEqual([]);
  });

  it('fails a process whose memory keeps growing, and names it', () => {
    expect(failed(run(5, { 1: { rss: [160, 160] }, 5: { rss: [160, 260] } }))).toEqual(['memory tally-b']);
    // On a long run, growth in the second half alone fails too, though within the whole run's bound
    // (+30 MB of +48): a plateau after warming up would not grow there.
    const late: Record<number, Minute> = {};
    for (let i = 1; i <= 60; i++) late[i] = { rss: [160 + Math.max(0, i - 30), 160] };
    expect(failed(run(60, late))).toEqual(['memory tally-a']);
    const warming: Record<number, Minute> = {};
    for (let i = 1; i <= 60; i++) warming[i] = { rss: [160 + Math.min(i, 30), 160] };
    expect(failed(run(60, warming))).toEqual([]);
  });

  it('fails a p99 that climbs past factor × first minute + slack', () => {
    expect(failed(run(5, { 1: { p99: 20 }, 5: { p99: 66 } }))).toEqual(['p99 debit_hot']);
    expect(failed(run(5, { 1: { p99: 20 }, 5: { p99: 64 } }))).toEqual([]);
  });

  it('calls a slower p99 inconclusive when the machine got much busier, unless Tally itself works harder per request', () => {
    const busier = { 1: { p99: 20, load: 3 }, 5: { p99: 200, load: 9 } };
    expect(failed(run(5, busier))).toEqual([]);
    expect(judge({ samples: run(5, busier), totals: totals(), reconcile: clean, cores: 2 }).find((v) => v.name === 'p99 debit_hot')).toMatchObject({
      ok: true,
      inconclusive: true,
    });
    // Busier, but not by the factor, or not past the cores: the p99 fails.
    expect(failed(run(5, { 1: { p99: 20, load: 3 }, 5: { p99: 200, load: 4 } }))).toEqual(['p99 debit_hot']);
    expect(failed(run(5, { 1: { p99: 20, load: 0.5 }, 5: { p99: 200, load: 1.9 } }))).toEqual(['p99 debit_hot']);
    // More CPU per request in the last window (1 ms → 2.5 ms; bound 2) fails whatever the machine did.
    expect(failed(run(5, { 1: { load: 3 }, 5: { load: 9, cpu: 30 } }))).toEqual(['CPU per request']);
    expect(failed(run(5, { 5: { cpu: 30 } }))).toEqual(['CPU per request']);
  });

  it('fails holds that pile up while the load runs, or are still open after the drain', () => {
    expect(failed(run(5, { 1: { holds: 40 }, 2: { holds: 45 }, 5: { holds: 200 } }))).toEqual(['open holds']);
    expect(failed(run(5, {}, { open_holds: 3 }))).toEqual(['open holds']);
    expect(failed(run(5, {}, { jobs_open: 1 }))).toEqual(['open holds']);
  });

  it('fails a queue backlog, a failed background job, or a backlog left after the drain', () => {
    expect(failed(run(5, { 3: { due: 51 } }))).toEqual(['queue backlog']);
    expect(failed(run(5, {}, { queue_failed: 1 }))).toEqual(['queue backlog']);
    expect(failed(run(5, {}, { queue_due: 1 }))).toEqual(['queue backlog']);
  });

  it('fails when idempotency rows differ from the distinct keys answered, either way', () => {
    expect(failed(run(5), totals({ client_keys_answered: 899 }))).toEqual(['idempotency rows']);
    expect(failed(run(5), totals({ client_keys_answered: 901 }))).toEqual(['idempotency rows']);
    // A request that got no answer may have committed or not: either is right (its timeout fails 'answers').
    expect(failed(run(5), totals({ client_keys_answered: 899, client_keys_unknown: 1, timeouts: 1 }))).toEqual(['answers']);
    expect(failed(run(5), totals({ client_keys_answered: 900, client_keys_unknown: 1, timeouts: 1 }))).toEqual(['answers']);
    expect(failed(run(5), totals({ client_keys_answered: 898, client_keys_unknown: 1, timeouts: 1 }))).toEqual(['answers', 'idempotency rows']);
  });

  it('fails any 5xx, connection error, unexpected answer, dropped arrival, unmatched payment or drift', () => {
    expect(failed(run(5), totals({ statuses: { debit_hot: { '201': 100, '503': 1 } } }))).toEqual(['answers']);
    expect(failed(run(5), totals({ errors: 1 }))).toEqual(['answers']);
    expect(failed(run(5), totals({ unexpected: [{ kind: 'webhook', what: 'not processed', count: 1, example: '{}' }] }))).toEqual(['answers']);
    expect(failed(run(5), totals({ dropped: 1 }))).toEqual(['arrival rate']);
    expect(failed(run(5), totals({ achieved_rate: 150 }))).toEqual(['arrival rate']);
    expect(failed(run(5, {}, { payments_unmatched: 1 }))).toEqual(['payments']);
    expect(failed(run(5), totals(), { ok: false, detail: '1 drift' })).toEqual(['reconcile']);
    const died = run(5);
    must(must(died[died.length - 1], 'a last sample').children[1], 'a second child').exited = { code: null, signal: 'SIGKILL', at: '2026-12-06T00:04:00.000Z' };
    expect(failed(died)).toEqual(['processes']);
  });
});
