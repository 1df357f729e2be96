import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '../src/db/database.js';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { POSTGRES_URL, TARGET } from './support/harness.js';
import { must } from '../src/lib/must.js';

vi.setConfig({ testTimeout: 120_000 });

/**
 * SIGTERM on a real `tally start` under load: it stops accepting, answers what is in flight, and
 * exits 0 within its bound — and no money request is half-answered: every debit that got a 201 is
 * in the ledger, and nothing else is (docs/operations.md, "Shutdown").
 */
describe(`graceful shutdown (${TARGET})`, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tally-shutdown-'));
  const schema = `t_sd_${randomBytes(4).toString('hex')}`;
  const openDb = () =>
    TARGET === 'postgres'
      ? openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 2, schema })
      : openDatabase({ kind: 'pglite', dataDir: join(dataDir, 'pgdata'), schema });

  afterAll(async () => {
    if (TARGET === 'postgres') {
      const db = await openDb();
      await db.root.schema.dropSchema(schema).ifExists().cascade().execute();
      await db.close();
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('SIGTERM answers the requests in flight, refuses the rest, and exits 0 with every 201 in the ledger', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', "const { main } = await import('./src/cli/main.ts'); await main(['node', 'tally', 'start']);"],
      {
        cwd: join(import.meta.dirname, '..'),
        env: {
          ...process.env,
          PORT: '0',
          TALLY_DATA_DIR: dataDir,
          TALLY_DB_SCHEMA: schema,
          DATABASE_URL: TARGET === 'postgres' ? POSTGRES_URL : '',
          LOG_LEVEL: 'warn',
          NODE_ENV: 'development',
          TALLY_QUEUE_POLL_MS: '200',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 90_000;
    while (!/Tally is running at (\S+)/.test(out)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`server did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const base = must(/Tally is running at (\S+)/.exec(out)?.[1], 'the server prints its URL');
    const key = (JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')) as { serviceKey: string }).serviceKey;
    const call = (path: string, body: unknown, idem: string) =>
      fetch(`${base}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': idem },
        body: JSON.stringify(body),
      });
    const user = (await (await call('/v1/users', { email: `sd_${randomBytes(4).toString('hex')}@example.com` }, 'user')).json()) as { id: string };
    expect((await call('/v1/credits/grant', { user_id: user.id, amount: 1000, reason: 'fund' }, 'fund')).status).toBe(201);

    const debits = Array.from({ length: 40 }, (_, i) =>
      call('/v1/credits/debit', { user_id: user.id, amount: 1, reason: 'shutdown' }, `d-${i}`).then(
        (r) => r.status,
        () => 0, // refused at the socket: the server had stopped accepting
      ),
    );
    await new Promise((r) => setTimeout(r, 5));
    const signalledAt = Date.now();
    child.kill('SIGTERM');
    const statuses = await Promise.all(debits);
    const code = await exited;
    expect(code, out).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(15_000);
    // Answered, refused with 503, or never accepted — never a 500, never left hanging.
    expect(statuses.every((s) => s === 201 || s === 503 || s === 0), JSON.stringify(statuses)).toBe(true);

    const db = await openDb();
    try {
      const debited = await db.db
        .selectFrom('credit_ledger')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('user_id', '=', user.id)
        .where('type', '=', 'debit')
        .executeTakeFirstOrThrow();
      expect(Number(debited.n)).toBe(statuses.filter((s) => s === 201).length);
      expect((await reconcile(db)).drift).toEqual([]);
    } finally {
      await db.close();
    }
  });
});
