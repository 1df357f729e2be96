import { describe, expect, it } from 'vitest';
import { SnapshotCache } from '../src/lib/snapshot-cache.js';

/** A load whose answer the test releases by hand, to put invalidations in the middle of it. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('SnapshotCache', () => {
  it('serves a snapshot within its time limit and loads again after it', async () => {
    let t = 0;
    let loads = 0;
    const cache = new SnapshotCache<number>(100, 10, () => t);
    const load = async () => ++loads;
    expect(await cache.get('u', 'u/a', load)).toBe(1);
    t = 40;
    expect(await cache.get('u', 'u/a', load)).toBe(1);
    t = 100;
    expect(await cache.get('u', 'u/a', load)).toBe(2);
    // A clock moved backwards (a test's) never serves a snapshot from "the future".
    t = 50;
    expect(await cache.get('u', 'u/a', load)).toBe(3);
  });

  it('past half its life serves the snapshot and reloads it in the background', async () => {
    let t = 0;
    let loads = 0;
    const cache = new SnapshotCache<number>(100, 10, () => t);
    const load = async () => ++loads;
    await cache.get('u', 'k', load);
    t = 60;
    expect(await cache.get('u', 'k', load)).toBe(1); // served, reload started
    await new Promise((r) => setImmediate(r));
    expect(loads).toBe(2);
    t = 100; // 40 after the reload started: fresh, no reload
    expect(await cache.get('u', 'k', load)).toBe(2);
    expect(loads).toBe(2);
  });

  it('drops an owner\'s snapshots on invalidate, and never keeps a load an invalidation overtook', async () => {
    const cache = new SnapshotCache<string>(1000, 10, () => 0);
    await cache.get('u', 'u/a', async () => 'old');
    await cache.get('v', 'v/a', async () => 'other');
    cache.invalidate('u');
    expect(await cache.get('u', 'u/a', async () => 'new')).toBe('new');
    expect(await cache.get('v', 'v/a', async () => 'reloaded')).toBe('other');

    // A load in flight when a write settles: its caller gets it, nobody after them does.
    cache.invalidate('u');
    const slow = deferred<string>();
    const first = cache.get('u', 'u/a', () => slow.promise);
    cache.invalidate('u');
    // A read that starts after the write does not join the overtaken load.
    const second = cache.get('u', 'u/a', async () => 'after the write');
    slow.resolve('before the write');
    expect(await first).toBe('before the write');
    expect(await second).toBe('after the write');
    expect(await cache.get('u', 'u/a', async () => 'unexpected')).toBe('after the write');

    cache.clear();
    expect(cache.size).toBe(0);
    expect(await cache.get('v', 'v/a', async () => 'fresh')).toBe('fresh');
  });

  it('shares one load among concurrent readers of a key, and a failed load is not kept', async () => {
    const cache = new SnapshotCache<number>(1000, 10, () => 0);
    let loads = 0;
    const gate = deferred<void>();
    const load = async () => {
      loads++;
      await gate.promise;
      return 7;
    };
    const all = Promise.all([cache.get('u', 'k', load), cache.get('u', 'k', load), cache.get('u', 'k', load)]);
    gate.resolve();
    expect(await all).toEqual([7, 7, 7]);
    expect(loads).toBe(1);

    await expect(cache.get('w', 'w/k', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await cache.get('w', 'w/k', async () => 8)).toBe(8);
  });

  it('keeps at most maxEntries, dropping the oldest; ttl 0 turns it off', async () => {
    const cache = new SnapshotCache<number>(1000, 2, () => 0);
    await cache.get('a', 'a', async () => 1);
    await cache.get('b', 'b', async () => 2);
    await cache.get('c', 'c', async () => 3);
    expect(cache.size).toBe(2);
    expect(await cache.get('a', 'a', async () => 10)).toBe(10);
    expect(await cache.get('c', 'c', async () => 30)).toBe(3);

    // While not usable (invalidations may be missed) every get loads, and nothing it loads is served later.
    let usable = false;
    const gated = new SnapshotCache<number>(1000, 10, () => 0, () => usable);
    expect(await gated.get('a', 'a', async () => 1)).toBe(1);
    expect(await gated.get('a', 'a', async () => 2)).toBe(2);
    usable = true;
    expect(await gated.get('a', 'a', async () => 3)).toBe(3);
    expect(await gated.get('a', 'a', async () => 4)).toBe(3);

    let loads = 0;
    const off = new SnapshotCache<number>(0, 10, () => 0);
    await off.get('a', 'a', async () => ++loads);
    await off.get('a', 'a', async () => ++loads);
    expect(loads).toBe(2);
  });
});
