import { must } from '../../src/lib/must.js';

/** Every latency of a run, kept exactly (a run is at most a few hundred thousand samples). */
export class Latencies {
  private buf = new Float64Array(1 << 16);
  private n = 0;

  /** Milliseconds. */
  add(ms: number): void {
    if (this.n === this.buf.length) {
      const bigger = new Float64Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf[this.n++] = ms;
  }

  get count(): number {
    return this.n;
  }

  /** Every sample, in the order recorded (to pool the samples of several runs). */
  values(): Float64Array {
    return this.buf.subarray(0, this.n);
  }

  /** Nearest-rank percentiles (p in 0–100) over everything recorded. */
  percentiles(ps: number[]): number[] {
    if (this.n === 0) return ps.map(() => Number.NaN);
    const sorted = this.buf.slice(0, this.n).sort();
    return ps.map((p) => must(sorted[Math.min(this.n - 1, Math.max(0, Math.ceil((p / 100) * this.n) - 1))], 'a rank within the samples'));
  }
}

/** Counts answers by status (HTTP status, or the OpResult status in process). */
export class StatusCounts {
  readonly byStatus = new Map<number, number>();

  add(status: number): void {
    this.byStatus.set(status, (this.byStatus.get(status) ?? 0) + 1);
  }

  get(status: number): number {
    return this.byStatus.get(status) ?? 0;
  }

  count(pred: (status: number) => boolean): number {
    let total = 0;
    for (const [s, n] of this.byStatus) if (pred(s)) total += n;
    return total;
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.byStatus].sort(([a], [b]) => a - b).map(([s, n]) => [String(s), n]));
  }
}

/** One side of one scenario, measured. */
export interface Measurement {
  /** Successful operations (2xx) per second of measured time. */
  opsPerSec: number;
  p50: number;
  p99: number;
  /** Successful operations in the measured window. */
  ok: number;
  /** Answers by status. */
  statuses: Record<string, number>;
  /** Connection errors (HTTP) or rejected promises (in process). */
  errors: number;
  /** Requests that got no answer in time (HTTP only). */
  timeouts: number;
  /** Measured seconds. */
  seconds: number;
  /** What was in flight (connections, or concurrent calls). */
  concurrency: number;
}

export function measurement(
  latencies: Latencies,
  statuses: StatusCounts,
  ok: number,
  seconds: number,
  concurrency: number,
  errors = 0,
  timeouts = 0,
): Measurement {
  const [p50, p99] = latencies.percentiles([50, 99]);
  return {
    opsPerSec: seconds > 0 ? ok / seconds : 0,
    p50: must(p50, 'two percentiles asked, two given'),
    p99: must(p99, 'two percentiles asked, two given'),
    ok,
    statuses: statuses.toJSON(),
    errors,
    timeouts,
    seconds,
    concurrency,
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Milliseconds since an hrtime.bigint() reading. */
export const since = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e6;
