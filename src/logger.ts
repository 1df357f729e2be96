import type { FastifyBaseLogger } from 'fastify';
import pino from 'pino';

/** The process logger: JSON lines on stdout, secrets redacted wherever they appear. */
export function createLogger(level: string): FastifyBaseLogger {
  return pino({
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', '*.password', '*.key', '*.access_token'],
      censor: '[redacted]',
    },
  }) as unknown as FastifyBaseLogger;
}
