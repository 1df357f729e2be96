/**
 * Rows gathered in memory and written in batches, off the path of whoever adds them: `add` only
 * pushes onto an array. A full batch is written at once; a partial one after `flushMs`. Memory is
 * bounded: past `maxBuffered` waiting rows a new row is dropped and counted, never queued — a slow
 * or absent database must not grow the process without end. One write runs at a time (rows keep
 * their order, and PGlite's one connection is not flooded). `close` writes everything left.
 */
export class BatchBuffer<T> {
  private rows: T[] = [];
  private writing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Rows dropped because the buffer was full. */
  dropped = 0;
  /** Rows lost because their batch's write failed. */
  failed = 0;

  constructor(
    private readonly write: (rows: T[]) => Promise<void>,
    private readonly options: { batchSize: number; flushMs: number; maxBuffered: number },
    /** Told about a failed write (its rows are counted in `failed`, not retried: logs are not money). */
    private readonly onError: (err: unknown, rows: number) => void = () => {},
  ) {}

  /** Rows waiting for a write (not counting the batch being written). */
  get buffered(): number {
    return this.rows.length;
  }

  add(row: T): void {
    if (this.closed || this.rows.length >= this.options.maxBuffered) {
      this.dropped++;
      return;
    }
    this.rows.push(row);
    if (this.rows.length >= this.options.batchSize) this.kick();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.kick();
      }, this.options.flushMs);
      this.timer.unref();
    }
  }

  /** Writes every row added so far; resolves once they are written (or counted as failed). */
  async flush(): Promise<void> {
    while (this.writing || this.rows.length > 0) {
      if (!this.writing) this.kick();
      await this.writing;
    }
  }

  /** Refuses new rows (they are counted as dropped) and writes the rest. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.flush();
  }

  /** Starts a write of the next batch unless one is running (which starts the next when it ends). */
  private kick(): void {
    if (this.writing || this.rows.length === 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.rows.splice(0, this.options.batchSize);
    this.writing = this.write(batch)
      .catch((err: unknown) => {
        this.failed += batch.length;
        this.onError(err, batch.length);
      })
      .finally(() => {
        this.writing = null;
        // Rows that arrived meanwhile: a full batch goes now, a partial one on the timer.
        if (this.rows.length >= this.options.batchSize) this.kick();
        else if (this.rows.length > 0 && !this.timer && !this.closed) {
          this.timer = setTimeout(() => {
            this.timer = null;
            this.kick();
          }, this.options.flushMs);
          this.timer.unref();
        }
      });
  }
}
