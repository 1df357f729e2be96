import { describe, expect, it } from 'vitest';
import { LedgerQueue } from '../src/lib/ledger-queue.js';
import { queueLimits } from '../src/db/faults.js';
import { Unavailable } from '../src/lib/unavailable.js';

/** The money queue's limits, without a database: a bounded backlog, and a shared failure answered once. */
describe('ledger queue limits', () => {
  it('past its backlog bound the queue refuses new operations with Unavailable instead of holding them', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const q = new LedgerQueue<number, number>(async (items) => {
      await gate;
      return items.map((i) => i.op);
    }, 2, 1, undefined, queueLimits(3));
    const first = q.submit('a', 1); // taken into the running batch at once
    const waiting = [q.submit('a', 2), q.submit('b', 3), q.submit('c', 4)];
    expect(q.waitingCount).toBe(3);
    await expect(q.submit('d', 5)).rejects.toBeInstanceOf(Unavailable);
    await expect(q.submit('d', 5)).rejects.toMatchObject({ reason: 'backlog' });
    release();
    expect(await first).toBe(1);
    expect(await Promise.all(waiting)).toEqual([2, 3, 4]);
    expect(q.waitingCount).toBe(0);
    expect(await q.submit('d', 5)).toBe(5);
  });

  it('a failure every operation shares (the database away) answers the whole batch once, without re-running each alone', async () => {
    let runs = 0;
    const lost = Object.assign(new Error('Connection terminated unexpectedly'), {});
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const q = new LedgerQueue<number, number>(async () => {
      runs++;
      await gate;
      throw lost;
    }, 10, 1, undefined, queueLimits());
    const blocker = q.submit('x', 0);
    const batch = [q.submit('a', 1), q.submit('b', 2), q.submit('c', 3)];
    release();
    await expect(blocker).rejects.toBe(lost);
    for (const p of batch) await expect(p).rejects.toBe(lost);
    expect(runs).toBe(2); // the blocker's batch and the three together: no one-by-one re-runs
  });
});
