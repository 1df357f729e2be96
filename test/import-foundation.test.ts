import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Database, openDatabase } from '../src/db/database.js';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { tallyCommand } from './support/cli.js';
import { POSTGRES_URL, TARGET, seededDataDir } from './support/harness.js';
import { type Source, SOURCE_URL } from './support/import-source.js';
import { createFoundationPostgres, type FoundationFixture, fillFoundation } from './support/import-source-foundation.js';

vi.setConfig({ testTimeout: 180_000 });

type Target = { dataDir: string; schema: string };

/** `tally import` of seed 003's design (docs/import.md, foundation) through the compiled CLI. */
describe(`tally import foundation (${TARGET})`, () => {
  let cli: string[] = [];
  let src: Source;
  let fixture: FoundationFixture;
  const tmp = mkdtempSync(join(tmpdir(), 'tally-import-fd-'));
  const targets: Target[] = [];
  const newTarget = (): Target => {
    const t = { dataDir: seededDataDir(tmp, 't-'), schema: `t_impfd_${randomBytes(4).toString('hex')}` };
    targets.push(t);
    return t;
  };
  const run = (t: Target, ...args: string[]) => {
    const env = { ...process.env, TALLY_DATA_DIR: t.dataDir, TALLY_DB_SCHEMA: t.schema, LOG_LEVEL: 'silent', DATABASE_URL: TARGET === 'postgres' ? POSTGRES_URL : '', NODE_ENV: 'development' };
    const res = spawnSync(process.execPath, [...cli, ...args], { env, encoding: 'utf8', cwd: join(import.meta.dirname, '..'), timeout: 120_000 });
    return { code: res.status, out: res.stdout, err: res.stderr };
  };
  const openTarget = (t: Target): Promise<Database> =>
    TARGET === 'postgres'
      ? openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 2, schema: t.schema })
      : openDatabase({ kind: 'pglite', dataDir: join(t.dataDir, 'pgdata'), schema: t.schema });
  const q = async <R>(t: Target, text: string): Promise<R[]> => {
    const db = await openTarget(t);
    try {
      return (await sql.raw<R>(text.replaceAll('T.', `${t.schema}.`)).execute(db.root)).rows;
    } finally {
      await db.close();
    }
  };
  const importArgs = (...more: string[]) => ['import', '--from', SOURCE_URL, '--source-schema', src.schema, ...more];

  beforeAll(async () => {
    cli = await tallyCommand();
    src = await createFoundationPostgres();
    fixture = await fillFoundation(src, 18);
  }, 300_000);
  afterAll(async () => {
    await src?.drop();
    for (const t of targets) {
      if (TARGET === 'postgres') {
        const db = await openTarget(t);
        await db.root.schema.dropSchema(t.schema).ifExists().cascade().execute();
        await db.close();
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  it('detects the shape, opens an empty account per user, joins subscriptions to plans by slug, carries usage counters, applies each anomaly rule, and a second run imports nothing', async () => {
    const t = newTarget();
    const res = run(t, ...importArgs('--json'));
    expect(res.code, (res.err + res.out).slice(-3000)).toBe(0);
    const report = JSON.parse(res.out) as ImportReport;
    expect(report.detection).toBe("detected foundation from tables users, subscriptions, usage_counters (3 of the 3 tables of seed 003's design present)");
    expect(report.credits).toMatchObject({ source_total: 0, tally_total: 0, source_accounts: fixture.users, tally_accounts: fixture.users, match: true });
    expect(report.anomalies.by_kind).toEqual({ orphan: 2, missing_period: 1, duplicate_provider_id: 1, unknown_value: 1 });
    const table = (name: string) => report.tables.find((x) => x.table === name);
    expect(table('users')).toMatchObject({ imported: fixture.users, skipped: 0 });
    expect(table('subscriptions')).toMatchObject({ imported: fixture.subscriptions, skipped_by_reason: { orphan: 1 } });
    expect(table('usage_counters')).toMatchObject({ imported: fixture.counters, skipped_by_reason: { orphan: 1, unknown_value: 1 } });

    expect(await q(t, 'select 1 from T.credit_ledger')).toEqual([]);
    const [accounts] = await q<{ n: number; balance: number }>(t, 'select count(*)::int as n, coalesce(sum(balance), 0)::int as balance from T.credit_accounts');
    expect(accounts).toEqual({ n: fixture.users, balance: 0 });
    // Plans made for the import: inactive, priced 0, one per source plan name.
    expect(await q(t, 'select slug, is_active, price_monthly::int as price from T.plans order by slug')).toEqual([
      { slug: 'basic', is_active: false, price: 0 },
      { slug: 'free', is_active: false, price: 0 },
      { slug: 'pro', is_active: false, price: 0 },
    ]);
    const statuses = await q<{ status: string; n: number }>(t, 'select status, count(*)::int as n from T.subscriptions group by status order by status');
    expect(Object.fromEntries(statuses.map((s) => [s.status, s.n]))).toEqual(fixture.byStatus);
    const [ended] = await q<{ bad: number }>(t, `select count(*)::int as bad from T.subscriptions where (status = 'canceled') <> (ended_at is not null) or current_period_end <= current_period_start`);
    expect(ended?.bad).toBe(0);
    const twins = await q<{ provider_subscription_id: string | null; source: string }>(t, `select provider_subscription_id, metadata->>'source_id' as source from T.subscriptions where metadata->>'lemon_squeezy_id' = 'ls_twin' order by 2`);
    expect(twins).toEqual([
      { provider_subscription_id: 'ls_twin', source: fixture.duplicateLemon.kept },
      { provider_subscription_id: null, source: fixture.duplicateLemon.unlinked },
    ]);
    const windows = await q<{ window: string; n: number }>(t, 'select "window", count(*)::int as n from T.usage_counters group by 1 order by 1');
    expect(Object.fromEntries(windows.map((w) => [w.window, w.n]))).toEqual(fixture.windows);
    expect(run(t, 'reconcile').code).toBe(0);

    const again = run(t, ...importArgs('--json'));
    expect(again.code, again.err.slice(-3000)).toBe(0);
    const second = JSON.parse(again.out) as ImportReport;
    expect(second.tables.map((x) => x.imported)).toEqual([0, 0, 0]);
    const [n] = await q<{ subs: number; counters: number }>(t, 'select (select count(*)::int from T.subscriptions) as subs, (select count(*)::int from T.usage_counters) as counters');
    expect(n).toEqual({ subs: fixture.subscriptions, counters: fixture.counters });
  });

  it('--strict refuses a source with anomalies and imports nothing; --dry-run reports and keeps nothing', async () => {
    const t = newTarget();
    const strict = run(t, ...importArgs('--schema', 'foundation', '--strict', '--json'));
    expect(strict.code).toBe(1);
    const report = JSON.parse(strict.out) as ImportReport;
    expect(report.status).toBe('refused');
    expect(report.error).toMatch(/--strict: the source has 5 anomalies; nothing was imported/);
    const dry = run(t, ...importArgs('--dry-run', '--json'));
    expect(dry.code, dry.err.slice(-3000)).toBe(0);
    expect((JSON.parse(dry.out) as ImportReport).tables.find((x) => x.table === 'subscriptions')?.imported).toBe(fixture.subscriptions);
    expect(await q(t, 'select id from T.users')).toEqual([]);
    expect(await q(t, 'select id from T.subscriptions')).toEqual([]);
    expect(await q(t, 'select id from T.plans')).toEqual([]);
    expect(await q(t, 'select user_id from T.usage_counters')).toEqual([]);
    expect(await q(t, 'select status, dry_run from T.import_runs order by started_at')).toEqual([{ status: 'refused', dry_run: false }, { status: 'completed', dry_run: true }]);
  });
});
