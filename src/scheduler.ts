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
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    services.credits
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
      .finally(() => (running = false));
  }, everyMs);
  timer.unref();
  services.queue.start(queuePollMs);
  return async () => {
    clearInterval(timer);
    await services.queue.stop();
  };
}
