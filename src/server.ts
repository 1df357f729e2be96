import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { installErrorHandler } from './http/error-handler.js';
import { newId } from './lib/ids.js';
import { validatorCompiler } from './http/validation.js';

export interface ServerOptions {
  bodyLimit: number;
  logger: FastifyBaseLogger;
  version: string;
}

/** A Fastify instance with Tally's validation, errors, and OpenAPI; routes are added by modules. */
export async function createServer(options: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimit,
    genReqId: () => newId('request'),
    requestIdHeader: false,
    routerOptions: { ignoreTrailingSlash: true },
  });
  app.setValidatorCompiler(validatorCompiler);
  // JSON only: a text/plain body is refused with 415 rather than validated as a string.
  app.removeContentTypeParser('text/plain');
  installErrorHandler(app, options.bodyLimit);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

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
