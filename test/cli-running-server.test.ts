import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '../src/db/database.js';
import { acquireDataDirLock, DataDirLocked, lockFileOf, lockHolder } from '../src/db/data-dir-lock.js';
import { tallyCommand } from './support/cli.js';
import { TARGET } from './support/harness.js';
import { must } from '../src/lib/must.js';

// Each step spawns the real, compiled CLI (test/support/cli.ts): a fresh Node per command.
vi.setConfig({ testTimeout: 240_000 });

const ROOT = join(import.meta.dirname, '..');
/** What two PGlite instances on one directory printed (issue 17): none of it may ever appear. */
const CRASH = /Aborted\(\)|RuntimeError|wasm|function\(\w\)\{/;

/** The lock on a PGlite directory (src/db/data-dir-lock.ts). */
describe.skipIf(TARGET !== 'pglite')('PGlite data directory lock', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tally-lock-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a live holder is refused with its pid; released, the directory is free again', () => {
    const pgdata = join(dir, 'live');
    const lock = acquireDataDirLock(pgdata);
    expect(lockHolder(pgdata)).toMatchObject({ pid: process.pid, url: null });
    lock.announce('http://127.0.0.1:1234');
    expect(() => acquireDataDirLock(pgdata)).toThrow(DataDirLocked);
    try {
      acquireDataDirLock(pgdata);
    } catch (err) {
      expect((err as DataDirLocked).holder).toMatchObject({ pid: process.pid, url: 'http://127.0.0.1:1234' });
    }
    lock.release();
    expect(existsSync(lockFileOf(pgdata))).toBe(false);
    acquireDataDirLock(pgdata).release();
  });

  it('a lock held by another live process is refused; one whose process is gone is taken over', async () => {
    const pgdata = join(dir, 'other');
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      writeFileSync(lockFileOf(pgdata), JSON.stringify({ pid: sleeper.pid, started_at: new Date().toISOString(), url: null }));
      expect(() => acquireDataDirLock(pgdata)).toThrow(new RegExp(`pid ${sleeper.pid}`));
    } finally {
      sleeper.kill('SIGKILL');
      await new Promise((r) => sleeper.once('exit', r));
    }
    // The same lock, its process now gone: taken over.
    const lock = acquireDataDirLock(pgdata);
    expect(JSON.parse(readFileSync(lockFileOf(pgdata), 'utf8'))).toMatchObject({ pid: process.pid });
    lock.release();
    // Our own pid recorded by an earlier life (a container restart makes the server pid 1 again).
    writeFileSync(lockFileOf(pgdata), JSON.stringify({ pid: process.pid, started_at: '2020-01-01T00:00:00Z', url: null }));
    acquireDataDirLock(pgdata).release();
    // Unreadable (written by a process killed mid-write): nobody's.
    writeFileSync(lockFileOf(pgdata), '{"pid": 12');
    acquireDataDirLock(pgdata).release();
  });

  it('openDatabase on a directory already open fails with DataDirLocked, not a PGlite crash; close releases it', async () => {
    const pgdata = join(dir, 'db');
    const first = await openDatabase({ kind: 'pglite', dataDir: pgdata, schema: 'tally' });
    try {
      await expect(openDatabase({ kind: 'pglite', dataDir: pgdata, schema: 'tally' })).rejects.toBeInstanceOf(DataDirLocked);
    } finally {
      await first.close();
    }
    expect(existsSync(lockFileOf(pgdata))).toBe(false);
    const again = await openDatabase({ kind: 'pglite', dataDir: pgdata, schema: 'tally' });
    await again.close();
  });
});

/** The CLI next to a running `tally start` on the same PGlite directory (issue 17, item 1). */
describe.skipIf(TARGET !== 'pglite')('tally CLI while a server runs (pglite)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tally-cli-running-'));
  const env = {
    ...process.env,
    TALLY_DATA_DIR: dataDir,
    TALLY_DB_SCHEMA: 'tally',
    DATABASE_URL: '',
    NODE_ENV: 'development',
    LOG_LEVEL: 'warn',
  };
  const tally = (...args: string[]) => {
    const res = spawnSync(process.execPath, [...cli, ...args], {
      env: { ...env, PORT: '0' },
      encoding: 'utf8',
      cwd: ROOT,
      timeout: 90_000,
    });
    const r = { code: res.status, out: res.stdout, err: res.stderr };
    expect(r.out + r.err, `tally ${args.join(' ')}`).not.toMatch(CRASH);
    return r;
  };
  let cli: string[] = [];
  beforeAll(async () => {
    cli = await tallyCommand();
  }, 300_000);
  const lockFile = join(dataDir, 'pgdata.lock');
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('routes reconcile, keys create and migrate through the server, refuses the rest in one line, and works directly once it stops', async () => {
    const server = spawn(process.execPath, [...cli, 'start'], {
      cwd: ROOT,
      env: { ...env, PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    server.stdout.on('data', (c: Buffer) => (out += c.toString()));
    server.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 120_000;
      while (!/Tally is running at (\S+)/.test(out)) {
        if (Date.now() > deadline || server.exitCode !== null) throw new Error(`server did not start:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const base = must(/Tally is running at (\S+)/.exec(out)?.[1], 'the server prints its URL');
      expect(JSON.parse(readFileSync(lockFile, 'utf8'))).toMatchObject({ pid: server.pid, url: base });
      const serviceKey = (JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')) as { serviceKey: string }).serviceKey;
      const userRes = await fetch(`${base}/v1/users`, {
        method: 'POST',
        headers: { authorization: `Bearer ${serviceKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ email: `run_${randomBytes(4).toString('hex')}@example.com` }),
      });
      expect(userRes.status).toBe(201);
      const user = (await userRes.json()) as { id: string };

      // reconcile: the server's checks, the command's output.
      const rec = tally('reconcile');
      expect(rec.code, rec.err).toBe(0);
      expect(rec.out).toMatch(/^checked 1 accounts, \d+ ledger entries, 0 open holds\nok: every balance equals its ledger\n$/);
      const recJson = tally('reconcile', '--json');
      expect(recJson.code, recJson.err).toBe(0);
      const report = JSON.parse(recJson.out) as Record<string, unknown>;
      expect(Object.keys(report).sort()).toEqual(['accounts', 'drift', 'entries', 'ok', 'open_holds']);
      expect(report).toMatchObject({ ok: true, accounts: 1, drift: [] });

      // keys create: the key is printed once and the running server accepts it at once.
      const key = tally('keys', 'create', '--user', user.id, '--name', 'while-running');
      expect(key.code, key.err).toBe(0);
      expect(key.out.trim()).toMatch(/^tly_[A-Za-z0-9]{48}$/);
      expect(key.err).toMatch(new RegExp(`^created \\S+ \\(tly_\\S*…\\) for ${user.id}; the key is shown only now\\n$`));
      const me = await fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${key.out.trim()}` } });
      expect(me.status).toBe(200);
      const nobody = tally('keys', 'create', '--user', 'nobody');
      expect(nobody.code).toBe(1);
      expect(nobody.err).toMatch(/^keys create: .+\n$/);

      // migrate: the server migrated at start; /ready says so.
      const mig = tally('migrate');
      expect(mig.code, mig.err).toBe(0);
      expect(mig.out).toBe(`up to date (the server (pid ${server.pid}, ${base}) applied every migration when it started)\n`);

      // Commands with no HTTP route: refused in one line naming the holder, exit 2.
      for (const args of [['typegen', '--check'], ['billing', 'run', '--dry-run'], ['secrets', 'rotate']]) {
        const r = tally(...args);
        expect(r.code, `${args.join(' ')}: ${r.out}${r.err}`).toBe(2);
        expect(r.out).toBe('');
        expect(r.err).toMatch(new RegExp(`^tally: the server \\(pid ${server.pid}, ${base.replace(/[.]/g, '\\.')}\\) has the embedded database open \\(.+\\); .*stop it to run \`${args[0]}`));
        expect(r.err.trim().split('\n')).toHaveLength(1);
      }

      // A second start on the same directory: one line, exit 2, and the first server is untouched.
      const second = tally('start');
      expect(second.code).toBe(2);
      expect(second.out).toBe('');
      expect(second.err.trim().split('\n')).toHaveLength(1);
      expect(second.err).toMatch(new RegExp(`^tally: the server \\(pid ${server.pid}, \\S+\\) already has the embedded database open`));
      expect((await fetch(`${base}/ready`)).status).toBe(200);
      expect(JSON.parse(readFileSync(lockFile, 'utf8'))).toMatchObject({ pid: server.pid, url: base });
    } finally {
      server.kill('SIGTERM');
    }
    expect(await exited, out).toBe(0);
    expect(out).not.toMatch(CRASH);
    expect(existsSync(lockFile)).toBe(false);

    // The server gone, the CLI opens the directory itself again (and sees the key it created).
    const direct = tally('reconcile');
    expect(direct.code, direct.err).toBe(0);
    expect(direct.out).toMatch(/^checked 1 accounts/);
    expect(existsSync(lockFile)).toBe(false);
    const db = await openDatabase({ kind: 'pglite', dataDir: join(dataDir, 'pgdata'), schema: 'tally' });
    try {
      expect((await db.db.selectFrom('api_keys').select('name').execute()).map((k) => k.name)).toEqual(['while-running']);
    } finally {
      await db.close();
    }
  });
});
