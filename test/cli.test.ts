import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/database.js';
import { POSTGRES_URL, TARGET } from './support/harness.js';

/** Runs the real `tally` command line (from the TypeScript sources) against this run's database. */
describe(`tally CLI (${TARGET})`, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tally-cli-'));
  const schema = `t_cli_${randomBytes(4).toString('hex')}`;
  const env = {
    ...process.env,
    TALLY_DATA_DIR: dataDir,
    TALLY_DB_SCHEMA: schema,
    LOG_LEVEL: 'silent',
    DATABASE_URL: TARGET === 'postgres' ? POSTGRES_URL : '',
    NODE_ENV: 'development',
  };
  const tally = (...args: string[]) => {
    const res = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', "const { main } = await import('./src/cli/main.ts'); await main(['node', 'tally', ...process.argv.slice(1)]);", '--', ...args],
      { env, encoding: 'utf8', cwd: join(import.meta.dirname, '..'), timeout: 60_000 },
    );
    return { code: res.status, out: res.stdout, err: res.stderr };
  };
  const openDb = () =>
    TARGET === 'postgres'
      ? openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 2, schema })
      : openDatabase({ kind: 'pglite', dataDir: join(dataDir, 'pgdata'), schema });

  afterAll(async () => {
    rmSync(dataDir, { recursive: true, force: true });
    if (TARGET === 'postgres') {
      const db = await openDb();
      await db.root.schema.dropSchema(schema).ifExists().cascade().execute();
      await db.close();
    }
  });

  it('migrate applies once, then is up to date', () => {
    const first = tally('migrate');
    expect(first.code, first.err).toBe(0);
    expect(first.out).toMatch(/applied 0001_foundation, 0002_credits/);
    const second = tally('migrate');
    expect(second.out).toMatch(/up to date/);
  });

  it('keys create prints a working key once; reconcile passes, then catches drift', async () => {
    const db = await openDb();
    await db.db.insertInto('users').values({ id: 'cli-user', email: 'cli@example.com' }).execute();
    await db.db.insertInto('credit_accounts').values({ id: 'acc_u_cli-user', user_id: 'cli-user' }).execute();
    await db.close();

    const key = tally('keys', 'create', '--user', 'cli-user', '--scopes', 'credits:read,users:read');
    expect(key.code, key.err).toBe(0);
    expect(key.out.trim()).toMatch(/^tly_[A-Za-z0-9]{48}$/);
    const check = await openDb();
    const stored = await check.db.selectFrom('api_keys').select(['key_hash', 'scopes']).where('user_id', '=', 'cli-user').execute();
    await check.close();
    expect(stored).toEqual([{ key_hash: createHash('sha256').update(key.out.trim()).digest('hex'), scopes: ['credits:read', 'users:read'] }]);
    expect(tally('keys', 'create', '--user', 'cli-user', '--scopes', 'root').code).toBe(2);
    expect(tally('keys', 'create', '--user', 'nobody').code).toBe(1);

    const ok = tally('reconcile');
    expect(ok.code, ok.out + ok.err).toBe(0);
    expect(ok.out).toMatch(/ok: every balance equals its ledger/);

    const db2 = await openDb();
    await db2.db.updateTable('credit_accounts').set({ balance: 42 }).where('id', '=', 'acc_u_cli-user').execute();
    await db2.close();
    const bad = tally('reconcile');
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/DRIFT acc_u_cli-user: balance = sum\(ledger\) \(expected 0, found 42\)/);
  });

  it('typegen --check agrees with the committed types', () => {
    const res = tally('typegen', '--check');
    expect(res.code, res.err).toBe(0);
  });

  it('a production start without secrets fails naming the variables', () => {
    const res = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', "const { main } = await import('./src/cli/main.ts'); await main(['node', 'tally', 'migrate']);"],
      { env: { ...env, NODE_ENV: 'production', TALLY_JWT_SECRET: '', TALLY_ENCRYPTION_KEY: '' }, encoding: 'utf8', cwd: join(import.meta.dirname, '..') },
    );
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/TALLY_JWT_SECRET, TALLY_ENCRYPTION_KEY/);
  });
});
