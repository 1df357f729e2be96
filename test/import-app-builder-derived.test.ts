import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { TARGET } from './support/harness.js';
import { type ImportTarget, importHarness } from './support/import-cli.js';
import { type Source, SOURCE_URL } from './support/import-source.js';
import { type AppBuilderFixture, createAppBuilderPostgres, createAppBuilderSqlite, fillAppBuilder, postgresInsert } from './support/import-source-app-builder.js';
import { dayKey, fillAppBuilderDerived } from './support/import-source-app-builder-derived.js';

vi.setConfig({ testTimeout: 180_000 });

/**
 * `tally import` of seed 000's derived usage and pricing tables (docs/import.md, app-builder,
 * "Derived usage and pricing") from both of its sources, the SQLite `cc.db` and the Supabase schema:
 * readings, summaries and overage charges kept as history (money exact, linked, never a balance
 * move, never Tally's own overage), autofix counts as the `autofix` daily quota, cost models
 * inactive with their money rate kept for review; each anomaly rule, --owner for rows naming no
 * user, --strict, --dry-run, a second run, a kill then --resume.
 */
describe(`tally import app-builder: derived usage and pricing (${TARGET})`, () => {
  const ih = importHarness('abd');
  const { run, q, tmp } = ih;
  let pgSource: Source;
  let pgFixture: AppBuilderFixture;
  let sqliteFile: string;
  let sqliteFixture: AppBuilderFixture;

  beforeAll(async () => {
    await ih.start();
    pgSource = await createAppBuilderPostgres();
    await pgSource.query('set session_replication_role = replica');
    pgFixture = await fillAppBuilder(postgresInsert(pgSource), 4);
    await fillAppBuilderDerived(postgresInsert(pgSource));
    sqliteFile = join(tmp, 'cc.db');
    const lite = await createAppBuilderSqlite(sqliteFile);
    sqliteFixture = await fillAppBuilder(lite.insert, 4);
    await fillAppBuilderDerived(lite.insert);
    lite.close();
  }, 300_000);
  afterAll(async () => {
    await pgSource?.drop();
    await ih.stop();
  });

  const sources = [
    { name: 'SQLite cc.db', args: () => ['--from', sqliteFile], fixture: () => sqliteFixture },
    { name: 'Supabase (PostgreSQL)', args: () => ['--from', SOURCE_URL, '--source-schema', pgSource.schema], fixture: () => pgFixture },
  ] as const;
  const table = (report: ImportReport, name: string) => report.tables.find((x) => x.table === name);
  const history = (t: ImportTarget, sourceTable: string) =>
    q<{ source_id: string; user_id: string; type: string; amount: number; opening_entry_id: string | null; metadata: Record<string, unknown> }>(
      t,
      `select source_id, user_id, type, amount, opening_entry_id, metadata from T.imported_credit_history where source_table = '${sourceTable}' order by source_id`,
    );

  for (const source of sources) {
    it(`from ${source.name}: keeps readings, summaries and overage as linked history, continues autofix as the daily quota, brings cost models inactive for review, and a second run imports nothing`, async () => {
      const t = ih.newTarget();
      const res = await run(t, 'import', ...source.args(), '--json');
      expect(res.code, (res.err + res.out).slice(-3000)).toBe(0);
      const report = JSON.parse(res.out) as ImportReport;
      expect(report.not_imported.map((n) => n.table).join(' ')).not.toMatch(/usage_meter_readings|usage_summaries|overage_charges|allowance_daily_autofix|cost_models/);
      // Money never moved: every account opened at its source balance, reconcile clean.
      expect(report.credits).toMatchObject({ source_total: source.fixture().total, tally_total: source.fixture().total, match: true });
      expect(report.reconcile.ok).toBe(true);
      // fillAppBuilder's own (orphan 10, overused 1) plus: 4 orphans, a charge whose summary is gone, an overused autofix day; an unreadable day and formula while writing.
      expect(report.anomalies.by_kind).toMatchObject({ orphan: 15, overused_allowance: 2, unknown_value: 2 });
      expect(table(report, 'usage_meter_readings')).toMatchObject({ read: 4, imported: 2, skipped_by_reason: { owner_not_imported: 1, orphan: 1 } });
      expect(table(report, 'usage_summaries')).toMatchObject({ read: 3, imported: 1, skipped_by_reason: { owner_not_imported: 1, orphan: 1 } });
      expect(table(report, 'overage_charges')).toMatchObject({ read: 4, imported: 3, skipped_by_reason: { orphan: 1 } });
      expect(table(report, 'allowance_daily_autofix')).toMatchObject({ read: 5, imported: 3, skipped_by_reason: { unknown_value: 1, orphan: 1 } });
      expect(table(report, 'cost_models')).toMatchObject({ read: 3, imported: 2, skipped_by_reason: { unknown_value: 1 } });
      // Review: both cost models (money rate), and the two charges 000 had not settled.
      expect(report.needs_review.map((n) => `${n.table}:${n.source_id}`).sort()).toEqual(['cost_models:cm-1', 'cost_models:cm-2', 'overage_charges:oc-1', 'overage_charges:oc-3']);

      const [opening] = await q<{ id: string }>(t, "select id from T.credit_ledger where account_id = 'acc_u_user-0000'");
      const readings = await history(t, 'usage_meter_readings');
      expect(readings.map((r) => [r.source_id, r.user_id, r.type, Number(r.amount), Number(r.metadata.value)])).toEqual([
        ['mr-1', 'user-0000', 'meter:Usage', 0, 12.5],
        ['mr-2', 'user-0001', 'meter:BC', 0, 3.25],
      ]);
      expect(readings[0]?.opening_entry_id).toBe(opening?.id);
      const summaries = await history(t, 'usage_summaries');
      expect(summaries.map((r) => [r.source_id, Number(r.metadata.value), Number(r.metadata.overage_amount), r.metadata.currency])).toEqual([['sum-1', 120, 4.5, 'usd']]);
      const charges = await history(t, 'overage_charges');
      expect(charges.map((r) => [r.source_id, r.user_id, Number(r.amount), Number(r.metadata.money_amount), r.metadata.currency, r.metadata.status])).toEqual([
        ['oc-1', 'user-0000', 0, 4.5, 'usd', 'invoiced'],
        ['oc-2', 'user-0001', 0, 1.25, 'usd', 'paid'],
        ['oc-3', 'user-0002', 0, 2, 'usd', 'pending'],
      ]);
      const [sum1] = await q<{ id: string }>(t, "select id from T.imported_credit_history where source_table = 'usage_summaries' and source_id = 'sum-1'");
      expect(charges[0]?.metadata.summary_history_id).toBe(sum1?.id);
      expect(charges[0]?.opening_entry_id).toBe(opening?.id);
      expect(charges[2]?.metadata).toMatchObject({ usage_summary_id: 'sum-gone', summary_history_id: null });
      // Not Tally's own billing rows: its period closing would invoice them a second time.
      expect(await q(t, 'select id from T.overage_charges')).toEqual([]);
      expect(await q(t, 'select id from T.usage_summaries')).toEqual([]);

      const quotas = await q<{ user_id: string; metric: string; date_key: string; consumed: string; quota: number; starts_utc_midnight: boolean }>(
        t,
        `select user_id, metric, date_key::text as date_key, consumed::text as consumed, quota, window_start = date_key::timestamp at time zone 'UTC' and window_end = window_start + interval '1 day' as starts_utc_midnight
           from T.daily_quota_usage order by user_id, date_key`,
      );
      expect(quotas.map((x) => [x.user_id, x.metric, x.date_key, Number(x.consumed), Number(x.quota), x.starts_utc_midnight])).toEqual([
        ['user-0000', 'autofix', dayKey(-1), 3, 3, true],
        ['user-0000', 'autofix', dayKey(0), 2, 3, true],
        ['user-0001', 'autofix', dayKey(0), 3, 3, true],
      ]);

      const models = await q<{ metric: string; unit: string; formula: string; base_rate: string; class: string; is_active: boolean; currency: string; metadata: Record<string, unknown> }>(
        t,
        'select metric, unit, formula, base_rate::text as base_rate, class, is_active, currency, metadata from T.cost_models order by metric',
      );
      expect(models.map((m) => [m.metric, m.unit, m.formula, Number(m.base_rate), m.class, m.is_active, m.currency, Number(m.metadata.source_base_rate)])).toEqual([
        ['BC', 'build', 'ceil(quantity / 10) * base_rate', 0, 'BC', false, 'usd', 0.5],
        ['Usage', 'token', 'quantity * base_rate', 0, 'Usage', false, 'usd', 0.002],
      ]);

      const again = await run(t, 'import', ...source.args(), '--json');
      expect(again.code, again.err.slice(-2000)).toBe(0);
      const second = JSON.parse(again.out) as ImportReport;
      expect(second.tables.reduce((a, x) => a + x.imported, 0)).toBe(0);
      expect(second.needs_review).toHaveLength(4);
      const [n] = await q<{ n: number }>(t, "select count(*)::int as n from T.imported_credit_history where source_table in ('usage_meter_readings', 'usage_summaries', 'overage_charges')");
      expect(n?.n).toBe(6);
      expect((await run(t, 'reconcile')).code).toBe(0);
    });
  }

  it('from SQLite with --owner: readings and summaries that name no user become the owner\'s history', async () => {
    const t = ih.newTarget();
    const res = await run(t, 'import', '--from', sqliteFile, '--owner', 'user-0001@example.com', '--json');
    expect(res.code, (res.err + res.out).slice(-3000)).toBe(0);
    const report = JSON.parse(res.out) as ImportReport;
    expect(table(report, 'usage_meter_readings')).toMatchObject({ imported: 3, skipped_by_reason: { orphan: 1 } });
    expect(table(report, 'usage_summaries')).toMatchObject({ imported: 2, skipped_by_reason: { orphan: 1 } });
    const owned = await q<{ source_id: string; user_id: string; attributed: boolean; linked: boolean }>(
      t,
      `select h.source_id, h.user_id, (h.metadata->>'attributed_to_owner')::boolean as attributed, h.opening_entry_id = l.id as linked
         from T.imported_credit_history h join T.credit_ledger l on l.account_id = 'acc_u_user-0001' where h.source_id in ('mr-3', 'sum-2') order by h.source_id`,
    );
    expect(owned).toEqual([
      { source_id: 'mr-3', user_id: 'user-0001', attributed: true, linked: true },
      { source_id: 'sum-2', user_id: 'user-0001', attributed: true, linked: true },
    ]);
  });

  it('--strict refuses and writes nothing; --dry-run keeps nothing (PostgreSQL source); killed in the derived tables, --resume completes them once (SQLite source)', async () => {
    const t = ih.newTarget();
    const strict = await run(t, 'import', '--from', SOURCE_URL, '--source-schema', pgSource.schema, '--strict', '--json');
    expect(strict.code).toBe(1);
    expect((JSON.parse(strict.out) as ImportReport).anomalies.by_kind).toMatchObject({ orphan: 15, overused_allowance: 2 });
    const dry = await run(t, 'import', '--from', SOURCE_URL, '--source-schema', pgSource.schema, '--dry-run', '--json');
    expect(dry.code, dry.err.slice(-2000)).toBe(0);
    expect(table(JSON.parse(dry.out) as ImportReport, 'cost_models')?.imported).toBe(2);
    for (const name of ['imported_credit_history', 'daily_quota_usage', 'cost_models', 'import_map']) expect(await q(t, `select 1 from T.${name}`), name).toEqual([]);

    const k = ih.newTarget();
    expect((await run(k, 'migrate')).code).toBe(0);
    const child = spawn(process.execPath, [...ih.cli, 'import', '--from', sqliteFile, '--batch-size', '1'], { env: ih.env(k), cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (/import usage_meter_readings \[/.test(err)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`the import ended before it could be killed: ${err}`)));
    });
    await new Promise((r) => child.once('close', r));
    const resumed = await run(k, 'import', '--from', sqliteFile, '--resume', '--json');
    expect(resumed.code, resumed.err.slice(-2000)).toBe(0);
    const report = JSON.parse(resumed.out) as ImportReport;
    expect(report.credits.match).toBe(true);
    expect(table(report, 'overage_charges')).toMatchObject({ imported: 3 });
    expect(table(report, 'cost_models')).toMatchObject({ imported: 2 });
    const [n] = await q<{ n: number }>(k, "select count(*)::int as n from T.imported_credit_history where source_table in ('usage_meter_readings', 'usage_summaries', 'overage_charges')");
    expect(n?.n).toBe(6);
    const [quota] = await q<{ n: number }>(k, 'select count(*)::int as n from T.daily_quota_usage');
    expect(quota?.n).toBe(3);
  });
});
