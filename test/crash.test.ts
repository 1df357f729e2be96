import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase } from '../src/db/database.js';
import { migrate } from '../src/db/migrate.js';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { createApp } from '../src/app.js';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { POSTGRES_URL, TARGET, testConfig } from './support/harness.js';

/**
 * Kill -9 in the middle of a stream of money movements, then check the books: every balance still
 * equals its ledger, and everything the process acknowledged before it died is there.
 */
describe(`a crash mid-load (${TARGET})`, () => {
  const schema = `t_crash_${randomBytes(4).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'tally-crash-'));
  const open = (): Promise<Database> =>
    TARGET === 'postgres'
      ? openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 5, schema })
      : openDatabase({ kind: 'pglite', dataDir: dir, schema: 'tally' });

  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    if (TARGET === 'postgres') {
      const db = await open();
      await db.root.schema.dropSchema(schema).ifExists().cascade().execute();
      await db.close();
    }
  });

  it('leaves every balance equal to its ledger and keeps every acknowledged movement', async () => {
    // Set up users with credits, then close: the child process owns the database while it runs.
    let database = await open();
    const outcome = await migrate(database);
    expect(outcome.ok).toBe(true);
    const app = await createApp({ config: testConfig(database), database, logger: pino({ level: 'silent' }) as unknown as FastifyBaseLogger });
    const users: string[] = [];
    for (let i = 0; i < 3; i++) {
      const u = await app.services.users.create(database.db, { email: `crash${i}@example.com` });
      await app.services.credits.execute({ userId: u.id }, {
        kind: 'grant', requestId: 'seed', idem: null, amount: 40_000, reason: 'seed', class: 'default', source: 'grant', expiresAt: null, priority: 0, metadata: {},
      });
      users.push(u.id);
    }
    await app.server.close();
    await database.close();

    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'support', 'crash-child.ts')], {
      env: {
        ...process.env,
        CRASH_DB_KIND: TARGET,
        CRASH_DB_URL: POSTGRES_URL,
        CRASH_DB_SCHEMA: schema,
        CRASH_DB_DIR: dir,
        CRASH_USERS: users.join(','),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const acked: string[] = [];
    let buffered = '';
    let ready = false;
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (line === 'ready') ready = true;
        else if (line.startsWith('ack ')) acked.push(line.slice(4));
      }
    });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // Waits on the condition (ready, then 300 acknowledged movements), bounded generously: on two
    // busy cores the child's start (tsx compiles the app) and its load each took over 20 s.
    const startBy = Date.now() + 90_000;
    while (!ready && Date.now() < startBy) await new Promise((r) => setTimeout(r, 20));
    const loadBy = Date.now() + 60_000;
    while (acked.length < 300 && Date.now() < loadBy) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    expect(acked.length).toBeGreaterThanOrEqual(300);

    database = await open();
    const report = await reconcile(database);
    expect(report.drift).toEqual([]);
    const found = await database.db.selectFrom('credit_ledger').select('id').where('id', 'in', acked).execute();
    expect(found.length).toBe(acked.length);
    await database.close();
  }, 240_000);
});
