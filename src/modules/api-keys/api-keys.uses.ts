import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';

/**
 * A key's use (`request_count`, `last_used_at`), counted in memory and written in one statement a
 * second, instead of an UPDATE and its commit on every request a key makes. That write was the
 * most frequent lock wait under the gateway and storage benches (every request of one key queued on
 * the key's row) and one more fsync on each request's path. The key itself is still read on every
 * request, so revocation, expiry and deactivation take effect at once; only the statistics lag, by
 * up to `flushMs` (and a crash loses at most that window's counts). Shutdown writes what is left.
 */
export class KeyUses {
  private pending = new Map<string, { n: number; at: Date }>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Executor,
    private readonly schema: string,
    private readonly now: () => Date,
    flushMs = 1_000,
    private readonly onError: (err: unknown) => void = () => {},
  ) {
    this.timer = setInterval(() => void this.flush().catch(this.onError), flushMs);
    this.timer.unref();
  }

  record(keyId: string): void {
    const at = this.now();
    const seen = this.pending.get(keyId);
    if (seen) {
      seen.n++;
      if (at > seen.at) seen.at = at;
    } else {
      this.pending.set(keyId, { n: 1, at });
    }
  }

  /** Writes the counts gathered so far (one statement); resolves once they are stored. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const batch = this.pending;
      this.pending = new Map();
      const rows = JSON.stringify([...batch].map(([id, u]) => ({ id, n: u.n, at: u.at.toISOString() })));
      const keys = sql.table(`${this.schema}.api_keys`);
      // The rows are locked in id order first — the order a gateway settlement batch takes keys in
      // — so the two never deadlock (attacker review F7).
      try {
        await sql`with v as (select * from jsonb_to_recordset(${rows}::jsonb) as v(id text, n int8, at timestamptz)),
          locked as (select k.id from ${keys} k where k.id in (select id from v) order by k.id for update)
          update ${keys} k
          set request_count = k.request_count + v.n, last_used_at = greatest(coalesce(k.last_used_at, v.at), v.at)
          from v
          where k.id = v.id and k.id in (select id from locked)`.execute(this.db);
      } catch (err) {
        // Not lost: the counts wait for the next flush.
        for (const [id, u] of batch) {
          const seen = this.pending.get(id);
          if (seen) {
            seen.n += u.n;
            if (u.at > seen.at) seen.at = u.at;
          } else this.pending.set(id, u);
        }
        throw err;
      }
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
