
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { TARGET } from './support/harness.js';
import { importHarness } from './support/import-cli.js';
import { type Source, SOURCE_URL } from './support/import-source.js';
import { createFoundationPostgres, type FoundationFixture, fillFoundation } from './support/import-source-foundation.js';

vi.setConfig({ testTimeout: 180_000 });

/** `tally import` of seed 003's design (docs/import.md, foundation) through the compiled CLI. */
describe(`tally import foundation (${TARGET})`, () => {
  const ih = importHarness('fd');
  const { run, q } = ih;
  let src: Source;
  let fixture: FoundationFixture;
  const newTarget = () => ih.newTarget();
  const importArgs = (...more: string[]) => ['import', '--from', SOURCE_URL, '--source-schema', src.schema, ...more];

  beforeAll(async () => {
    await ih.start();
    src = await createFoundationPostgres();
    fixture = await fillFoundation(src, 18);
  }, 300_000);
  afterAll(async () => {
    await src?.drop();
    await ih.stop();
  });

  it('detects the shape, opens an empty account per user, joins subscriptions to plans by slug, carries usage counters, applies each anomaly rule, and a second run imports nothing', async () => {
    const t = newTarget();
    const res = await run(t, ...importArgs('--json'));
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
    expect((await run(t, 'reconcile')).code).toBe(0);

    const again = await run(t, ...importArgs('--json'));
    expect(again.code, again.err.slice(-3000)).toBe(0);
    const second = JSON.parse(again.out) as ImportReport;
    expect(second.tables.map((x) => x.imported)).toEqual([0, 0, 0]);
    const [n] = await q<{ subs: number; counters: number }>(t, 'select (select count(*)::int from T.subscriptions) as subs, (select count(*)::int from T.usage_counters) as counters');
    expect(n).toEqual({ subs: fixture.subscriptions, counters: fixture.counters });
  });

  it('--strict refuses a source with anomalies and imports nothing; --dry-run reports and keeps nothing', async () => {
    const t = newTarget();
    const strict = await run(t, ...importArgs('--schema', 'foundation', '--strict', '--json'));
    expect(strict.code).toBe(1);
    const report = JSON.parse(strict.out) as ImportReport;
    expect(report.status).toBe('refused');
    expect(report.error).toMatch(/--strict: the source has 5 anomalies; nothing was imported/);
    const dry = await run(t, ...importArgs('--dry-run', '--json'));
    expect(dry.code, dry.err.slice(-3000)).toBe(0);
    expect((JSON.parse(dry.out) as ImportReport).tables.find((x) => x.table === 'subscriptions')?.imported).toBe(fixture.subscriptions);
    expect(await q(t, 'select id from T.users')).toEqual([]);
    expect(await q(t, 'select id from T.subscriptions')).toEqual([]);
    expect(await q(t, 'select id from T.plans')).toEqual([]);
    expect(await q(t, 'select user_id from T.usage_counters')).toEqual([]);
    expect(await q(t, 'select status, dry_run from T.import_runs order by started_at')).toEqual([{ status: 'refused', dry_run: false }, { status: 'completed', dry_run: true }]);
  });
});
