/** One item's outcome inside a batch: a refusal of that item is a value, not the batch's failure. */
export type ItemOutcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

/**
 * Group commit for work that is cheap per item and dear per transaction. Idle, an item runs at once
 * (no timer, no added latency); while up to `maxParallel` batches are in flight, everything that
 * arrives waits and goes in the next batch together (up to `maxBatch`). `runBatch` answers one
 * outcome per item, in order. If the batch itself fails (a deadlock, a lock wait past its bound, a
 * refusal it cannot isolate), each of its items runs again on its own through `runOne`, outside the
 * batch slots, so one bad item costs the others a retry, never their answer.
 */
export class GroupCommit<I, R> {
  private queue: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private running = 0;
  private scheduled = false;
  /** Items of failed batches running on their own. */
  private loose = 0;
  private readonly idle = new Set<() => void>();
  /** Transactions run as batches (more than one item), the largest, and batches that fell back to one by one. */
  readonly stats = { batches: 0, largest: 0, fallbacks: 0 };

  constructor(
    private readonly runBatch: (items: I[]) => Promise<ItemOutcome<R>[]>,
    private readonly runOne: (item: I) => Promise<R>,
    private readonly options: { maxBatch: number; maxParallel: number },
    /** Told why a batch failed before its items run again one by one. */
    private readonly onFallback: (err: unknown, items: number) => void = () => {},
  ) {}

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /**
   * Starts the next batch after the I/O already read in this turn of the event loop has been
   * handled (setImmediate), so requests that arrived together go together even when a transaction
   * runs in one turn (PGlite, in process, answers without yielding to I/O). Costs one loop turn.
   */
  private schedule(): void {
    if (this.scheduled || this.running >= this.options.maxParallel) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  /** Resolves once nothing is queued or running (shutdown, tests). */
  drained(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0 && !this.scheduled && this.loose === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  private pump(): void {
    while (this.running < this.options.maxParallel && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.maxBatch);
      this.running++;
      void this.runOneBatch(batch).finally(() => {
        this.running--;
        this.schedule();
        this.checkIdle();
      });
    }
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.running > 0 || this.queue.length > 0 || this.scheduled || this.loose > 0) return;
    for (const done of this.idle) done();
    this.idle.clear();
  }

  private async runOneBatch(batch: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[]): Promise<void> {
    // A lone item goes through `runBatch` too: a batch's bounds (a short lock wait) hold for it, and
    // if it cannot finish within them it runs again outside the slots, like any failed batch.
    let outcomes: ItemOutcome<R>[];
    if (batch.length > 1) this.stats.batches++;
    this.stats.largest = Math.max(this.stats.largest, batch.length);
    try {
      outcomes = await this.runBatch(batch.map((b) => b.item));
    } catch (err) {
      this.stats.fallbacks++;
      if (batch.length > 1) this.onFallback(err, batch.length);
      // The batch as a whole failed: each item on its own, so each gets its own answer. They run
      // outside the batch slots, which free at once: an item that waits long on its own (a row
      // another transaction keeps locked) holds up nobody else's batch.
      for (const b of batch) {
        this.loose++;
        void this.runOne(b.item)
          .then(b.resolve, b.reject)
          .finally(() => {
            this.loose--;
            this.checkIdle();
          });
      }
      return;
    }
    batch.forEach((b, i) => {
      const o = outcomes[i];
      if (!o) b.reject(new Error('a batch answered fewer outcomes than items'));
      else if (o.ok) b.resolve(o.value);
      else b.reject(o.error);
    });
  }
}
