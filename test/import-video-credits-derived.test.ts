import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { TARGET } from './support/harness.js';
import { type ImportTarget, importHarness } from './support/import-cli.js';
import { createSource, fillVideoCredits, type Source, SOURCE_URL } from './support/import-source.js';
import { fillVideoCreditsDerived, type VideoCreditsDerivedFixture } from './support/import-source-video-credits.js';

vi.setConfig({ testTimeout: 180_000 });

/**
 * `tally import` of seed 001's subscriptions, API keys and daily statistics (docs/import.md,
 * video-credits), through the compiled CLI: subscriptions under plans of the same slug (made
 * inactive at price 0 when the deployment has none), keys kept by their SHA-256 hash (never wider),
 * statistics as daily usage counters; each anomaly rule, --strict, --dry-run, a second run, a kill
 * mid-import then --resume, and a source without the two optional tables.
 */
describe(`tally import video-credits: subscriptions, keys, usage stats (${TARGET})`, () => {
  const ih = importHarness('vcd');
  const { run, q } = ih;
  let src: Source;
  let f: VideoCreditsDerivedFixture;
  const importArgs = (...more: string[]) => ['import', '--from', SOURCE_URL, '--source-schema', src.schema, ...more];
  const table = (report: ImportReport, name: string) => report.tables.find((x) => x.table === name);

  beforeAll(async () => {
    await ih.start();
    src = await createSource('video-credits');
    f = await fillVideoCreditsDerived(src);
  }, 300_000);
  afterAll(async () => {
    await src?.drop();
    await ih.stop();
  });

  /** What every complete import of the fixture leaves in Tally (checked after a plain run and after a resumed one). */
  const expectImported = async (t: ImportTarget) => {
    const subs = await q<{ user_id: string; status: string; is_primary: boolean; slug: string; plan_active: boolean; price: number; provider: string | null; pid: string | null; due_future: boolean; ended: boolean; in_period: boolean }>(
      t,
      `select s.user_id, s.status, s.is_primary, p.slug, p.is_active as plan_active, p.price_monthly as price, s.provider, s.provider_subscription_id as pid,
        s.cycles_due_at > now() as due_future, s.ended_at is not null as ended, now() >= s.current_period_start and now() < s.current_period_end as in_period
       from T.subscriptions s join T.plans p on p.id = s.plan_id order by s.provider_subscription_id nulls last, s.user_id`,
    );
    expect(subs).toHaveLength(6);
    // Plans the deployment did not have: made for the import, inactive, price 0 (never invented).
    expect(subs.every((s) => !s.plan_active && Number(s.price) === 0)).toBe(true);
    const [u0, u1, u2] = f.users as [string, string, string];
    expect(subs.find((s) => s.pid === 'sub_1')).toMatchObject({ user_id: u0, status: 'active', is_primary: true, slug: 'pro', provider: 'creem', due_future: true, ended: false, in_period: true });
    expect(subs.find((s) => s.pid === 'sub_2')).toMatchObject({ user_id: u1, status: 'canceled', ended: true });
    // Two live for one user: the newer is the primary, the older secondary.
    expect(subs.find((s) => s.pid === 'sub_4')).toMatchObject({ user_id: u2, slug: 'creator', is_primary: true });
    expect(subs.find((s) => s.pid === 'sub_3')).toMatchObject({ user_id: u2, slug: 'basic', is_primary: false });
    // One Creem id on two rows: the lower source id keeps it, the other arrives without a link.
    expect(subs.filter((s) => s.pid === 'sub_dup')).toHaveLength(1);
    expect(subs.filter((s) => s.pid === null)).toHaveLength(1);

    const keys = await q<{ key_hash: string; scopes: string[]; revoked: boolean; prefix: string; user_id: string }>(t, 'select key_hash, scopes, revoked_at is not null as revoked, prefix, user_id from T.api_keys order by key_hash');
    expect(keys.map((k) => k.key_hash).sort()).toEqual([...f.keptHashes, f.revokedHash].sort());
    expect(keys.every((k) => k.scopes.length === 1 && k.scopes[0] === '*')).toBe(true);
    expect(keys.filter((k) => k.revoked).map((k) => k.key_hash)).toEqual([f.revokedHash]);
    expect(keys.find((k) => k.key_hash === f.keptHashes[0])).toMatchObject({ prefix: 'tly_ab', user_id: u0 });

    const counters = await q<{ user_id: string; metric: string; day: string; quantity: string; credits: number; overage: number; events: number }>(
      t,
      `select user_id, metric, to_char(window_start at time zone 'UTC', 'YYYY-MM-DD') as day, quantity::text as quantity, credits, overage, events from T.usage_counters
        where "window" = 'day' and window_end = window_start + interval '1 day' order by user_id, metric, window_start`,
    );
    expect(counters.map((c) => ({ user: c.user_id, metric: c.metric, day: c.day, quantity: Number(c.quantity) })).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))).toEqual(
      [...f.counters].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    );
    // Counts only: nothing charged or attributed.
    expect(counters.every((c) => Number(c.credits) === 0 && Number(c.overage) === 0 && Number(c.events) === 0)).toBe(true);
  };

  it('maps subscriptions, keys and statistics, applies each anomaly rule, none of them is listed not_imported, and a second run imports nothing', async () => {
    const t = ih.newTarget();
    const res = await run(t, ...importArgs('--json'));
    expect(res.code, (res.err + res.out).slice(-3000)).toBe(0);
    const report = JSON.parse(res.out) as ImportReport;
    expect(report.not_imported.map((n) => n.table).join(' ')).not.toMatch(/user_subscriptions|api_keys|usage_stats/);
    expect(report.credits.match).toBe(true);
    expect(report.reconcile.ok).toBe(true);
    // fillVideoCredits' own six, plus: an orphan in each table, two live subscriptions, a shared Creem id, a bcrypt key; unknown plan name and negative count while writing.
    expect(report.anomalies.by_kind).toEqual({ balance_mismatch: 1, negative_balance: 1, duplicate_payment: 1, orphan: 6, over_cap: 1, duplicate_subscription: 1, duplicate_provider_id: 1, key_rotation: 1, unknown_value: 2 });
    expect(table(report, 'user_subscriptions')).toMatchObject({ read: 8, imported: 6, skipped_by_reason: { orphan: 1, unknown_value: 1 } });
    expect(table(report, 'api_keys')).toMatchObject({ read: 5, imported: 3, skipped_by_reason: { orphan: 1, rotation: 1 } });
    expect(table(report, 'usage_stats')).toMatchObject({ read: 5, imported: f.stats, skipped_by_reason: { orphan: 1, unknown_value: 1 } });
    await expectImported(t);

    const again = await run(t, ...importArgs('--json'));
    expect(again.code, again.err).toBe(0);
    const second = JSON.parse(again.out) as ImportReport;
    expect(second.tables.reduce((a, x) => a + x.imported, 0)).toBe(0);
    expect(table(second, 'user_subscriptions')?.skipped_by_reason).toMatchObject({ already_imported: 6 });
    await expectImported(t);
    expect((await run(t, 'reconcile')).code).toBe(0);
  });

  it('--strict refuses (nothing written); --dry-run reports the same and keeps nothing', async () => {
    const t = ih.newTarget();
    const strict = await run(t, ...importArgs('--strict', '--json'));
    expect(strict.code).toBe(1);
    const refused = JSON.parse(strict.out) as ImportReport;
    expect(refused.status).toBe('refused');
    expect(refused.anomalies.by_kind).toMatchObject({ duplicate_subscription: 1, duplicate_provider_id: 1, key_rotation: 1 });
    const dry = await run(t, ...importArgs('--dry-run', '--json'));
    expect(dry.code, dry.err).toBe(0);
    const report = JSON.parse(dry.out) as ImportReport;
    expect(table(report, 'user_subscriptions')?.imported).toBe(6);
    for (const name of ['subscriptions', 'api_keys', 'usage_counters', 'plans', 'users']) {
      expect(await q(t, `select 1 from T.${name}`), name).toEqual([]);
    }
  });

  it('killed with SIGKILL in the subscriptions, --resume completes every table exactly once', async () => {
    const t = ih.newTarget();
    expect((await run(t, 'migrate')).code).toBe(0);
    const child = spawn(process.execPath, [...ih.cli, ...importArgs('--batch-size', '1')], { env: ih.env(t), cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (/import user_subscriptions \[/.test(err)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`the import ended before it could be killed: ${err}`)));
    });
    await new Promise((r) => child.once('close', r));
    const [partial] = await q<{ n: number }>(t, 'select count(*)::int as n from T.subscriptions');
    expect(partial?.n).toBeLessThan(6);
    const resumed = await run(t, ...importArgs('--resume', '--json'));
    expect(resumed.code, resumed.err).toBe(0);
    const report = JSON.parse(resumed.out) as ImportReport;
    expect(table(report, 'user_subscriptions')).toMatchObject({ read: 8, imported: 6 });
    expect(table(report, 'usage_stats')).toMatchObject({ imported: f.stats });
    await expectImported(t);
  });

  it('a 001 source without its optional api_keys and usage_stats imports the rest', async () => {
    const bare = await createSource('video-credits', (sql) => sql.replace(/create table api_keys[\s\S]*$/, ''));
    try {
      await fillVideoCredits(bare, 3);
      const t = ih.newTarget();
      const res = await run(t, 'import', '--from', SOURCE_URL, '--source-schema', bare.schema, '--json');
      expect(res.code, res.err).toBe(0);
      const report = JSON.parse(res.out) as ImportReport;
      expect(report.tables.map((x) => x.table)).toEqual(['users', 'credit_transactions', 'video_jobs', 'payments', 'user_subscriptions']);
      expect(report.credits.match).toBe(true);
    } finally {
      await bare.drop();
    }
  });
});
