import { spawn } from 'node:child_process';
import { readFileSync, } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Database } from '../src/db/database.js';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { TARGET } from './support/harness.js';
import { type ImportTarget, importHarness } from './support/import-cli.js';
import { createSource, fillVideoCredits, type Source, SOURCE_URL, type VideoCreditsFixture } from './support/import-source.js';

vi.setConfig({ testTimeout: 180_000 });

/**
 * `tally import` of seed 001's design (docs/import.md), through the real compiled CLI: the source is
 * a PostgreSQL schema built from the seed's SQL and filled with generated rows and every anomaly; the
 * target is this project's database (PGlite or PostgreSQL), one fresh Tally schema per scenario.
 */
describe(`tally import video-credits (${TARGET})`, () => {
  const ih = importHarness('vc');
  const { run } = ih;
  let src: Source;
  let fixture: VideoCreditsFixture;
  const newTarget = () => ih.newTarget();
  const importArgs = (...more: string[]) => ['import', '--from', SOURCE_URL, '--source-schema', src.schema, ...more];
  /** Reads the target between commands (PGlite's directory has one opener at a time). */
  const inTarget = async <T>(t: ImportTarget, fn: (db: Database, q: <R>(text: string) => Promise<R[]>) => Promise<T>): Promise<T> =>
    fn(await ih.db(t), (text) => ih.q(t, text));
  const balancesIn = (t: ImportTarget) =>
    inTarget(t, async (_db, q) => new Map((await q<{ user_id: string; balance: number }>('select user_id, balance from T.credit_accounts')).map((r) => [r.user_id, Number(r.balance)])));

  beforeAll(async () => {
    await ih.start();
    src = await createSource('video-credits');
    fixture = await fillVideoCredits(src, 40);
  }, 300_000);
  afterAll(async () => {
    await src?.drop();
    await ih.stop();
  });

  it('detects the shape, opens every account at its source balance to the credit, keeps the history, applies each anomaly rule, and a second run imports nothing', async () => {
    const t = newTarget();
    const reportFile = join(t.dataDir, 'report.json');
    const res = await run(t, ...importArgs('--report', reportFile));
    expect(res.code, res.err + res.out).toBe(0);
    expect(res.out).toMatch(/detected video-credits from tables users, credit_transactions, video_jobs/);
    expect(res.out).toMatch(/match to the credit/);
    const report = JSON.parse(readFileSync(reportFile, 'utf8')) as ImportReport;
    expect(report.status).toBe('completed');
    expect(report.credits).toMatchObject({ source_total: fixture.total, tally_total: fixture.total, source_accounts: fixture.balances.size, tally_accounts: fixture.balances.size, match: true, mismatches: [] });
    expect(report.anomalies.by_kind).toEqual({ balance_mismatch: 1, negative_balance: 1, duplicate_payment: 1, orphan: 3, over_cap: 1 });
    const table = (name: string) => report.tables.find((x) => x.table === name);
    expect(table('users')).toMatchObject({ read: fixture.balances.size, imported: fixture.balances.size, skipped: 0 });
    expect(table('credit_transactions')).toMatchObject({ imported: fixture.transactions, skipped: 1, skipped_by_reason: { orphan: 1 } });
    expect(table('video_jobs')).toMatchObject({ imported: fixture.jobs, skipped_by_reason: { orphan: 1 } });
    expect(table('payments')).toMatchObject({ imported: fixture.payments - 1, skipped_by_reason: { orphan: 1, duplicate: 1 } });

    // Every account, exactly; no sign-up bonus anywhere; the negative one is debt.
    const balances = await balancesIn(t);
    expect(balances).toEqual(fixture.balances);
    await inTarget(t, async (_db, q) => {
      expect(await q(`select 1 from T.credit_grants where source = 'signup_bonus'`)).toEqual([]);
      const [debt] = await q<{ remaining: number }>(`select remaining from T.credit_grants where source = 'debt'`);
      expect(Number(debt?.remaining)).toBe(-15);
      // One opening entry per non-zero account, the only entry each has.
      const [entries] = await q<{ n: number; accounts: number }>('select count(*)::int as n, count(distinct account_id)::int as accounts from T.credit_ledger');
      const nonZero = [...fixture.balances.values()].filter((b) => b !== 0).length;
      expect(entries).toEqual({ n: nonZero, accounts: nonZero });
      // History: kept, linked to the opening entry of its account (none for the zero balance), never in balances.
      const [h] = await q<{ n: number; linked: number; wrong: number }>(`select count(*)::int as n, count(opening_entry_id)::int as linked,
        count(*) filter (where l.id is not null and l.account_id <> h.account_id)::int as wrong
        from T.imported_credit_history h left join T.credit_ledger l on l.id = h.opening_entry_id`);
      expect(h).toEqual({ n: fixture.transactions, linked: fixture.transactions - 2, wrong: 0 });
      const jobs = await q<{ cost: number; hold_id: string | null }>('select cost, hold_id from T.jobs');
      expect(jobs.length).toBe(fixture.jobs);
      expect(jobs.every((j) => Number(j.cost) === 0 && j.hold_id === null)).toBe(true);
    });
    const rec = await run(t, 'reconcile');
    expect(rec.code, rec.out + rec.err).toBe(0);

    // A second run reads everything and imports nothing twice.
    const again = await run(t, ...importArgs('--json'));
    expect(again.code, again.err).toBe(0);
    const second = JSON.parse(again.out) as ImportReport;
    expect(second.tables.map((x) => x.imported)).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(second.tables.find((x) => x.table === 'users')?.skipped_by_reason).toEqual({ already_imported: fixture.balances.size });
    expect(second.credits.match).toBe(true);
    expect(await balancesIn(t)).toEqual(fixture.balances);
    await inTarget(t, async (_db, q) => {
      const [n] = await q<{ n: number }>('select count(*)::int as n from T.imported_credit_history');
      expect(n?.n).toBe(fixture.transactions);
    });
  });

  it('--strict refuses a source with anomalies and imports nothing; --dry-run reports and keeps nothing', async () => {
    const t = newTarget();
    const strict = await run(t, ...importArgs('--strict', '--json'));
    expect(strict.code).toBe(1);
    const report = JSON.parse(strict.out) as ImportReport;
    expect(report.status).toBe('refused');
    expect(report.error).toMatch(/--strict: the source has 6 anomalies; nothing was imported/);
    const dry = await run(t, ...importArgs('--dry-run', '--json'));
    expect(dry.code, dry.err).toBe(0);
    const dr = JSON.parse(dry.out) as ImportReport;
    expect(dr.credits).toMatchObject({ tally_total: fixture.total, match: true });
    await inTarget(t, async (_db, q) => {
      expect(await q('select id from T.users')).toEqual([]);
      expect(await q('select id from T.credit_ledger')).toEqual([]);
      expect(await q('select source_id from T.import_map')).toEqual([]);
      const runs = await q<{ status: string; dry_run: boolean }>('select status, dry_run from T.import_runs order by started_at');
      expect(runs).toEqual([{ status: 'refused', dry_run: false }, { status: 'completed', dry_run: true }]);
    });
  });

  it('killed with SIGKILL while the history is written (two batches at once on PostgreSQL), --resume keeps every transaction exactly once', async () => {
    const t = newTarget();
    expect((await run(t, 'migrate')).code).toBe(0);
    // --batch-size 1: history batches of 10 rows, so the kill lands between many of them.
    const child = spawn(process.execPath, [...ih.cli, ...importArgs('--batch-size', '1')], { env: ih.env(t), cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (/import credit_transactions \[/.test(err)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`the import ended before it could be killed: ${err}`)));
    });
    await new Promise((r) => child.once('close', r));
    const kept = await inTarget(t, async (_db, q) => (await q<{ n: number }>('select count(*)::int as n from T.imported_credit_history'))[0]?.n ?? 0);
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(fixture.transactions);

    const resumed = await run(t, ...importArgs('--resume', '--json'));
    expect(resumed.code, resumed.err).toBe(0);
    const report = JSON.parse(resumed.out) as ImportReport;
    // The cursor never passed a batch that was not in: the resumed counts are the whole import's.
    expect(report.tables.find((x) => x.table === 'credit_transactions')).toMatchObject({ read: fixture.transactions + 1, imported: fixture.transactions, skipped: 1 });
    await inTarget(t, async (_db, q) => {
      const [h] = await q<{ n: number; distinct: number }>('select count(*)::int as n, count(distinct source_id)::int as distinct from T.imported_credit_history');
      expect(h).toEqual({ n: fixture.transactions, distinct: fixture.transactions });
    });
    expect(report.credits).toMatchObject({ tally_total: fixture.total, match: true });
    expect((await run(t, 'reconcile')).code).toBe(0);
  });

  it('killed with SIGKILL mid-import, --resume completes it exactly: every account once, reconcile clean', async () => {
    const t = newTarget();
    // Migrate first, so the import is killed while importing rather than while migrating.
    expect((await run(t, 'migrate')).code).toBe(0);
    const child = spawn(process.execPath, [...ih.cli, ...importArgs('--batch-size', '2')], { env: ih.env(t), cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        // The first progress line is drawn after the first batch committed: the import is under way.
        if (/import users \[/.test(err)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`the import ended before it could be killed: ${err}`)));
    });
    await new Promise((r) => child.once('close', r));
    const partial = await balancesIn(t);
    expect(partial.size).toBeGreaterThan(0);
    expect(partial.size).toBeLessThan(fixture.balances.size);

    const resumed = await run(t, ...importArgs('--resume', '--json'));
    expect(resumed.code, resumed.err).toBe(0);
    const report = JSON.parse(resumed.out) as ImportReport;
    expect(report.resumed).toBe(true);
    expect(report.tables.find((x) => x.table === 'users')).toMatchObject({ read: fixture.balances.size, imported: fixture.balances.size });
    expect(report.credits).toMatchObject({ tally_total: fixture.total, match: true });
    expect(await balancesIn(t)).toEqual(fixture.balances);
    await inTarget(t, async (_db, q) => {
      const [h] = await q<{ n: number }>('select count(*)::int as n from T.imported_credit_history');
      expect(h?.n).toBe(fixture.transactions);
    });
    expect((await run(t, 'reconcile')).code).toBe(0);
  });
});
