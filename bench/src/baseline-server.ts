/**
 * The baseline over HTTP: the seed projects' design, minimal and fast — Fastify, a pg Pool, and
 * one call of `baseline.debit_user_credits_transaction` per request (lock the row, check, update,
 * insert, commit). No idempotency, no ledger allocations, no request logging.
 *
 * Run as its own process by `tally bench` (node dist/bench/src/baseline-server.js) with
 * BASELINE_DATABASE_URL, BASELINE_PORT, BASELINE_POOL_MAX and BASELINE_SERVICE_KEY.
 */
import { timingSafeEqual } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';
import { must } from '../../src/lib/must.js';

interface DebitBody {
  user_id: string;
  amount: number;
  reason: string;
  metadata?: Record<string, unknown>;
}

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};

async function main(): Promise<void> {
  const pool = new pg.Pool({ connectionString: env('BASELINE_DATABASE_URL'), max: Number(env('BASELINE_POOL_MAX')) });
  const expected = Buffer.from(`Bearer ${env('BASELINE_SERVICE_KEY')}`);
  const app = Fastify({ logger: false });

  app.get('/health', async () => {
    await pool.query('select 1');
    return { status: 'ok' };
  });

  app.post<{ Body: DebitBody }>(
    '/debit',
    {
      schema: {
        body: {
          type: 'object',
          required: ['user_id', 'amount', 'reason'],
          additionalProperties: false,
          properties: {
            user_id: { type: 'string', minLength: 1, maxLength: 128 },
            amount: { type: 'integer', minimum: 1 },
            reason: { type: 'string', minLength: 1, maxLength: 500 },
            metadata: { type: 'object' },
          },
        },
      },
    },
    async (request, reply) => {
      const auth = Buffer.from(request.headers.authorization ?? '');
      if (auth.length !== expected.length || !timingSafeEqual(auth, expected)) {
        return reply.code(401).send({ error: 'unauthorized' });
      }
      const { user_id, amount, reason, metadata } = request.body;
      try {
        const res = await pool.query<{ balance: string }>(
          'select baseline.debit_user_credits_transaction($1, $2, $3, $4) as balance',
          [user_id, amount, reason, JSON.stringify(metadata ?? {})],
        );
        return reply.code(200).send({ balance: Number(must(res.rows[0], 'the debit function returns a row').balance) });
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (message.includes('insufficient credits')) return reply.code(402).send({ error: 'insufficient_credits' });
        if (message.includes('user not found')) return reply.code(404).send({ error: 'not_found' });
        return reply.code(500).send({ error: 'internal', message });
      }
    },
  );

  await app.listen({ host: '127.0.0.1', port: Number(env('BASELINE_PORT')) });
  const shutdown = async () => {
    await app.close();
    await pool.end();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
}

main().catch((err: unknown) => {
  process.stderr.write(`baseline server: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
