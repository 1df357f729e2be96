/**
 * Runs ledger load until killed. Started by test/crash.test.ts with the database in the
 * environment; prints each acknowledged debit's transaction id, so the parent can check that
 * everything acknowledged survived the crash.
 */
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { createApp } from '../../src/app.js';
import { openDatabase } from '../../src/db/database.js';
import { testConfig } from './harness.js';
import { must } from '../../src/lib/must.js';

const kind = process.env['CRASH_DB_KIND'] as 'pglite' | 'postgres';
const database =
  kind === 'postgres'
    ? await openDatabase({ kind: 'postgres', url: must(process.env['CRASH_DB_URL'], 'CRASH_DB_URL is set'), poolMax: 10, schema: must(process.env['CRASH_DB_SCHEMA'], 'CRASH_DB_SCHEMA is set') })
    : await openDatabase({ kind: 'pglite', dataDir: must(process.env['CRASH_DB_DIR'], 'CRASH_DB_DIR is set'), schema: 'tally' });
const app = await createApp({ config: testConfig(database), database, logger: pino({ level: 'silent' }) as unknown as FastifyBaseLogger });
const users = (process.env['CRASH_USERS'] ?? '').split(',');
process.stdout.write('ready\n');
let i = 0;
// Keep many operations in flight on a few accounts, forever: the parent kills us mid-stream.
const worker = async () => {
  for (;;) {
    const userId = must(users[i++ % users.length], 'users[i++ % users.length]');
    const res = await app.services.credits.execute(
      { userId },
      { kind: i % 7 === 0 ? 'grant' : 'debit', requestId: `c${i}`, idem: null, amount: 3, reason: 'crash load', metadata: {}, class: 'default', source: 'grant', expiresAt: null, priority: 0 } as never,
    );
    if (res.ok && res.created) process.stdout.write(`ack ${(res.value as { transaction: { id: string } }).transaction.id}\n`);
  }
};
await Promise.all(Array.from({ length: 32 }, worker));
