import type { FastifyBaseLogger } from 'fastify';
import type { Services } from './app.js';

/**
 * Periodic housekeeping in the server process: expire due holds and grants on idle accounts (busy
 * accounts expire lazily inside their own batches, so correctness never waits for this), billing's
 * due work by the app's clock (trials, renewals, period closes, allowance windows), and the background queue's worker
 * (job timeouts and whatever other modules enqueue). The returned function stops them all and
 * waits for the work in progress.
 */
export function startScheduler(
  services: Services,
  logger: FastifyBaseLogger,
  everyMs = 30_000,
  queuePollMs = 1_000,
): () => Promise<void> {
  let running: Promise<unknown> | null = null;
  const tick = () => {
    if (running) return;
    running = services.credits
      .sweep()
      .then((n) => n > 0 && logger.info({ accounts: n }, 'expired due holds and grants'))
      .then(() => services.billing.subscriptions.enqueueDue(services.queue))
      .then((n) => n > 0 && logger.info({ subscriptions: n }, 'billing: due subscriptions queued'))
      .then(() => services.storage.sweep())
      .then((s) => (s.deleted > 0 || s.failed > 0 || s.released > 0) && logger.info(s, 'storage: outbox swept'))
      .then(() => services.storageMeter.tick())
      .then((m) => m && logger.info(m, 'storage: storage_mb metered for the day'))
      .then(() => services.ide.sweep())
      .then((n) => n > 0 && logger.info({ analyses: n }, 'ide: expired code analyses deleted'))
      .then(() => services.observability.maintain())
      .then((o) => o.retention?.some((r) => r.droppedPartitions.length > 0 || r.deletedRows > 0 || r.createdPartitions.length > 0) && logger.info({ retention: o.retention }, 'retention: expired log rows removed, partitions kept ahead'))
      .then(() => services.gateway.reap())
      .then((n) => n > 0 && logger.warn({ requests: n }, 'gateway: settled requests a dead process left pending'))
      .catch((err: unknown) => logger.error({ err }, 'scheduler sweep failed'))
      .finally(() => (running = null));
  };
  // The first pass runs right after the start, not a period later: this month's log partitions
  // exist before the first request is logged (rows would otherwise wait in the default partition),
  // and holds and grants that fell due while the server was down expire at once.
  const first = setTimeout(tick, 0);
  const timer = setInterval(tick, everyMs);
  first.unref();
  timer.unref();
  services.queue.start(queuePollMs);
  return async () => {
    clearTimeout(first);
    clearInterval(timer);
    await running; // a pass in progress finishes before the database closes
    await services.queue.stop();
  };
}
