import { must } from './must.js';

interface Item<Op, Result> {
  op: Op;
  resolve: (r: Result) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit across accounts. Operations queue per account in process; up to `maxParallel`
 * transactions run at once, each carrying up to `maxBatch` operations on any mix of accounts. An
 * account is in at most one running transaction, so its operations apply in arrival order and
 * never wait on a lock this process holds. Idle, an operation starts at once (no timer); under
 * load, everything that arrives while transactions are in flight goes in the next ones together —
 * one BEGIN, three set-based statements and one COMMIT for the lot. Each caller is answered after
 * its transaction commits.
 *
 * A transaction may hand its accounts on early (`handOff`, once it knows the state it will write):
 * the next batch of those accounts may then start and wait for the row locks in the database
 * while this one writes and commits — chained batches (docs/ledger.md). The successor holds no
 * lock its predecessor needs (the predecessor already has all of its own), so waits only ever
 * point at older transactions. If a batch fails after handing off, its operations run again one by
 * one after that successor: the one place arrival order can give way.
 */
export class LedgerQueue<Op, Result> {
  /** Waiting operations per account, in arrival order. */
  private readonly waiting = new Map<string, Item<Op, Result>[]>();
  /** Accounts with waiting operations and no running transaction, in the order they became ready. */
  private readonly ready = new Set<string>();
  private readonly busy = new Set<string>();
  private running = 0;
  /** Operations submitted and not yet taken into a transaction. */
  private backlog = 0;

  constructor(
    private readonly run: (items: { accountId: string; op: Op }[], handOff: () => void) => Promise<Result[]>,
    private readonly maxBatch: number,
    private readonly maxParallel: number,
    /** Failures worth one more run even for a lone operation (a race the second run resolves). */
    private readonly runAgain: (err: unknown) => boolean = () => false,
    private readonly limits: {
      /**
       * Failures that are every operation's answer, not one bad operation's (the database away, a
       * bound passed): the batch is answered at once instead of re-run one by one.
       */
      shared?: (err: unknown) => boolean;
      /** Most operations waiting; past it `submit` refuses with `overloaded()` instead of holding memory. */
      maxBacklog?: number;
      overloaded?: () => Error;
      /** Told each transaction's size and duration (GET /metrics); the lone re-runs after a failure are not batches. */
      observe?: (size: number, seconds: number, ok: boolean) => void;
    } = {},
  ) {}

  /** Operations waiting for a transaction (for health and the soak's reports). */
  get waitingCount(): number {
    return this.backlog;
  }

  submit(accountId: string, op: Op): Promise<Result> {
    if (this.limits.maxBacklog !== undefined && this.backlog >= this.limits.maxBacklog) {
      return Promise.reject(this.limits.overloaded ? this.limits.overloaded() : new Error('ledger queue backlog is full'));
    }
    this.backlog++;
    return new Promise<Result>((resolve, reject) => {
      const queue = this.waiting.get(accountId);
      if (queue) queue.push({ op, resolve, reject });
      else this.waiting.set(accountId, [{ op, resolve, reject }]);
      if (!this.busy.has(accountId)) this.ready.add(accountId);
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.maxParallel && this.ready.size > 0) {
      const batch: { accountId: string; item: Item<Op, Result> }[] = [];
      const accounts: string[] = [];
      for (const accountId of this.ready) {
        if (batch.length >= this.maxBatch) break;
        const queue = must(this.waiting.get(accountId), 'a ready account has a waiting queue');
        const take = queue.splice(0, this.maxBatch - batch.length);
        this.backlog -= take.length;
        for (const item of take) batch.push({ accountId, item });
        if (queue.length === 0) this.waiting.delete(accountId);
        this.ready.delete(accountId);
        this.busy.add(accountId);
        accounts.push(accountId);
      }
      this.running++;
      void this.execute(batch, accounts);
    }
  }

  private async execute(batch: { accountId: string; item: Item<Op, Result> }[], accounts: string[]): Promise<void> {
    let handedOff = false;
    const handOff = () => {
      if (handedOff) return;
      handedOff = true;
      this.releaseAccounts(accounts);
      this.pump();
    };
    const started = this.limits.observe ? performance.now() : 0;
    try {
      const results = await this.run(batch.map((b) => ({ accountId: b.accountId, op: b.item.op })), handOff);
      this.limits.observe?.(batch.length, (performance.now() - started) / 1000, true);
      batch.forEach((b, i) => b.item.resolve(results[i] as Result));
    } catch (err) {
      this.limits.observe?.(batch.length, (performance.now() - started) / 1000, false);
      // One bad operation must not fail its neighbours: run each alone to isolate it. A lone
      // operation runs again only when `runAgain` says the failure was a race the second run
      // resolves; any other failure of a lone operation is its answer. A shared failure (the
      // database away) is everyone's answer at once: re-running each would only wait again.
      if (this.limits.shared?.(err) || (batch.length === 1 && !this.runAgain(err))) for (const b of batch) b.item.reject(err);
      else {
        for (const b of batch) {
          try {
            const [result] = await this.run([{ accountId: b.accountId, op: b.item.op }], () => {});
            b.item.resolve(result as Result);
          } catch (single) {
            b.item.reject(single);
          }
        }
      }
    } finally {
      if (!handedOff) this.releaseAccounts(accounts);
      this.running--;
      this.pump();
    }
  }

  private releaseAccounts(accounts: string[]): void {
    for (const a of accounts) {
      this.busy.delete(a);
      if (this.waiting.has(a)) this.ready.add(a);
    }
  }
}
