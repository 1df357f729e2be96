import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RequestRecorder } from '../modules/observability/observability.js';
import { principalOf } from './route.js';

const failures = new WeakMap<FastifyRequest, unknown>();

/** The error handler notes the error behind a 5xx answer, for the request's error log. */
export function noteFailure(request: FastifyRequest, err: unknown): void {
  failures.set(request, err);
}

/**
 * Reports every answered request to the recorder (api_logs, error_logs, /metrics). This runs on
 * the response path of every request, so it only gathers what Fastify already has — no parsing,
 * no scrubbing, no I/O: the recorder queues the entry and its buffer does the rest in batches.
 * Never the body, the query string or a header but the two below (the content lengths aside):
 * the User-Agent (cut to its product token when written) and the client address.
 */
export function installRequestRecording(app: FastifyInstance, recorder: RequestRecorder, now: () => Date): void {
  app.addHook('onResponse', (request, reply, done) => {
    const principal = principalOf(request);
    const q = request.url.indexOf('?');
    recorder.answered(
      {
        requestId: request.id,
        at: now(),
        method: request.method,
        route: request.routeOptions.url ?? null,
        path: q === -1 ? request.url : request.url.slice(0, q),
        status: reply.statusCode,
        durationMs: reply.elapsedTime,
        callerKind: principal?.kind ?? 'unknown',
        callerId: principal?.kind === 'user' ? principal.userId : null,
        apiKeyId: principal?.kind === 'user' ? principal.keyId : null,
        requestBytes: request.headers['content-length'],
        responseBytes: reply.getHeader('content-length') as string | number | undefined,
        ip: request.ip,
        userAgent: request.headers['user-agent'],
      },
      reply.statusCode >= 500 ? (failures.get(request) ?? null) : null,
    );
    done();
  });
}
