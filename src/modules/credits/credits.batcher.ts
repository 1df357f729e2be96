/**
 * Group commit per account. Operations on one account are queued; while one transaction for the
 * account is in flight, everything that arrives for it waits and then goes in the next
 * transaction together. A hot account therefore pays one row lock and one commit per batch, not per
 * operation, and a cold one still runs each operation at once (no timer, no added latency).
 * Each caller's promise resolves only after its batch committed: answers are durable.
 */
export class AccountBatcher<Op, Result> {
  private readonly queues = new Map<string, { items: { op: Op; resolve: (r: Result) => void; reject: (e: unknown) => void }[] }>();

  constructor(
    private readonly run: (accountId: string, ops: Op[]) => Promise<Result[]>,
    private readonly maxBatch: number,
  ) {}

  submit(accountId: string, op: Op): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      const queue = this.queues.get(accountId);
      if (queue) {
        queue.items.push({ op, resolve, reject });
        return;
      }
      const fresh = { items: [{ op, resolve, reject }] };
      this.queues.set(accountId, fresh);
      void this.drain(accountId, fresh);
    });
  }

  private async drain(accountId: string, queue: { items: { op: Op; resolve: (r: Result) => void; reject: (e: unknown) => void }[] }) {
    try {
      while (queue.items.length > 0) {
        const batch = queue.items.splice(0, this.maxBatch);
        try {
          const results = await this.run(
            accountId,
            batch.map((b) => b.op),
          );
          batch.forEach((b, i) => b.resolve(results[i] as Result));
        } catch (err) {
          if (batch.length === 1) {
            batch[0]!.reject(err);
            continue;
          }
          // One bad operation must not fail its neighbours: run each alone to isolate it.
          for (const b of batch) {
            try {
              const [result] = await this.run(accountId, [b.op]);
              b.resolve(result as Result);
            } catch (single) {
              b.reject(single);
            }
          }
        }
      }
    } finally {
      this.queues.delete(accountId);
    }
  }
}
