import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import { installDeadline } from './http/deadline.js';
import { installErrorHandler } from './http/error-handler.js';
import { errorBody, statusOf } from './http/errors.js';
import { errors } from './core/errors.js';
import { newId } from './lib/ids.js';
import { schemaCompilers } from './http/schema-compilers.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Compiles the route schemas not compiled yet (src/http/schema-compilers.ts); rejects on one that does not compile. */
    warmSchemas(): Promise<void>;
  }
}

export interface ServerOptions {
  bodyLimit: number;
  /** Whose X-Forwarded-For to believe for the client address (rate limits key on it); absent: none. */
  trustProxy?: boolean | string;
  logger: FastifyBaseLogger;
  version: string;
  /** One info line per answered request instead of Fastify's two (docs/operations.md). */
  requestLog?: boolean;
  /** Per-request deadline in ms (0: none); past it, 503 `unavailable` with reason `timeout`. */
  deadlineMs?: number;
}

/** A Fastify instance with Tally's validation, errors, and OpenAPI; routes are added by modules. */
export async function createServer(options: ServerOptions): Promise<FastifyInstance> {
  const compilers = schemaCompilers();
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimit,
    ...(options.trustProxy !== undefined ? { trustProxy: options.trustProxy } : {}),
    genReqId: () => newId('request'),
    // Fastify logs two lines per request ("incoming request", "request completed"); Tally logs one,
    // after the answer, with what an operator filters on (see the onResponse hook below).
    logController: new LogController({ disableRequestLogging: true }),
    // Slow clients: the whole request must arrive within a bound too.
    requestTimeout: 60_000,
    requestIdHeader: false,
    // Ids may be 128 characters; longer path segments are refused by the route schema, not the router.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 512 },
    // The router's own errors (malformed percent-encoding, an over-long path segment) use Tally's
    // error envelope too. Fastify answers them from a bare context before routing, so no hook
    // (not even the onSend that sets x-request-id) runs: the header is set here.
    frameworkErrors: (err, request, reply) => {
      const apiError = errors.invalidRequest(err.code === 'FST_ERR_BAD_URL' ? 'The URL is malformed' : err.message);
      void (reply as FastifyReply)
        .code(statusOf(apiError.code))
        .header('x-request-id', request.id)
        .send(errorBody(apiError, request.id) as never);
    },
  });
  // Schemas compile on first use (src/http/schema-compilers.ts).
  app.setValidatorCompiler(compilers.validatorCompiler);
  app.setSerializerCompiler(compilers.serializerCompiler);
  app.decorate('warmSchemas', compilers.warm);
  // JSON only: a text/plain body is refused with 415 rather than validated as a string.
  app.removeContentTypeParser('text/plain');
  installErrorHandler(app, options.bodyLimit);
  // Every request is answered within the deadline (src/http/deadline.ts, docs/operations.md).
  if (options.deadlineMs) installDeadline(app, options.deadlineMs);
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    done(null, payload);
  });
  if (options.requestLog) {
    app.addHook('onResponse', (request, reply, done) => {
      // The route's template (/v1/users/:id), never the URL: ids and query strings stay out of logs.
      request.log.info(
        { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 },
        'request',
      );
      done();
    });
  }

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Tally API',
        version: options.version,
        description: 'Accounts, credits and usage backend for AI apps. Errors use one closed list of codes.',
      },
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'The service key, a user JWT (from /v1/auth/login or Supabase Auth), or a tly_ API key',
          },
        },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
