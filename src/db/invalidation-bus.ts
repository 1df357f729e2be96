import type { Logger } from '../core/logger.js';
import pg from 'pg';
import type { InvalidationMessage, Invalidations } from '../lib/invalidations.js';
import { randomToken } from '../lib/random.js';

/** NOTIFY payloads are limited to 8,000 bytes; a longer list is sent as "everything". */
const MAX_PAYLOAD = 7000;

/**
 * Carries cache invalidations between Tally processes on one PostgreSQL database, with
 * LISTEN/NOTIFY on a channel per schema. Every notice is sent after the writer's transaction has
 * settled, so a process that hears it knows the write is visible: it drops what it cached and
 * marks loads in flight (src/lib/snapshot-cache.ts). Local notices are gathered for `flushMs` and
 * sent as one NOTIFY (at most a few hundred a second, whatever the write rate).
 *
 * The listening connection can drop: from then until it is back and listening, `trusted` is
 * false (caches read the database) and, once back, everything is dropped once, since notices sent
 * meanwhile were missed.
 */
export class InvalidationBus {
  private readonly origin = randomToken(8);
  private readonly channel: string;
  private client: pg.Client | null = null;
  private pending = new Set<string>();
  private pendingAll = false;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;
  private retryMs = 100;

  constructor(
    private readonly pool: pg.Pool,
    schema: string,
    private readonly invalidations: Invalidations,
    private readonly logger: Logger,
    private readonly opts: { listen: boolean; flushMs?: number; listenConfig?: pg.ClientConfig | null } = { listen: true },
  ) {
    this.channel = `tally_invalidate_${schema}`.slice(0, 63);
    invalidations.publishWith((m) => this.publish(m));
  }

  /**
   * Starts listening (a server process); a command-line process only publishes. Behind a
   * transaction-mode pooler with no direct URL there is nowhere to LISTEN: caches stay untrusted
   * (every check reads the database), which is correct, only slower.
   */
  async start(): Promise<void> {
    if (!this.opts.listen) return;
    this.invalidations.trusted = false;
    if (this.opts.listenConfig === null) {
      this.logger.warn('no session connection for LISTEN (transaction-mode pooler without DATABASE_DIRECT_URL): in-process caches are off');
      return;
    }
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client(this.opts.listenConfig ?? this.pool.options);
    client.on('notification', (n) => this.onNotification(n.payload));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, null));
    try {
      await client.connect();
      await client.query(`listen "${this.channel}"`);
    } catch (err) {
      this.lost(client, err as Error);
      return;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.retryMs = 100;
    // Notices sent while nobody listened were missed: drop everything once, then trust again.
    this.invalidations.receive(null);
    this.invalidations.trusted = true;
  }

  private lost(client: pg.Client, err: Error | null): void {
    if (this.client !== null && this.client !== client) return;
    this.client = null;
    this.invalidations.trusted = false;
    client.removeAllListeners('end');
    void client.end().catch(() => {});
    if (this.closed) return;
    this.logger.warn({ err: err?.message }, 'invalidation listener lost; caches read the database until it is back');
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 5000);
    setTimeout(() => void this.connect(), wait).unref();
  }

  private onNotification(payload: string | undefined): void {
    if (!payload) return;
    try {
      const msg = JSON.parse(payload) as { o: string; a?: string[] };
      if (msg.o === this.origin) return;
      this.invalidations.receive(msg.a ?? null);
    } catch {
      this.invalidations.receive(null);
    }
  }

  private publish(message: InvalidationMessage): void {
    if (this.closed) return;
    if (message === null) this.pendingAll = true;
    else if (!this.pendingAll) for (const id of message) this.pending.add(id);
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.flushing = this.flushing.then(() => this.flush());
    }, this.opts.flushMs ?? 5);
  }

  private async flush(): Promise<void> {
    if (!this.pendingAll && this.pending.size === 0) return;
    let payload = JSON.stringify(this.pendingAll ? { o: this.origin } : { o: this.origin, a: [...this.pending] });
    if (payload.length > MAX_PAYLOAD) payload = JSON.stringify({ o: this.origin });
    this.pending = new Set();
    this.pendingAll = false;
    try {
      await this.pool.query('select pg_notify($1, $2)', [this.channel, payload]);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'could not publish a cache invalidation');
    }
  }

  /** Sends what is pending and stops listening. */
  async close(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      this.flushing = this.flushing.then(() => this.flush());
    }
    await this.flushing;
    this.closed = true;
    const client = this.client;
    this.client = null;
    if (client) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
    }
  }
}
