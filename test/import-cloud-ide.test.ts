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
import { type CloudIdeFixture, createCloudIdePostgres, fillCloudIde } from './support/import-source-cloud-ide.js';

vi.setConfig({ testTimeout: 180_000 });

type Target = { dataDir: string; schema: string };

/** `tally import` of seed 002's design (docs/import.md, cloud-ide: accounts and money) through the compiled CLI. */
describe(`tally import cloud-ide (${TARGET})`, () => {
  let cli: string[] = [];
  let src: Source;
  let fixture: CloudIdeFixture;
  const tmp = mkdtempSync(join(tmpdir(), 'tally-import-ci-'));
  const targets: Target[] = [];
  const newTarget = (): Target => {
    const t = { dataDir: seededDataDir(tmp, 't-'), schema: `t_impci_${randomBytes(4).toString('hex')}` };
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
    src = await createCloudIdePostgres();
    fixture = await fillCloudIde(src, 12);
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

  it('detects the shape among 30 tables, moves users, workspaces, plans, customers, subscriptions, invoices and usage history, applies each anomaly rule, and a second run imports nothing', async () => {
    const t = newTarget();
    const res = run(t, ...importArgs('--json'));
    expect(res.code, (res.err + res.out).slice(-3000)).toBe(0);
    const report = JSON.parse(res.out) as ImportReport;
    expect(report.detection).toMatch(/^detected cloud-ide from tables .* \(30 of the 30 tables of seed 002's design present\)$/);
    expect(report.credits).toMatchObject({ source_total: 0, tally_total: 0, source_accounts: fixture.users, tally_accounts: fixture.users, match: true });
    expect(report.anomalies.by_kind).toEqual({ orphan: 7, second_owner: 1, duplicate_subscription: 1 });
    const table = (name: string) => report.tables.find((x) => x.table === name);
    expect(table('users')).toMatchObject({ imported: fixture.users, skipped: 0 });
    expect(table('workspaces')).toMatchObject({ imported: fixture.workspaces, skipped_by_reason: { orphan: 1 } });
    expect(table('workspace_members')).toMatchObject({ imported: fixture.members, skipped_by_reason: { orphan: 1 } });
    expect(table('subscription_plans')).toMatchObject({ imported: 2, skipped: 0 });
    expect(table('customers')).toMatchObject({ imported: fixture.customers, skipped_by_reason: { orphan: 1 } });
    expect(table('subscriptions')).toMatchObject({ imported: fixture.subscriptions, skipped_by_reason: { orphan: 2 } });
    expect(table('invoices')).toMatchObject({ imported: fixture.invoices, skipped_by_reason: { orphan: 1 } });
    expect(table('usage_records')).toMatchObject({ imported: fixture.usage, skipped_by_reason: { orphan: 1 } });

    expect(await q(t, 'select 1 from T.credit_ledger')).toEqual([]);
    const [members] = await q<{ owners: number; n: number }>(t, `select count(*) filter (where role = 'owner')::int as owners, count(*)::int as n from T.workspace_members`);
    expect(members).toEqual({ owners: fixture.workspaces, n: fixture.members });
    const [second] = await q<{ role: string }>(t, `select role from T.workspace_members where workspace_id = '${fixture.secondOwner.workspace}' and user_id = '${fixture.secondOwner.user}'`);
    expect(second?.role).toBe('admin');
    expect(await q(t, 'select provider_price_id, billing_interval from T.plan_prices order by 1')).toEqual([
      { provider_price_id: 'price_pro_m', billing_interval: 'monthly' },
      { provider_price_id: 'price_pro_y', billing_interval: 'yearly' },
    ]);
    const statuses = await q<{ status: string; n: number }>(t, 'select status, count(*)::int as n from T.subscriptions group by status order by status');
    expect(Object.fromEntries(statuses.map((s) => [s.status, s.n]))).toEqual(fixture.byStatus);
    const twoLive = await q<{ is_primary: boolean }>(t, `select is_primary from T.subscriptions where user_id = '${fixture.twoLive}' order by is_primary desc`);
    expect(twoLive.map((s) => s.is_primary)).toEqual([true, false]);
    const [inv] = await q<{ n: number; paid: number }>(t, `select count(*)::int as n, sum(amount_paid)::int as paid from T.invoices where provider = 'stripe' and customer_id is not null`);
    expect(inv).toEqual({ n: fixture.invoices, paid: fixture.amountPaid });
    const [usage] = await q<{ n: number; exact: number }>(t, `select count(*)::int as n, count(*) filter (where metadata->>'quantity' like '%.5678' and amount = 0)::int as exact from T.imported_credit_history`);
    expect(usage).toEqual({ n: fixture.usage, exact: fixture.usage });
    expect(run(t, 'reconcile').code).toBe(0);

    const again = run(t, ...importArgs('--json'));
    expect(again.code, again.err.slice(-3000)).toBe(0);
    const secondRun = JSON.parse(again.out) as ImportReport;
    expect(secondRun.tables.map((x) => x.imported)).toEqual(secondRun.tables.map(() => 0));
    const [n] = await q<{ subs: number; members: number }>(t, 'select (select count(*)::int from T.subscriptions) as subs, (select count(*)::int from T.workspace_members) as members');
    expect(n).toEqual({ subs: fixture.subscriptions, members: fixture.members });
  });

  it('--strict refuses a source with anomalies and imports nothing; --dry-run reports and keeps nothing', async () => {
    const t = newTarget();
    const strict = run(t, ...importArgs('--schema', 'cloud-ide', '--strict', '--json'));
    expect(strict.code).toBe(1);
    const report = JSON.parse(strict.out) as ImportReport;
    expect(report.status).toBe('refused');
    expect(report.error).toMatch(/--strict: the source has 9 anomalies; nothing was imported/);
    const dry = run(t, ...importArgs('--dry-run', '--json'));
    expect(dry.code, dry.err.slice(-3000)).toBe(0);
    expect((JSON.parse(dry.out) as ImportReport).tables.find((x) => x.table === 'subscriptions')?.imported).toBe(fixture.subscriptions);
    for (const table of ['users', 'workspaces', 'plans', 'subscriptions', 'invoices', 'imported_credit_history']) expect(await q(t, `select id from T.${table}`)).toEqual([]);
    expect(await q(t, 'select status, dry_run from T.import_runs order by started_at')).toEqual([{ status: 'refused', dry_run: false }, { status: 'completed', dry_run: true }]);
  });
});
