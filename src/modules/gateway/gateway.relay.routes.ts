import { NO_DEADLINE } from '../../http/deadline.js';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DomainError } from '../../core/errors.js';
import { statusOf } from '../../http/errors.js';
import { toApiError } from '../../http/error-handler.js';
import type { EndpointName, RelayService, StreamSink } from './gateway.relay.service.js';
import { type Wire, wireError } from './gateway.wire.js';

/** Prompts are big: the relayed paths take bodies up to this size (the rest of the API keeps its limit). */
const GATEWAY_BODY_LIMIT = 8 * 1024 * 1024;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * The relayed paths (API.md "Gateway"). They speak the providers' wire formats — OpenAI's and
 * Anthropic's bodies, errors and SSE — not Tally's envelope, so the official client packages work
 * unchanged; they are therefore left out of /openapi.json (their contract is the providers' own,
 * docs/gateway.md) and authenticate with a `tly_` key themselves (test/gateway.test.ts proves it).
 */
export function registerRelayRoutes(app: FastifyInstance, relay: RelayService, bodyLimit: number): void {
  const post = (url: string, endpoint: EndpointName, wire: Wire) =>
    app.route({
      method: 'POST',
      url,
      bodyLimit: Math.max(bodyLimit, GATEWAY_BODY_LIMIT),
      // Bounded by the gateway's own upstream timeouts (connect, first byte, idle): an answer may stream for minutes.
      config: NO_DEADLINE,
      schema: { hide: true },
      errorHandler: (err: FastifyError, request, reply) => renderError(wire, err, request, reply, bodyLimit),
      handler: async (request, reply) => {
        const idem = header(request, 'idempotency-key');
        if (idem !== null && !IDEMPOTENCY_KEY.test(idem)) throw new DomainError('invalid_request', 'Idempotency-Key must be 1–255 printable ASCII characters');
        const forward: Record<string, string> = {};
        if (wire === 'anthropic') {
          forward['anthropic-version'] = header(request, 'anthropic-version') ?? '2023-06-01';
          const beta = header(request, 'anthropic-beta');
          if (beta) forward['anthropic-beta'] = beta;
        }
        const answer = await relay.relay(
          {
            endpoint,
            apiKey: keyOf(request, wire),
            body: request.body,
            rawBytes: Number(request.headers['content-length'] ?? 0) || Buffer.byteLength(JSON.stringify(request.body ?? null)),
            idempotencyKey: idem,
            requestId: request.id,
            forward,
          },
          sinkOf(request, reply),
        );
        if (answer.kind === 'json') {
          if (answer.replayed) void reply.header('idempotent-replayed', 'true');
          void reply.code(answer.status).headers(answer.headers).send(answer.body);
        }
        // The answer is out; its settlement finishes before the handler does (clean shutdowns).
        await answer.settled;
        return reply;
      },
    });
  post('/gateway/v1/chat/completions', 'openai.chat', 'openai');
  post('/gateway/v1/embeddings', 'openai.embeddings', 'openai');
  post('/gateway/anthropic/v1/messages', 'anthropic.messages', 'anthropic');

  app.route({
    method: 'GET',
    url: '/gateway/v1/models',
    schema: { hide: true },
    errorHandler: (err: FastifyError, request, reply) => renderError('openai', err, request, reply, bodyLimit),
    handler: async (request) => {
      const models = await relay.models(keyOf(request, 'openai'), 'openai');
      return { object: 'list', data: models.map((m) => ({ id: m.id, object: 'model', created: m.created, owned_by: 'tally' })) };
    },
  });
}

function header(request: FastifyRequest, name: string): string | null {
  const v = request.headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? null : s;
}

/** OpenAI clients send `Authorization: Bearer`, Anthropic's `x-api-key`: both are accepted on both. */
function keyOf(request: FastifyRequest, wire: Wire): string | null {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header(request, 'authorization') ?? '')?.[1] ?? null;
  const xKey = header(request, 'x-api-key');
  return wire === 'anthropic' ? (xKey ?? bearer) : (bearer ?? xKey);
}

/** A stream straight onto the socket; `closed` turns true when the client goes away. */
function sinkOf(request: FastifyRequest, reply: FastifyReply): StreamSink {
  let closed = false;
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) closed = true;
  });
  return {
    start(headers) {
      reply.hijack();
      reply.raw.writeHead(200, { ...headers, 'x-request-id': request.id });
      reply.raw.flushHeaders();
    },
    write(chunk) {
      if (closed || reply.raw.destroyed) {
        closed = true;
        return false;
      }
      reply.raw.write(chunk);
      return true;
    },
    end() {
      if (!closed && !reply.raw.destroyed) reply.raw.end();
    },
    get closed() {
      return closed || reply.raw.destroyed;
    },
  };
}

function renderError(wire: Wire, err: FastifyError, request: FastifyRequest, reply: FastifyReply, bodyLimit: number) {
  const e = toApiError(err as FastifyError & { code?: string }, bodyLimit, request.headers['content-type']);
  const status = statusOf(e.code);
  if (status >= 500 && e.code !== 'unavailable') request.log.error({ err }, 'gateway request failed');
  // A request an upstream took and Tally billed must not come back as a new one; any other 503 may.
  const billed = e.code === 'unavailable' && e.details?.['retryable'] === false;
  if (e.code === 'unavailable' && !billed) void reply.header('retry-after', '1');
  if (billed) void reply.header('x-should-retry', 'false');
  // A key's rate limit, or a request still running under the same Idempotency-Key, says when to
  // come back; the official clients honour Retry-After.
  const retryAfter = e.code === 'rate_limited' || e.code === 'conflict' ? e.details?.['retry_after_seconds'] : undefined;
  if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
  // The official clients retry every 409 unless told not to: an Idempotency-Key that answered
  // another request, or whose answer is not kept, never changes its mind (docs/gateway.md).
  if (e.code === 'idempotency_key_reused' || (e.code === 'conflict' && e.details?.['retryable'] === false)) void reply.header('x-should-retry', 'false');
  if (e.code === 'conflict' && e.details?.['retryable'] === true) void reply.header('x-should-retry', 'true');
  return reply.code(status).send(wireError(wire, e.code, e.message));
}
