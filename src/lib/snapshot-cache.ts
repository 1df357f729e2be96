interface Entry<T> {
  owner: string;
  value: T;
  /** The clock when its load started: anything committed before then is in it. */
  loadedAt: number;
  refreshing: boolean;
}

/** A load in flight; an invalidation meanwhile marks it, and its result is then not kept. */
interface Load<T> {
  stale: boolean;
  promise: Promise<T>;
}

/**
 * Read snapshots kept in process, per owner, with exact in-process invalidation and a time limit
 * for everything else.
 *
 * - Read-your-writes: a writer calls `invalidate(owner)` (or `clear()`) once its transaction has
 *   settled. An entry whose load started before that is dropped, and a load still in flight is
 *   marked so its result is used once but never kept, so a read that starts after a commit never
 *   sees state from before it.
 * - Other processes' writes are not seen: an entry lives at most `ttlMs` by the given clock (the
 *   app's, so tests that move time move the cache too). Past half its life it is still served but
 *   reloaded in the background, so a steadily read key rarely waits for the database; a reload
 *   that fails drops it.
 * - At most `maxEntries`; the oldest-stored go first.
 */
export class SnapshotCache<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly keysOf = new Map<string, Set<string>>();
  private readonly loads = new Map<string, Load<T>>();
  private readonly loadsOf = new Map<string, Set<string>>();

  constructor(
    readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly clock: () => number,
    /** False while invalidations may be missed (src/lib/invalidations.ts `trusted`): every get loads. */
    private readonly usable: () => boolean = () => true,
  ) {}

  get enabled(): boolean {
    return this.ttlMs > 0 && this.maxEntries > 0;
  }

  async get(owner: string, key: string, load: () => Promise<T>): Promise<T> {
    if (!this.enabled || !this.usable()) return load();
    const entry = this.entries.get(key);
    if (entry) {
      const age = this.clock() - entry.loadedAt;
      if (age >= 0 && age < this.ttlMs) {
        if (age * 2 >= this.ttlMs && !entry.refreshing) {
          entry.refreshing = true;
          // A refresh that fails (the key is no longer live, the database refused) leaves nothing
          // to vouch for the kept value: it goes, and the next get loads (attacker review 5).
          this.start(owner, key, load).promise.catch(() => {
            entry.refreshing = false;
            if (this.entries.get(key) === entry) this.drop(key);
          });
        }
        return entry.value;
      }
    }
    // Loads of one key share one round trip while none of them is stale.
    const running = this.loads.get(key);
    if (running && !running.stale) return running.promise;
    return this.start(owner, key, load).promise;
  }

  /** Everything cached for this owner is out of date (a write of theirs has settled). */
  invalidate(owner: string): void {
    const keys = this.keysOf.get(owner);
    if (keys) {
      for (const k of keys) this.entries.delete(k);
      this.keysOf.delete(owner);
    }
    const loading = this.loadsOf.get(owner);
    if (loading) for (const k of loading) this.markStale(k);
  }

  /** Everything is out of date (a write whose reach is not known precisely). */
  clear(): void {
    this.entries.clear();
    this.keysOf.clear();
    for (const k of this.loads.keys()) this.markStale(k);
  }

  get size(): number {
    return this.entries.size;
  }

  private drop(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    const keys = this.keysOf.get(entry.owner);
    keys?.delete(key);
    if (keys?.size === 0) this.keysOf.delete(entry.owner);
  }

  private markStale(key: string): void {
    const l = this.loads.get(key);
    if (l) l.stale = true;
  }

  private start(owner: string, key: string, load: () => Promise<T>): Load<T> {
    const loadedAt = this.clock();
    const state: Load<T> = { stale: false, promise: Promise.resolve(undefined as T) };
    this.loads.set(key, state);
    let set = this.loadsOf.get(owner);
    if (!set) this.loadsOf.set(owner, (set = new Set()));
    set.add(key);
    state.promise = (async () => {
      try {
        const value = await load();
        if (!state.stale) this.store(owner, key, value, loadedAt);
        return value;
      } finally {
        if (this.loads.get(key) === state) {
          this.loads.delete(key);
          const set = this.loadsOf.get(owner);
          set?.delete(key);
          if (set?.size === 0) this.loadsOf.delete(owner);
        }
      }
    })();
    return state;
  }

  private store(owner: string, key: string, value: T, loadedAt: number): void {
    this.drop(key);
    while (this.entries.size >= this.maxEntries) this.drop(this.entries.keys().next().value as string);
    this.entries.set(key, { owner, value, loadedAt, refreshing: false });
    let keys = this.keysOf.get(owner);
    if (!keys) this.keysOf.set(owner, (keys = new Set()));
    keys.add(key);
  }
}
