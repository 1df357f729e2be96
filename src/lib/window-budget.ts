/**
 * Amounts per key in fixed windows, in this process (the same model as the HTTP throttles,
 * src/http/rate-limits.ts, which count requests; this counts units, e.g. events in a batch).
 * A take that would pass the budget takes nothing: a refused batch spends none of it. At most
 * `entries` keys are remembered (the least recently used is forgotten first).
 */
export class WindowBudget {
  private readonly windows = new Map<string, { start: number; used: number }>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly entries: number,
  ) {}

  /** Takes `n` from `key`'s budget at `nowMs`, or says how long until its window ends. */
  take(key: string, n: number, nowMs: number): { ok: true } | { ok: false; retryAfterSeconds: number } {
    let w = this.windows.get(key);
    if (w && nowMs - w.start >= this.windowMs) w = undefined;
    w ??= { start: nowMs, used: 0 };
    // Re-inserted: the map's order is the order of last use.
    this.windows.delete(key);
    this.windows.set(key, w);
    if (this.windows.size > this.entries) {
      const oldest = this.windows.keys().next().value;
      if (oldest !== undefined) this.windows.delete(oldest);
    }
    if (w.used + n > this.max) return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((w.start + this.windowMs - nowMs) / 1000)) };
    w.used += n;
    return { ok: true };
  }
}
