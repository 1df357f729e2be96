import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { TARGET } from './support/harness.js';
import { type ImportTarget, importHarness } from './support/import-cli.js';
import { type Source, SOURCE_URL } from './support/import-source.js';
import { type AppBuilderFixture, createAppBuilderPostgres, createAppBuilderSqlite, fillAppBuilder, postgresInsert } from './support/import-source-app-builder.js';

vi.setConfig({ testTimeout: 180_000 });

type Target = ImportTarget;

/**
 * `tally import` of seed 000's design (docs/import.md, app-builder) through the compiled CLI, from
 * both of its sources: the SQLite `cc.db` and the Supabase (PostgreSQL) schema, each built from the
 * seed's SQL and filled with the same generated rows and anomalies. The target is this project's
 * database (PGlite or PostgreSQL), a fresh Tally schema per scenario.
 */
describe(`tally import app-builder (${TARGET})`, () => {
  const ih = importHarness('ab');
  const { run, q, tmp } = ih;
  const newTarget = () => ih.newTarget();
  let pgSource: Source;
  let pgFixture: AppBuilderFixture;
  let sqliteFile: string;
  let sqliteFixture: AppBuilderFixture;
  const balancesIn = async (t: Target) => new Map((await q<{ user_id: string; balance: number }>(t, 'select user_id, balance from T.credit_accounts')).map((r) => [r.user_id, Number(r.balance)]));

  beforeAll(async () => {
    await ih.start();
    pgSource = await createAppBuilderPostgres();
    // The fixture writes orphans on purpose: the seed's foreign keys would refuse them.
    await pgSource.query('set session_replication_role = replica');
    pgFixture = await fillAppBuilder(postgresInsert(pgSource), 24);
    sqliteFile = join(tmp, 'cc.db');
    const lite = await createAppBuilderSqlite(sqliteFile);
    sqliteFixture = await fillAppBuilder(lite.insert, 24);
    lite.close();
  }, 300_000);
  afterAll(async () => {
    await pgSource?.drop();
    await ih.stop();
  });

  const sources = () =>
    [
      { name: 'SQLite cc.db', args: () => ['--from', sqliteFile], fixture: () => sqliteFixture },
      { name: 'Supabase (PostgreSQL)', args: () => ['--from', SOURCE_URL, '--source-schema', pgSource.schema], fixture: () => pgFixture },
    ] as const;

  for (const source of sources()) {
    it(`from ${source.name}: detects the shape, opens every account at points + live buckets to the credit, keeps classes and expiries, maps billing, and a second run imports nothing`, async () => {
      const fixture = source.fixture();
      const t = newTarget();
      const res = await run(t, 'import', ...source.args(), '--json');
      expect(res.code, (res.err + res.out).slice(-3000)).toBe(0);
      const report = JSON.parse(res.out) as ImportReport;
      expect(report.detection).toMatch(/^detected app-builder from tables users, point_transactions, allowances, rollover_buckets, consumption_events/);
      expect(report.credits).toMatchObject({ source_total: fixture.total, tally_total: fixture.total, source_accounts: fixture.balances.size, tally_accounts: fixture.balances.size, match: true, mismatches: [] });
      expect(report.anomalies.by_kind).toEqual({ balance_mismatch: 1, negative_balance: 2, overused_allowance: 1, duplicate_guard: 1, orphan: 10, over_cap: 1, key_rotation: 2 });
      const table = (name: string) => report.tables.find((x) => x.table === name);
      expect(table('plans')).toMatchObject({ imported: 2, skipped: 0 });
      expect(table('users')).toMatchObject({ imported: fixture.balances.size, skipped: 0 });
      // negative-debt's allowance and bucket all went to pay its negative points: no grant of their own.
      expect(table('allowances')?.imported).toBe(fixture.liveAllowances - 1);
      expect(table('allowances')?.skipped_by_reason).toEqual({ orphan: 1, expired: fixture.expiredAllowances, empty: 1, paid_debt: 1 });
      expect(table('rollover_buckets')).toMatchObject({ imported: fixture.liveRollovers - 1, skipped_by_reason: { orphan: 2, expired: fixture.expiredRollovers, paid_debt: 1 } });
      expect(table('point_transactions')).toMatchObject({ imported: fixture.pointTransactions, skipped_by_reason: { orphan: 1 } });
      expect(table('consumption_events')).toMatchObject({ imported: fixture.consumptionEvents, skipped_by_reason: { orphan: 1 } });
      expect(table('user_subscriptions')).toMatchObject({ imported: fixture.subscriptions, skipped_by_reason: { orphan: 2 } });
      expect(table('budget_guards')).toMatchObject({ imported: fixture.guards, skipped_by_reason: { orphan: 1, duplicate: 1 } });
      expect(table('payments')).toMatchObject({ imported: fixture.payments, skipped_by_reason: { orphan: 1 } });
      expect(table('user_providers')).toMatchObject({ imported: fixture.identities, skipped_by_reason: { orphan: 1 } });
      // 000's token hash and source-key ciphertext are never written: the links arrive without tokens.
      const links = await q<{ provider_user_id: string; has_access_token: boolean; has_refresh_token: boolean; raw_profile: unknown; metadata: { tokens_not_imported?: string[] } }>(
        t,
        "select provider_user_id, has_access_token, has_refresh_token, raw_profile, metadata from T.user_identities where metadata->>'imported_from' = 'app-builder' order by provider_user_id",
      );
      expect(links.map((l) => [l.provider_user_id, l.has_access_token, l.has_refresh_token, l.metadata.tokens_not_imported ?? []])).toEqual([
        ['g-whale', false, false, ['access_token']],
        ['gh-whale-2', false, false, ['access_token', 'refresh_token']],
        ['gh-zero-2', false, false, []],
      ]);
      expect(links[2]?.raw_profile).toEqual({ login: 'zero' });
      expect(JSON.stringify(await q(t, 'select * from T.user_identities'))).not.toMatch(/abc123|def456|source-key-ciphertext/);

      // Every account exactly; the one left negative is debt; no sign-up bonus.
      expect(await balancesIn(t)).toEqual(fixture.balances);
      expect(await q(t, `select 1 from T.credit_grants where source = 'signup_bonus'`)).toEqual([]);
      const [debt] = await q<{ remaining: number }>(t, `select remaining from T.credit_grants where source = 'debt'`);
      expect(Number(debt?.remaining)).toBe(-5);
      // One opening entry per non-zero account; each bucket a grant with its class and expiry.
      const nonZero = [...fixture.balances.values()].filter((b) => b !== 0).length;
      const [entries] = await q<{ n: number; accounts: number }>(t, 'select count(*)::int as n, count(distinct account_id)::int as accounts from T.credit_ledger');
      expect(entries).toEqual({ n: nonZero, accounts: nonZero });
      const grants = await q<{ class: string; amount: number; expires_at: Date | null }>(t, `select class, amount, expires_at from T.credit_grants where account_id = 'acc_u_${fixture.sample.id}' order by class, amount`);
      const iso = (d: Date | null) => (d === null ? null : new Date(d).toISOString());
      // Times travel with millisecond precision (SQLite keeps what SQLAlchemy wrote; PostgreSQL microseconds).
      expect(grants.map((g) => ({ class: g.class, amount: Number(g.amount), expires_at: iso(g.expires_at) }))).toEqual(
        [...fixture.sample.grants].sort((a, b) => (a.class === b.class ? a.amount - b.amount : a.class < b.class ? -1 : 1)),
      );
      const [paid] = await q<{ amount: number; class: string }>(t, `select amount, class from T.credit_grants where account_id = 'acc_u_negative-paid'`);
      expect({ amount: Number(paid?.amount), class: paid?.class }).toEqual({ amount: 40, class: 'BC' });
      // Billing: plans with their monthly allowances, subscriptions, guards in exact units.
      expect(await q(t, `select slug, price_monthly::int as price, pool_mode from T.plans order by slug`)).toEqual([
        { slug: 'pro', price: 1999, pool_mode: 'hybrid' },
        { slug: 'team-plan', price: 9900, pool_mode: 'shared_pool' },
      ]);
      expect(await q(t, `select plan_id, class, amount::int as amount from T.plan_allowances order by plan_id, class`)).toEqual([
        { plan_id: 'plan-pro', class: 'BC', amount: 100 },
        { plan_id: 'plan-pro', class: 'RC', amount: 40 },
        { plan_id: 'plan-team', class: 'BC', amount: 500 },
      ]);
      const [subs] = await q<{ n: number; canceled: number; due: number }>(t, `select count(*)::int as n, count(*) filter (where status = 'canceled' and ended_at is not null)::int as canceled,
        count(*) filter (where cycles_due_at = current_period_end)::int as due from T.subscriptions`);
      expect(subs).toEqual({ n: fixture.subscriptions, canceled: fixture.canceledSubscriptions, due: fixture.subscriptions - fixture.canceledSubscriptions });
      const [guard] = await q<{ monthly_cap: number; current_window_spend: string }>(t, `select monthly_cap::int as monthly_cap, current_window_spend::text as current_window_spend from T.budget_guards where user_id = 'user-0000'`);
      expect(guard).toEqual({ monthly_cap: 2550, current_window_spend: '325000000' }); // 3.25 usd = 325 cents, in micro minor units
      // Payments kept exactly, buying nothing again: their points are inside the opening balance.
      const [pay] = await q<{ n: number; cents: number; credits: number; lower: number }>(t, `select count(*)::int as n, sum(amount)::int as cents, sum(credits)::int as credits, count(*) filter (where currency = 'usd')::int as lower from T.payments`);
      expect(pay).toEqual({ n: fixture.payments, cents: fixture.paidCents, credits: 0, lower: fixture.payments });
      const [h] = await q<{ n: number; usage: number }>(t, `select count(*)::int as n, count(*) filter (where type like 'consumption:%' and amount < 0)::int as usage from T.imported_credit_history`);
      expect(h).toEqual({ n: fixture.pointTransactions + fixture.consumptionEvents, usage: fixture.consumptionEvents });
      expect((await run(t, 'reconcile')).code).toBe(0);

      const again = await run(t, 'import', ...source.args(), '--json');
      expect(again.code, again.err.slice(-3000)).toBe(0);
      const second = JSON.parse(again.out) as ImportReport;
      expect(second.tables.map((x) => x.imported)).toEqual(second.tables.map(() => 0));
      expect(second.credits.match).toBe(true);
      expect(await balancesIn(t)).toEqual(fixture.balances);
      const [n] = await q<{ n: number }>(t, 'select count(*)::int as n from T.imported_credit_history');
      expect(n?.n).toBe(fixture.pointTransactions + fixture.consumptionEvents);
    });
  }

  it('--strict refuses a source with anomalies and imports nothing; --dry-run reports and keeps nothing (SQLite and PostgreSQL)', async () => {
    for (const source of sources()) {
      const t = newTarget();
      const strict = await run(t, 'import', ...source.args(), '--schema', 'app-builder', '--strict', '--json');
      expect(strict.code).toBe(1);
      const report = JSON.parse(strict.out) as ImportReport;
      expect(report.status).toBe('refused');
      expect(report.error).toMatch(/--strict: the source has 17 anomalies; nothing was imported/);
      const dry = await run(t, 'import', ...source.args(), '--dry-run', '--json');
      expect(dry.code, dry.err.slice(-3000)).toBe(0);
      expect((JSON.parse(dry.out) as ImportReport).credits).toMatchObject({ tally_total: source.fixture().total, match: true });
      expect(await q(t, 'select id from T.users')).toEqual([]);
      expect(await q(t, 'select id from T.credit_ledger')).toEqual([]);
      expect(await q(t, 'select id from T.plans')).toEqual([]);
      expect(await q(t, 'select source_id from T.import_map')).toEqual([]);
      expect(await q(t, 'select status, dry_run from T.import_runs order by started_at')).toEqual([{ status: 'refused', dry_run: false }, { status: 'completed', dry_run: true }]);
    }
  });

  it('from SQLite, killed with SIGKILL mid-import, --resume completes it exactly: every account once, buckets once, reconcile clean', async () => {
    const t = newTarget();
    expect((await run(t, 'migrate')).code).toBe(0);
    const child = spawn(process.execPath, [...ih.cli, 'import', '--from', sqliteFile, '--batch-size', '2'], { env: ih.env(t), cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        // A table's first line is drawn after its first batch committed: users are under way.
        if (/import users \[/.test(err)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`the import ended before it could be killed: ${err.slice(-2000)}`)));
    });
    await new Promise((r) => child.once('close', r));
    const partial = await balancesIn(t);
    expect(partial.size).toBeGreaterThan(0);
    expect(partial.size).toBeLessThan(sqliteFixture.balances.size);

    const resumed = await run(t, 'import', '--from', sqliteFile, '--resume', '--json');
    expect(resumed.code, resumed.err.slice(-3000)).toBe(0);
    const report = JSON.parse(resumed.out) as ImportReport;
    expect(report.resumed).toBe(true);
    expect(report.tables.find((x) => x.table === 'users')).toMatchObject({ read: sqliteFixture.balances.size, imported: sqliteFixture.balances.size });
    expect(report.credits).toMatchObject({ tally_total: sqliteFixture.total, match: true });
    expect(await balancesIn(t)).toEqual(sqliteFixture.balances);
    const [g] = await q<{ n: number; distinct_sources: number }>(t, `select count(*)::int as n, count(distinct metadata->>'source_id')::int as distinct_sources from T.credit_grants where metadata->>'source_table' in ('allowances', 'rollover_buckets')`);
    expect(g).toEqual({ n: sqliteFixture.liveAllowances - 1 + sqliteFixture.liveRollovers - 1, distinct_sources: sqliteFixture.liveAllowances - 1 + sqliteFixture.liveRollovers - 1 });
    const [h] = await q<{ n: number }>(t, 'select count(*)::int as n from T.imported_credit_history');
    expect(h?.n).toBe(sqliteFixture.pointTransactions + sqliteFixture.consumptionEvents);
    expect((await run(t, 'reconcile')).code).toBe(0);
  });
});
