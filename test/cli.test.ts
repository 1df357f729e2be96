import { spawnSync } from 'node:child_process';
import { httpAnswers } from '../src/http/answers.js';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEFAULT_BILLING } from '../src/config/config.js';
import { openDatabase } from '../src/db/database.js';
import { CatalogService } from '../src/modules/billing/billing.catalog.service.js';
import { SubscriptionsService } from '../src/modules/billing/billing.subscriptions.service.js';
import { CreditsService } from '../src/modules/credits/credits.service.js';
import { tallyCommand, tallyInProcess } from './support/cli.js';
import { POSTGRES_URL, TARGET } from './support/harness.js';

// Each step runs the command line in this process (src/cli/main.ts `run`, the code the binary runs)
// on its own environment; the binary itself is spawned where the process is the subject (a
// production start), and by test/cli-running-server.test.ts.
vi.setConfig({ testTimeout: 180_000 });

/** Runs the `tally` command line against this run's database. */
describe(`tally CLI (${TARGET})`, () => {
  let cli: string[] = [];
  beforeAll(async () => {
    cli = await tallyCommand();
  }, 300_000);
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
  /** `tally <args>` in this process: the binary's own code (src/cli/main.ts `run`), on this environment. */
  const tallyIn = (overrides: Record<string, string>, ...args: string[]) => tallyInProcess({ ...env, ...overrides }, ...args);
  const tally = (...args: string[]) => tallyIn({}, ...args);
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

  it('reconcile before any start brings the database up to date first, then checks it', async () => {
    const freshDir = mkdtempSync(join(tmpdir(), 'tally-cli-fresh-'));
    const freshSchema = `t_cli_fresh_${randomBytes(4).toString('hex')}`;
    try {
      const res = await tallyIn({ TALLY_DATA_DIR: freshDir, TALLY_DB_SCHEMA: freshSchema }, 'reconcile');
      expect(res.code, res.err).toBe(0);
      expect(res.out).toMatch(/checked 0 accounts, 0 ledger entries, 0 open holds\nok:/);
    } finally {
      rmSync(freshDir, { recursive: true, force: true });
      if (TARGET === 'postgres') {
        const db = await openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 2, schema: freshSchema });
        await db.root.schema.dropSchema(freshSchema).ifExists().cascade().execute();
        await db.close();
      }
    }
  });

  it('migrate applies once, then is up to date', async () => {
    const first = await tally('migrate');
    expect(first.code, first.err).toBe(0);
    expect(first.out).toMatch(/applied 0001_foundation, 0002_credits/);
    const second = await tally('migrate');
    expect(second.out).toMatch(/up to date/);
  });

  it('keys create prints a working key once; reconcile passes, then catches drift', async () => {
    const db = await openDb();
    await db.db.insertInto('users').values({ id: 'cli-user', email: 'cli@example.com' }).execute();
    await db.db.insertInto('credit_accounts').values({ id: 'acc_u_cli-user', user_id: 'cli-user' }).execute();
    await db.close();

    const key = await tally('keys', 'create', '--user', 'cli-user', '--scopes', 'credits:read,users:read');
    expect(key.code, key.err).toBe(0);
    expect(key.out.trim()).toMatch(/^tly_[A-Za-z0-9]{48}$/);
    const check = await openDb();
    const stored = await check.db.selectFrom('api_keys').select(['key_hash', 'scopes']).where('user_id', '=', 'cli-user').execute();
    await check.close();
    expect(stored).toEqual([{ key_hash: createHash('sha256').update(key.out.trim()).digest('hex'), scopes: ['credits:read', 'users:read'] }]);
    expect((await tally('keys', 'create', '--user', 'cli-user', '--scopes', 'root')).code).toBe(2);
    expect((await tally('keys', 'create', '--user', 'nobody')).code).toBe(1);

    const ok = await tally('reconcile');
    expect(ok.code, ok.out + ok.err).toBe(0);
    expect(ok.out).toMatch(/ok: every balance equals its ledger/);

    const db2 = await openDb();
    await db2.db.updateTable('credit_accounts').set({ balance: 42 }).where('id', '=', 'acc_u_cli-user').execute();
    await db2.close();
    const bad = await tally('reconcile');
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/DRIFT acc_u_cli-user: balance = sum\(ledger\) \(expected 0, found 42\)/);
  });

  it('billing run --at advances a due subscription once (--dry-run shows it and writes nothing), and refuses a bad time', async () => {
    const db = await openDb();
    await db.db.insertInto('users').values({ id: 'cli-billing', email: 'clib@example.com' }).execute();
    await db.db.insertInto('credit_accounts').values({ id: 'acc_u_cli-billing', user_id: 'cli-billing' }).execute();
    const clock = () => new Date('2026-01-01T00:00:00Z');
    const credits = new CreditsService(db, { balanceCap: null, signupBonus: 0 }, clock, httpAnswers);
    const catalog = new CatalogService(DEFAULT_BILLING);
    const subs = new SubscriptionsService(db, catalog, credits, clock);
    await db.db.transaction().execute(async (trx) => {
      await catalog.createPlan(trx, { slug: 'cli', name: 'CLI', trial_days: 0, allowances: [{ class: 'Usage', amount: 7 }] });
      await subs.create(trx, { kind: 'service' }, { user_id: 'cli-billing', plan_id: 'cli' });
    });
    await db.close();
    const ledgerRows = async () => {
      const d = await openDb();
      const n = (await d.db.selectFrom('credit_ledger').select('id').where('user_id', '=', 'cli-billing').execute()).length;
      await d.close();
      return n;
    };
    const written = await ledgerRows();
    // --dry-run shows the renewal (the new window's allowance, the old one's expiry) and keeps nothing.
    const dry = await tally('billing', 'run', '--at', '2026-02-01T00:00:01Z', '--dry-run', '--json');
    expect(dry.code, dry.err).toBe(0);
    const preview = JSON.parse(dry.out) as { dry_run: boolean; due: { status: { to: string }; period_end: { to: string }; ledger: { type: string; amount: number }[] }[] };
    expect(preview.dry_run).toBe(true);
    expect(preview.due).toHaveLength(1);
    expect(preview.due[0]).toMatchObject({ status: { from: 'active', to: 'active' }, period_end: { to: '2026-03-01T00:00:00.000Z' } });
    expect(preview.due[0]?.ledger.filter((e) => e.amount > 0).map((e) => [e.type, e.amount])).toEqual([['grant', 7]]);
    expect(await ledgerRows()).toBe(written);
    const run = await tally('billing', 'run', '--at', '2026-02-01T00:00:01Z', '--json');
    expect(run.code, run.err).toBe(0);
    expect(JSON.parse(run.out)).toMatchObject({ processed: 1, errors: [] });
    const again = await tally('billing', 'run', '--at', '2026-02-01T00:00:01Z', '--json');
    expect(JSON.parse(again.out)).toMatchObject({ processed: 0 });
    const check = await openDb();
    const grants = await check.db.selectFrom('credit_grants').select(['source', 'remaining', 'expires_at']).where('user_id', '=', 'cli-billing').execute();
    await check.close();
    expect(grants.filter((g) => Number(g.remaining) > 0).map((g) => [g.source, Number(g.remaining), g.expires_at?.toISOString()])).toEqual([
      ['allowance', 7, '2026-03-01T00:00:00.000Z'],
    ]);
    expect((await tally('billing', 'run', '--at', 'yesterday')).code).toBe(2);
  });

  it('typegen --check agrees with the committed types', async () => {
    const res = await tally('typegen', '--check');
    expect(res.code, res.err).toBe(0);
  });

  it('a production start without secrets fails naming the variables', () => {
    const res = spawnSync(
      process.execPath,
      [...cli, 'migrate'],
      { env: { ...env, NODE_ENV: 'production', TALLY_JWT_SECRET: '', TALLY_ENCRYPTION_KEY: '' }, encoding: 'utf8', cwd: join(import.meta.dirname, '..') },
    );
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/TALLY_JWT_SECRET, TALLY_ENCRYPTION_KEY/);
  });
});
