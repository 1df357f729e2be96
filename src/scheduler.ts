import type { FastifyBaseLogger } from 'fastify';
import type { Services } from './app.js';

/**
 * Periodic housekeeping in the server process: expire due holds and grants on idle accounts (busy
 * accounts expire lazily inside their own batches, so correctness never waits for this).
 */
export function startScheduler(services: Services, logger: FastifyBaseLogger, everyMs = 30_000): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    services.credits
      .sweep()
      .then((n) => n > 0 && logger.info({ accounts: n }, 'expired due holds and grants'))
      .catch((err: unknown) => logger.error({ err }, 'scheduler sweep failed'))
      .finally(() => (running = false));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
