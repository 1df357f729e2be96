import type { FastifyBaseLogger } from 'fastify';
import pino from 'pino';

/**
 * The process logger: JSON lines on stdout, secrets redacted wherever they appear.
 *
 * Written asynchronously (sonic-boom, `sync: false`): pino's default writes each line with a
 * blocking write on fd 1, so a slow reader of stdout (a log shipper, a container runtime, a
 * parent process busy with something else) stalls the event loop, and on a full non-blocking pipe
 * sonic-boom sleeps 100 ms per retry — every request waits behind the log. Asynchronous, lines
 * queue in memory while one write is in flight and go out together. No line waits for a
 * buffer to fill (no `minLength`), and pino flushes what is queued when the process exits
 * (normal exit, `process.exit`, an uncaught error); only a SIGKILL loses the last lines.
 */
export function createLogger(level: string): FastifyBaseLogger {
  return pino(
    {
      level,
      redact: {
        paths: ['req.headers.authorization', 'headers.authorization', '*.password', '*.key', '*.access_token'],
        censor: '[redacted]',
      },
    },
    pino.destination({ dest: 1, sync: false }),
  ) as unknown as FastifyBaseLogger;
}
