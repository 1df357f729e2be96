/**
 * The ceiling: an empty Fastify 5 POST route on this machine. It parses the JSON body the load
 * generator sends (same sizes as Tally's requests) and answers a fixed small JSON object — no
 * validation, no auth, no database, no logging. Whatever Tally does per request comes on top of
 * this, so `npm run bench` reports each HTTP scenario as a fraction of it (issue 21).
 *
 * Run as its own process by `tally bench` (node dist/bench/src/empty-server.js) with EMPTY_PORT,
 * like the baseline server.
 */
import Fastify from 'fastify';

async function main(): Promise<void> {
  const port = Number(process.env['EMPTY_PORT']);
  if (!Number.isInteger(port) || port <= 0) throw new Error('EMPTY_PORT is required');
  const app = Fastify({ logger: false });
  app.get('/health', async () => ({ status: 'ok' }));
  // Every POST path the HTTP scenarios use, one handler: the body is parsed and dropped.
  app.post('/*', async (_request, reply) => reply.code(200).send({ ok: true }));
  await app.listen({ host: '127.0.0.1', port });
  const shutdown = async () => {
    await app.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
}

main().catch((err: unknown) => {
  process.stderr.write(`empty server: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
