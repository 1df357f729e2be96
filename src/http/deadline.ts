import type { FastifyInstance } from 'fastify';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: this route is exempt from the per-request deadline (NO_DEADLINE). */
    deadline?: boolean;
  }
}

/**
 * Route config that exempts a route from the per-request deadline: streamed uploads (bounded by
 * the server's requestTimeout instead) and the LLM gateway's relays (bounded by their own upstream
 * timeouts; an answer may stream for minutes).
 */
export const NO_DEADLINE: { deadline: boolean } = { deadline: false };

/**
 * Every request answered within `ms`: past it, 503 `unavailable` (reason timeout) through the
 * error handler; a response already streaming is cut. The work goes on and may still commit; a
 * retry with the same Idempotency-Key replays it (docs/operations.md).
 *
 * Not Fastify's `handlerTimeout`: its timer is cleared by the request's 'close', which Node emits
 * as soon as a request body has been read — so a POST over a real socket never timed out (inject()
 * hid it; test/faults.test.ts › the deadline holds over a real socket too). This timer ends only
 * with the response.
 */
export function installDeadline(app: FastifyInstance, ms: number): void {
  app.addHook('onRequest', (request, reply, done) => {
    if (request.routeOptions.config?.deadline === false) return done();
    const timer = setTimeout(() => {
      if (reply.sent) return;
      if (reply.raw.headersSent) {
        reply.raw.destroy(new Error(`request deadline of ${ms} ms passed while answering`));
        return;
      }
      void reply.send(Object.assign(new Error(`request deadline of ${ms} ms passed`), { code: 'FST_ERR_HANDLER_TIMEOUT' }));
    }, ms);
    reply.raw.once('close', () => clearTimeout(timer));
    done();
  });
}
