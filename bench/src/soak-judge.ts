import { must } from '../../src/lib/must.js';
/**
 * The soak's verdict (`tally bench --soak`): pure functions over what the run recorded, so the
 * thresholds can be tested on synthetic samples (test/bench-soak-judge.test.ts). bench/README.md
 * states each threshold and why.
 */

/** Latency and answers of one request kind in one sampling window. */
export interface KindWindow {
  count: number;
  p50: number;
  p99: number;
  max: number;
  statuses: Record<string, number>;
}

/** One Tally process at one sample. */
export interface ChildSample {
  name: string;
  pid: number;
  /** VmRSS and VmHWM (peak) from /proc/<pid>/status, MB; null when unreadable. */
  rss_mb: number | null;
  hwm_mb: number | null;
  /** Open file descriptors (sockets included), from /proc/<pid>/fd. */
  fds: number | null;
  /** CPU seconds used since it started (user + system, /proc/<pid>/stat). */
  cpu_s: number | null;
  /** GET /ready: status (0 = no answer), time, and what it reported. */
  ready_status: number;
  ready_ms: number;
  ready: unknown;
  /** pino lines at warn / error+ since the process started. */
  log_warnings: number;
  log_errors: number;
  /** Set once the process has ended (it must not, before the soak stops it). */
  exited: { code: number | null; signal: string | null; at: string } | null;
}

/** Counts in the bench schema at one sample. */
export interface DbSample {
  /** credit_holds with status 'held' (in flight, or expired and not yet swept). */
  open_holds: number;
  /** …of which already past expires_at (the sweeper or the account's next batch settles them). */
  expired_unswept_holds: number;
  idempotency_keys: number;
  /** Rows under the keys this run sent (prefix `soak-<tag>-`). */
  idempotency_client_keys: number;
  /** background_jobs pending and due (run_at ≤ now): the queue's backlog. */
  queue_due: number;
  queue_pending: number;
  queue_running: number;
  queue_failed: number;
  queue_rows: number;
  ledger_entries: number;
  /** jobs pending or processing. */
  jobs_open: number;
  webhook_events: number;
  webhook_failed: number;
  payments: number;
  /** Payments not matched to a user (every soak webhook names an existing user and the package's price). */
  payments_unmatched: number;
}

export interface Window {
  seconds: number;
  requests: number;
  kinds: Record<string, KindWindow>;
  errors: number;
  timeouts: number;
  /** Worst delay of the load generator behind its schedule (ms): its own health, not Tally's. */
  max_lag_ms: number;
  /** The machine's 1-minute load average, read every 5 s in the window, averaged (other work included). */
  load_mean: number;
}

export interface Sample {
  /** 'start' (before any traffic), 'warm', 'minute N', 'end' (load stopped, in-flight answered), 'drained'. */
  label: string;
  /** 1-based window number for the periodic samples; null for the others. */
  minute: number | null;
  at: string;
  elapsed_s: number;
  children: ChildSample[];
  loadgen_rss_mb: number;
  /** The machine's 1-minute load average (other work on it included): read the latencies with it. */
  loadavg_1m: number;
  db: DbSample;
  /** Answers that completed since the previous sample; null for start/warm/drained. */
  window: Window | null;
}

export interface SoakTotals {
  target_rate: number;
  achieved_rate: number;
  requests: number;
  /** Arrivals not sent because the in-flight cap was reached. */
  dropped: number;
  /** 5xx the client answered by sending the same request again (each 5xx is also in `statuses`). */
  retries: number;
  errors: number;
  timeouts: number;
  /** Answers by kind and status. */
  statuses: Record<string, Record<string, number>>;
  /** Answers that are not what that request must get (wrong status, or a body/header that says so). */
  unexpected: { kind: string; what: string; count: number; example: string }[];
  /** Distinct Idempotency-Keys that got an answer below 500 (each must leave exactly one row). */
  client_keys_answered: number;
  /** Keyed requests that got no answer at all: each may have committed (a row) or not. */
  client_keys_unknown: number;
}

export interface SoakThresholds {
  /** Per process, RSS at the end may exceed RSS after the first minute by max(this, fraction × it). */
  rssGrowthMb: number;
  rssGrowthFraction: number;
  /** Last window's p99 ≤ factor × first window's p99 + slack, per kind with enough answers in both. */
  p99Factor: number;
  p99SlackMs: number;
  p99MinSamples: number;
  /** Open holds at the last window ≤ factor × the largest of the first two samples + slack. */
  holdsFactor: number;
  holdsSlack: number;
  /** Due background jobs at any periodic sample. */
  queueDueMax: number;
  /** The generator must send at least this fraction of the target rate (else the soak measured less). */
  minRateFraction: number;
  /**
   * A p99 past its bound is inconclusive, not a failure, when the machine was this much busier in the
   * last window than in the first (mean load average, and above the core count): on shared cores the
   * neighbours' work, not Tally, may have made it slower. Tally's own CPU per request decides then.
   */
  busierFactor: number;
  /** Tally's CPU time per request (both processes) in the last window ≤ factor × the first's + slack. */
  cpuFactor: number;
  cpuSlackMs: number;
}

export const DEFAULT_THRESHOLDS: SoakThresholds = {
  rssGrowthMb: 48,
  rssGrowthFraction: 0.2,
  p99Factor: 2,
  p99SlackMs: 25,
  p99MinSamples: 100,
  holdsFactor: 2,
  holdsSlack: 50,
  queueDueMax: 50,
  minRateFraction: 0.95,
  busierFactor: 1.5,
  cpuFactor: 1.5,
  cpuSlackMs: 0.5,
};

export interface Verdict {
  name: string;
  /** False fails the soak. */
  ok: boolean;
  /** Past its bound, but the machine changed under it (see busierFactor): reported, does not fail. */
  inconclusive?: boolean;
  detail: string;
}

const mb = (n: number | null) => (n === null ? '?' : `${n.toFixed(1)} MB`);
const msText = (n: number) => `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`;

/** Every verdict of a soak; it passed when all are ok. */
export function judge(input: {
  samples: Sample[];
  totals: SoakTotals;
  reconcile: { ok: boolean; detail: string };
  thresholds?: SoakThresholds;
  /** The machine's cores (a load average above it means runnable work waited for a core). */
  cores: number;
}): Verdict[] {
  const t = input.thresholds ?? DEFAULT_THRESHOLDS;
  const { samples, totals } = input;
  const verdicts: Verdict[] = [];
  const periodic = samples.filter((s) => s.minute !== null);
  const start = samples.find((s) => s.label === 'start');
  const end = samples.find((s) => s.label === 'end');
  const drained = samples.find((s) => s.label === 'drained');
  const firstMinute = periodic[0];

  // 1. Answers: every request got the answer it must (5xx, connection errors and timeouts fail).
  const fiveXX = Object.entries(totals.statuses).flatMap(([kind, by]) =>
    Object.entries(by)
      .filter(([s]) => Number(s) >= 500)
      .map(([s, n]) => `${kind} ${s}×${n}`),
  );
  verdicts.push({
    name: 'answers',
    ok: fiveXX.length === 0 && totals.unexpected.length === 0 && totals.errors === 0 && totals.timeouts === 0,
    detail:
      `${totals.requests.toLocaleString('en-US')} requests; 5xx: ${fiveXX.length ? fiveXX.join(', ') : 'none'}; ` +
      `other unexpected: ${totals.unexpected.length ? totals.unexpected.map((u) => `${u.kind} ${u.what}×${u.count} (e.g. ${u.example.slice(0, 160)})`).join('; ') : 'none'}; ` +
      `${totals.errors} connection error(s), ${totals.timeouts} timeout(s)`,
  });

  // 2. The load was what it claims: the fixed rate, nothing dropped.
  verdicts.push({
    name: 'arrival rate',
    ok: totals.achieved_rate >= t.minRateFraction * totals.target_rate && totals.dropped === 0,
    detail: `${totals.achieved_rate.toFixed(1)} requests/s sent for a target of ${totals.target_rate}/s (≥ ${Math.round(t.minRateFraction * 100)}%); ${totals.dropped} arrival(s) dropped at the in-flight cap`,
  });

  // 3. Memory: per process, RSS after the first minute → the end of the load.
  if (firstMinute && end) {
    firstMinute.children.forEach((c, i) => {
      const from = c.rss_mb;
      const to = end.children[i]?.rss_mb ?? null;
      const allowed = from === null ? 0 : Math.max(t.rssGrowthMb, t.rssGrowthFraction * from);
      const growth = from === null || to === null ? null : to - from;
      let ok = growth !== null && growth <= allowed;
      let detail = `start ${mb(start?.children[i]?.rss_mb ?? null)}, after minute 1 ${mb(from)}, end ${mb(to)}: ${growth === null ? 'unreadable' : `${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB`} (allowed +${allowed.toFixed(1)} MB)`;
      // A leak keeps growing; warming up stops: on longer runs the second half must grow less than half the bound.
      if (periodic.length >= 6) {
        const mid = periodic[Math.floor(periodic.length / 2) - 1]?.children[i]?.rss_mb ?? null;
        const late = mid === null || to === null ? null : to - mid;
        const lateOk = late !== null && late <= allowed / 2;
        ok = ok && lateOk;
        detail += `; second half ${late === null ? '?' : `${late >= 0 ? '+' : ''}${late.toFixed(1)} MB`} (allowed +${(allowed / 2).toFixed(1)} MB)`;
      }
      verdicts.push({ name: `memory ${c.name}`, ok, detail });
    });
  } else {
    verdicts.push({ name: 'memory', ok: false, detail: 'no sample after the first minute and at the end' });
  }

  // 4. Latency: p99 of the first window vs the last, per kind with enough answers in both; and
  // Tally's own CPU per request, which the neighbours' load hardly changes.
  const timed = periodic.filter((s) => s.window);
  const firstS = timed[0];
  const lastS = timed[timed.length - 1];
  const first = firstS?.window;
  const last = lastS?.window;
  if (firstS && lastS && first && last && timed.length >= 2) {
    const busier = last.load_mean > t.busierFactor * first.load_mean && last.load_mean > input.cores;
    const machine = `machine load ${first.load_mean.toFixed(1)} → ${last.load_mean.toFixed(1)} on ${input.cores} cores`;
    for (const kind of Object.keys(first.kinds).sort()) {
      const a = must(first.kinds[kind], `the first window has ${kind}`);
      const b = last.kinds[kind];
      if (!b || a.count < t.p99MinSamples || b.count < t.p99MinSamples) continue;
      const bound = t.p99Factor * a.p99 + t.p99SlackMs;
      const within = b.p99 <= bound;
      verdicts.push({
        name: `p99 ${kind}`,
        ok: within || busier,
        ...(!within && busier ? { inconclusive: true } : {}),
        detail: `first window ${msText(a.p99)} (${a.count}), last ${msText(b.p99)} (${b.count}); bound ${msText(bound)}${!within && busier ? `; ${machine}: not Tally's to answer for` : ''}`,
      });
    }
    const cpuPerRequest = (from: Sample | undefined, to: Sample) => {
      if (!from || !to.window || to.window.requests === 0) return null;
      let cpu = 0;
      for (let i = 0; i < to.children.length; i++) {
        const x = from.children[i]?.cpu_s;
        const y = to.children[i]?.cpu_s;
        if (x == null || y == null) return null;
        cpu += y - x;
      }
      return (cpu * 1000) / to.window.requests;
    };
    const before = (s: Sample) => samples[samples.indexOf(s) - 1];
    const cpuA = cpuPerRequest(before(firstS), firstS);
    const cpuB = cpuPerRequest(before(lastS), lastS);
    if (cpuA !== null && cpuB !== null) {
      const bound = t.cpuFactor * cpuA + t.cpuSlackMs;
      verdicts.push({
        name: 'CPU per request',
        ok: cpuB <= bound,
        detail: `Tally's processes: ${cpuA.toFixed(2)} ms a request in the first window, ${cpuB.toFixed(2)} in the last (bound ${bound.toFixed(2)}); ${machine}`,
      });
    }
  } else {
    verdicts.push({ name: 'p99', ok: true, detail: 'fewer than two sampling windows: nothing to compare' });
  }

  // 5. Holds: not growing while the load runs; none left once it stopped and the TTLs ran out.
  if (periodic.length > 0 && drained) {
    const early = Math.max(...periodic.slice(0, 2).map((s) => s.db.open_holds));
    const lastOpen = periodic[periodic.length - 1]?.db.open_holds ?? 0;
    const bound = t.holdsFactor * early + t.holdsSlack;
    verdicts.push({
      name: 'open holds',
      ok: lastOpen <= bound && drained.db.open_holds === 0 && drained.db.jobs_open === 0,
      detail:
        `first window ${periodic[0]?.db.open_holds}, last ${lastOpen} (bound ${bound}); after the drain ${drained.db.open_holds} open hold(s), ` +
        `${drained.db.jobs_open} open job(s) (must be 0)`,
    });
  }

  // 6. The background queue: no backlog, nothing failed.
  if (periodic.length > 0 && drained && start) {
    const worst = Math.max(...periodic.map((s) => s.db.queue_due));
    const failed = drained.db.queue_failed - start.db.queue_failed;
    verdicts.push({
      name: 'queue backlog',
      ok: worst <= t.queueDueMax && drained.db.queue_due === 0 && failed === 0,
      detail: `due background jobs: at most ${worst} at a sample (bound ${t.queueDueMax}), ${drained.db.queue_due} after the drain; ${failed} failed; ${drained.db.queue_pending} pending`,
    });
  }

  // 7. Idempotency: one row per distinct key answered, no more, no less.
  if (drained) {
    const rows = drained.db.idempotency_client_keys;
    verdicts.push({
      name: 'idempotency rows',
      ok: rows >= totals.client_keys_answered && rows <= totals.client_keys_answered + totals.client_keys_unknown,
      detail:
        `${rows.toLocaleString('en-US')} row(s) under this run's keys for ${totals.client_keys_answered.toLocaleString('en-US')} distinct key(s) answered` +
        (totals.client_keys_unknown ? ` and ${totals.client_keys_unknown} unanswered (each may have committed)` : ' (must be equal)') +
        '; ' +
        `${(drained.db.idempotency_keys - (start?.db.idempotency_keys ?? 0)).toLocaleString('en-US')} new rows in all (internal scopes included)`,
    });
  }

  // 8. Both processes up to the end; every /ready 200; no error lines in either process.
  const gone = (samples[samples.length - 1]?.children ?? []).filter((c) => c.exited);
  verdicts.push({
    name: 'processes',
    ok: gone.length === 0,
    detail: gone.length
      ? gone.map((c) => `${c.name} (pid ${c.pid}) ended at ${c.exited?.at} with ${c.exited?.signal ? `signal ${c.exited?.signal}` : `exit code ${c.exited?.code}`}`).join('; ')
      : 'every Tally process ran to the end',
  });
  const notReady = samples.flatMap((s) => s.children.filter((c) => c.ready_status !== 200).map((c) => `${s.label} ${c.name} ${c.ready_status}`));
  verdicts.push({ name: 'ready', ok: notReady.length === 0, detail: notReady.length ? notReady.join(', ') : `GET /ready 200 from every process at all ${samples.length} samples` });
  const lastChildren = (drained ?? end ?? samples[samples.length - 1])?.children ?? [];
  const errorLines = lastChildren.reduce((n, c) => n + c.log_errors, 0);
  verdicts.push({
    name: 'error logs',
    ok: errorLines === 0,
    detail: lastChildren.map((c) => `${c.name}: ${c.log_errors} error, ${c.log_warnings} warn line(s)`).join('; ') || 'no process',
  });
  if (drained) {
    verdicts.push({
      name: 'payments',
      ok: drained.db.webhook_failed === 0 && drained.db.payments_unmatched === 0,
      detail: `${drained.db.payments} payment(s), ${drained.db.payments_unmatched} unmatched; ${drained.db.webhook_events} webhook event(s), ${drained.db.webhook_failed} failed`,
    });
  }

  // 9. The ledger.
  verdicts.push({ name: 'reconcile', ok: input.reconcile.ok, detail: input.reconcile.detail });
  return verdicts;
}
