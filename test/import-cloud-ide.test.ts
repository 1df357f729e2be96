import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { SecretBox } from '../src/lib/secret-box.js';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { TARGET } from './support/harness.js';
import { importHarness } from './support/import-cli.js';
import { type Source, SOURCE_URL } from './support/import-source.js';
import { type CloudIdeFixture, createCloudIdePostgres, fillCloudIde } from './support/import-source-cloud-ide.js';

vi.setConfig({ testTimeout: 180_000 });

/** `tally import` of seed 002's design (docs/import.md, cloud-ide) through the compiled CLI. */
describe(`tally import cloud-ide (${TARGET})`, () => {
  const h = importHarness('ci');
  const { run, q } = h;
  let src: Source;
  let fixture: CloudIdeFixture;
  const importArgs = (...more: string[]) => ['import', '--from', SOURCE_URL, '--source-schema', src.schema, ...more];

  beforeAll(async () => {
    await h.start();
    src = await createCloudIdePostgres();
    fixture = await fillCloudIde(src, 12);
  }, 300_000);
  afterAll(async () => {
    await src?.drop();
    await h.stop();
  });

  it('detects the shape among 30 tables, moves accounts, money, projects and the IDE tables, applies each anomaly rule, and a second run imports nothing', async () => {
    const t = h.newTarget();
    const res = await run(t, ...importArgs('--json'));
    expect(res.code, (res.err + res.out).slice(-3000)).toBe(0);
    const report = JSON.parse(res.out) as ImportReport;
    expect(report.detection).toMatch(/^detected cloud-ide from tables .* \(30 of the 30 tables of seed 002's design present\)$/);
    expect(report.credits).toMatchObject({ source_total: 0, tally_total: 0, source_accounts: fixture.users, tally_accounts: fixture.users, match: true });
    expect(report.anomalies.by_kind).toEqual({ orphan: 16, second_owner: 1, duplicate_subscription: 1, unknown_value: 2, duplicate_deployment: 1 });
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
    await expectIde(t, report);
    expect((await run(t, 'reconcile')).code).toBe(0);

    const again = await run(t, ...importArgs('--json'));
    expect(again.code, again.err.slice(-3000)).toBe(0);
    const secondRun = JSON.parse(again.out) as ImportReport;
    expect(secondRun.tables.map((x) => x.imported)).toEqual(secondRun.tables.map(() => 0));
    const [n] = await q<{ subs: number; members: number }>(t, 'select (select count(*)::int from T.subscriptions) as subs, (select count(*)::int from T.workspace_members) as members');
    expect(n).toEqual({ subs: fixture.subscriptions, members: fixture.members });
    const [ide] = await q<{ projects: number; runs: number; deployments: number; identities: number }>(
      t,
      'select (select count(*)::int from T.projects) as projects, (select count(*)::int from T.code_executions) as runs, (select count(*)::int from T.deployments) as deployments, (select count(*)::int from T.user_identities) as identities',
    );
    const ran = Object.values(fixture.ide.executions).reduce((a, b) => a + b, 0);
    expect(ide).toEqual({ projects: fixture.ide.projects, runs: ran, deployments: 5, identities: fixture.ide.oauth });
  });

  /** The projects and IDE tables of one import (docs/import.md, cloud-ide: projects and IDE tables). */
  async function expectIde(t: ReturnType<typeof h.newTarget>, report: ImportReport): Promise<void> {
    const f = fixture.ide;
    const table = (name: string) => report.tables.find((x) => x.table === name);
    expect(table('projects')).toMatchObject({ imported: f.projects, skipped_by_reason: { orphan: 1, unknown_value: 1 } });
    expect(table('oauth_connections')).toMatchObject({ imported: f.oauth, skipped_by_reason: { orphan: 1 } });
    expect(table('files')).toMatchObject({ imported: f.files, skipped: 0 });
    expect(table('file_versions')).toMatchObject({ imported: f.files, skipped: 0 });
    expect(table('editor_sessions')).toMatchObject({ imported: f.editorSessions, skipped_by_reason: { orphan: 1 } });
    expect(table('terminal_sessions')).toMatchObject({ imported: f.terminalSessions, skipped: 0 });
    const ran = Object.values(f.executions).reduce((a, b) => a + b, 0);
    expect(table('code_executions')).toMatchObject({ imported: ran, skipped_by_reason: { orphan: 1, unknown_value: 1 } });
    expect(table('code_analyses')).toMatchObject({ imported: f.analyses, skipped_by_reason: { expired: 1 } });
    expect(table('git_repositories')).toMatchObject({ imported: f.repositories, skipped_by_reason: { orphan: 1 } });
    expect(table('deployments')).toMatchObject({ imported: 5, skipped_by_reason: { orphan: 1 } });
    expect(table('conversations')).toMatchObject({ imported: f.conversations, skipped_by_reason: { orphan: 1 } });
    expect(table('messages')).toMatchObject({ imported: f.messages, skipped_by_reason: { orphan: 1 } });
    const jobs = Object.values(f.aiJobs).reduce((a, b) => a + b, 0);
    expect(table('ai_jobs')).toMatchObject({ imported: jobs, skipped_by_reason: { orphan: 1 } });
    expect(table('background_jobs')).toMatchObject({ imported: Object.values(f.backgroundJobs).reduce((a, b) => a + b, 0), skipped: 0 });
    const byStatus = async (sqlText: string) => Object.fromEntries((await q<{ status: string; n: number }>(t, sqlText)).map((r) => [r.status, r.n]));
    expect(await byStatus('select status, count(*)::int as n from T.jobs where cost = 0 and hold_id is null group by status')).toEqual(f.aiJobs);
    expect(await byStatus('select status, count(*)::int as n from T.background_jobs group by status')).toEqual(f.backgroundJobs);
    const [msgs] = await q<{ n: number; authored: number; tokens: number }>(
      t,
      "select count(*)::int as n, count(m.user_id) filter (where m.role = 'user' and m.user_id = c.user_id and m.project_id = c.project_id)::int as authored, sum(m.token_count)::int as tokens from T.messages m join T.conversations c on c.id = m.conversation_id",
    );
    expect(msgs).toEqual({ n: f.messages, authored: f.messages / 2, tokens: 42 * f.conversations });
    for (const name of ['projects', 'files', 'editor_sessions', 'code_executions', 'deployments', 'oauth_connections', 'conversations', 'ai_jobs', 'background_jobs']) expect(report.not_imported.map((n) => n.table).join(', ')).not.toContain(name);
    expect(report.not_imported.map((n) => n.table).join(', ')).toContain('environment_variables');

    const projects = await q<{ workspace_id: string; slug: string; visibility: string }>(t, 'select workspace_id, slug, visibility from T.projects order by slug');
    expect(projects.map((p) => p.slug)).toEqual(Array.from({ length: f.projects }, (_, i) => `app-${i}`));
    expect(projects.every((p) => p.workspace_id !== null)).toBe(true);
    const runs = await q<{ status: string; n: number }>(t, 'select status, count(*)::int as n from T.code_executions group by status');
    expect(Object.fromEntries(runs.map((r) => [r.status, r.n]))).toEqual(f.executions);
    const [run0] = await q<{ status_detail: string; execution_time_ms: string; external_token: string }>(t, "select status_detail, execution_time_ms::text as execution_time_ms, external_token from T.code_executions where status_detail = 'Accepted'");
    expect(run0).toEqual({ status_detail: 'Accepted', execution_time_ms: '12.345', external_token: 'tok-0' });
    const deps = await q<{ status: string; n: number }>(t, 'select status, count(*)::int as n from T.deployments group by status');
    expect(Object.fromEntries(deps.map((d) => [d.status, d.n]))).toEqual(f.deployments);
    const [sessions] = await q<{ open: number; ended: number }>(
      t,
      "select (select count(*)::int from T.editor_sessions s join T.project_files f on f.id = s.active_file_id and f.project_id = s.project_id where s.status = 'open' and s.open_files->0->>'file_id' = f.id and f.path = 'src/index.ts' and f.current_version = 1) as open, (select count(*)::int from T.terminal_sessions where status = 'exited' and ended_at > started_at) as ended",
    );
    expect(sessions).toEqual({ open: f.editorSessions, ended: f.terminalSessions });
    const [repos] = await q<{ n: number; sealed: number }>(t, "select count(*)::int as n, count(credentials_enc)::int as sealed from T.git_repositories where sync_status = 'idle'");
    expect(repos).toEqual({ n: f.repositories, sealed: 0 });

    // OAuth tokens arrive sealed: never in plain text, in any column of any row, and they open with Tally's own key.
    const ids = await q<{ user_id: string; provider: string; access_token_enc: string | null; refresh_token_enc: string | null; scopes: string[] }>(
      t,
      'select user_id, provider, access_token_enc, refresh_token_enc, scopes from T.user_identities',
    );
    const { config } = loadConfig(h.env(t));
    const box = new SecretBox(config.encryptionKey, config.encryptionKeysOld ?? []);
    const opened = ids.flatMap((i) => [i.access_token_enc, i.refresh_token_enc].flatMap((enc) => (enc ? [box.open(enc, `${i.user_id}\n${i.provider}`)] : [])));
    expect(opened.sort()).toEqual([...f.tokens].sort());
    expect(ids.filter((i) => i.access_token_enc).length).toBe(f.oauth);
    expect(ids.filter((i) => i.refresh_token_enc).length).toBe(f.tokens.length - f.oauth);
    expect(ids[0]?.scopes).toEqual(['repo', 'read:user']);
    const dump = JSON.stringify(await q(t, 'select * from T.user_identities'));
    for (const token of f.tokens) expect(dump).not.toContain(token);
    expect(dump).not.toContain('plaintext');
  }

  it('--strict refuses a source with anomalies and imports nothing; --dry-run reports and keeps nothing', async () => {
    const t = h.newTarget();
    const strict = await run(t, ...importArgs('--schema', 'cloud-ide', '--strict', '--json'));
    expect(strict.code).toBe(1);
    const report = JSON.parse(strict.out) as ImportReport;
    expect(report.status).toBe('refused');
    expect(report.error).toMatch(/--strict: the source has 20 anomalies; nothing was imported/);
    const dry = await run(t, ...importArgs('--dry-run', '--json'));
    expect(dry.code, dry.err.slice(-3000)).toBe(0);
    expect((JSON.parse(dry.out) as ImportReport).tables.find((x) => x.table === 'subscriptions')?.imported).toBe(fixture.subscriptions);
    for (const table of ['users', 'workspaces', 'plans', 'subscriptions', 'invoices', 'imported_credit_history', 'projects', 'project_files', 'project_file_versions', 'user_identities', 'editor_sessions', 'code_executions', 'deployments']) expect(await q(t, `select id from T.${table}`)).toEqual([]);
    expect(await q(t, 'select status, dry_run from T.import_runs order by started_at')).toEqual([{ status: 'refused', dry_run: false }, { status: 'completed', dry_run: true }]);
  });
});
