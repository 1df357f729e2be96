import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '../src/db/database.js';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { must } from '../src/lib/must.js';
import { childrenOf, cpuOf } from '../bench/src/proc.js';
import { tallyCommand } from './support/cli.js';
import { POSTGRES_URL, TARGET } from './support/harness.js';

vi.setConfig({ testTimeout: 180_000 });

function collect(child: ChildProcess): () => string {
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  return () => out;
}

/**
 * `TALLY_PROCESSES=n tally start` (docs/operations.md, "Several processes"): n server processes on
 * one port, one supervisor. Money holds across them (no overspend, reconcile clean), both take
 * work, a dead one is replaced, SIGTERM stops them all; the embedded database refuses.
 */
describe.skipIf(TARGET !== 'postgres')(`tally start with TALLY_PROCESSES=2 (${TARGET})`, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tally-procs-'));
  const schema = `t_pr_${randomBytes(4).toString('hex')}`;
  const openDb = () => openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 2, schema });

  afterAll(async () => {
    const db = await openDb();
    await db.root.schema.dropSchema(schema).ifExists().cascade().execute();
    await db.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves from both processes without overspending, replaces a dead one, and stops on SIGTERM', async () => {
    const cli = await tallyCommand();
    const supervisor = spawn(process.execPath, [...cli, 'start'], {
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', TALLY_DATA_DIR: dataDir, TALLY_DB_SCHEMA: schema, DATABASE_URL: POSTGRES_URL, LOG_LEVEL: 'warn', NODE_ENV: 'development', TALLY_PROCESSES: '2' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = collect(supervisor);
    const exited = new Promise<number | null>((resolve) => supervisor.on('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 90_000;
      while (!/Processes: +2 on one port/.test(out())) {
        if (Date.now() > deadline || supervisor.exitCode !== null) throw new Error(`did not start:\n${out()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const base = must(/Tally is running at (\S+)/.exec(out())?.[1], 'the supervisor prints the URL');
      const pids = must(/pids (\d+), (\d+)/.exec(out()), 'the banner names both processes').slice(1).map(Number);
      expect(childrenOf(must(supervisor.pid, 'a pid')).sort()).toEqual([...pids].sort());
      const key = (JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')) as { serviceKey: string }).serviceKey;
      const call = (path: string, body: unknown, idem: string) =>
        fetch(`${base}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': idem, connection: 'close' },
          body: JSON.stringify(body),
        });
      const user = (await (await call('/v1/users', { email: `pr_${randomBytes(4).toString('hex')}@example.com` }, 'u')).json()) as { id: string };
      expect((await call('/v1/credits/grant', { user_id: user.id, amount: 147, reason: 'fund' }, 'fund')).status).toBe(201);

      // 200 debits of 1 against 150 credits (147 + the sign-up bonus of 3), each on its own connection,
      // spread by the supervisor over both processes: exactly 150 succeed.
      const before = pids.map((pid) => cpuOf(pid) ?? Number.NaN);
      const statuses = await Promise.all(Array.from({ length: 200 }, (_, i) => call('/v1/credits/debit', { user_id: user.id, amount: 1, reason: 'p' }, `d-${i}`).then((r) => r.status)));
      const after = pids.map((pid) => cpuOf(pid) ?? Number.NaN);
      expect(statuses.filter((s) => s === 201)).toHaveLength(150);
      expect(statuses.filter((s) => s === 402)).toHaveLength(50);
      for (let i = 0; i < pids.length; i++) expect(must(after[i], 'ticks') - must(before[i], 'ticks'), `process ${pids[i]} did work`).toBeGreaterThan(0);
      const db = await openDb();
      try {
        const report = await reconcile(db);
        expect(report.drift).toEqual([]);
        const row = await db.db.selectFrom('credit_accounts').select('balance').where('id', '=', `acc_u_${user.id}`).executeTakeFirstOrThrow();
        expect(Number(row.balance)).toBe(0);
      } finally {
        await db.close();
      }

      // One dies: the supervisor starts another, and the port keeps answering.
      process.kill(must(pids[0], 'a pid'), 'SIGKILL');
      const replaced = Date.now() + 60_000;
      let now: number[] = [];
      while (Date.now() < replaced) {
        now = childrenOf(must(supervisor.pid, 'a pid'));
        if (now.length === 2 && !now.includes(must(pids[0], 'a pid'))) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(now).toHaveLength(2);
      expect(now).not.toContain(pids[0]);
      const health = await Promise.all(Array.from({ length: 6 }, () => fetch(`${base}/health`, { headers: { connection: 'close' } }).then((r) => r.status)));
      expect(health.every((s) => s === 200)).toBe(true);

      supervisor.kill('SIGTERM');
      expect(await exited).toBe(0);
      for (const pid of now) expect(() => process.kill(pid, 0), `process ${pid} is gone`).toThrow();
    } finally {
      if (supervisor.exitCode === null) supervisor.kill('SIGKILL');
    }
  });
});

describe.skipIf(TARGET !== 'pglite')('tally start with TALLY_PROCESSES=2 on the embedded database', () => {
  it('is refused in one line, exit 2, before anything opens the database', async () => {
    const cli = await tallyCommand();
    const dataDir = mkdtempSync(join(tmpdir(), 'tally-procs-'));
    try {
      const child = spawn(process.execPath, [...cli, 'start'], {
        env: { ...process.env, PORT: '0', TALLY_DATA_DIR: dataDir, DATABASE_URL: '', TEST_DATABASE_URL: '', TALLY_PROCESSES: '2', LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const out = collect(child);
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      expect(code).toBe(2);
      expect(out().trim()).toBe('tally: TALLY_PROCESSES=2 needs PostgreSQL (DATABASE_URL): the embedded database is opened by one process only');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
