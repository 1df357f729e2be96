import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SecretBox } from '../src/lib/secret-box.js';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { serviceTokenAad } from '../src/modules/secrets/secrets.js';
import { TARGET } from './support/harness.js';
import { type ImportTarget, importHarness } from './support/import-cli.js';
import { type Source, SOURCE_URL } from './support/import-source.js';
import { createAppBuilderPostgres, createAppBuilderSqlite, fillAppBuilder, fillAppBuilderWork, postgresInsert, WORK_TOKENS } from './support/import-source-app-builder.js';

vi.setConfig({ testTimeout: 180_000 });

/**
 * `tally import --owner` of seed 000 (docs/import.md, app-builder): the single-user app's ownerless
 * projects, AI work and plain-text service tokens, from both sources (cc.db and Supabase), through
 * the compiled CLI. One target per source carries every run of its scenario (the runs are the slow part).
 */
describe(`tally import app-builder --owner (${TARGET})`, () => {
  const ih = importHarness('abo');
  const { run, q, tmp } = ih;
  const key = randomBytes(32);
  const previousKey = process.env.TALLY_ENCRYPTION_KEY;
  let pgSource: Source;
  let sqliteFile: string;

  beforeAll(async () => {
    // A key the test holds, so it can open what the import sealed.
    process.env.TALLY_ENCRYPTION_KEY = key.toString('hex');
    await ih.start();
    pgSource = await createAppBuilderPostgres();
    await pgSource.query('set session_replication_role = replica');
    await fillAppBuilder(postgresInsert(pgSource), 6);
    await fillAppBuilderWork(postgresInsert(pgSource));
    sqliteFile = join(tmp, 'cc.db');
    const lite = await createAppBuilderSqlite(sqliteFile);
    await fillAppBuilder(lite.insert, 6);
    await fillAppBuilderWork(lite.insert);
    lite.close();
  }, 300_000);
  afterAll(async () => {
    if (previousKey === undefined) delete process.env.TALLY_ENCRYPTION_KEY;
    else process.env.TALLY_ENCRYPTION_KEY = previousKey;
    await pgSource?.drop();
    await ih.stop();
  });

  const importOk = async (t: ImportTarget, ...args: string[]): Promise<ImportReport> => {
    const res = await run(t, 'import', ...args, '--json');
    expect(res.code, (res.err + res.out).slice(-3000)).toBe(0);
    return JSON.parse(res.out) as ImportReport;
  };
  const table = (r: ImportReport, name: string) => r.tables.find((x) => x.table === name);
  const WORK_TABLES = ['service_tokens', 'projects', 'sessions', 'messages', 'tools_usage', 'user_requests', 'commits', 'env_vars', 'project_service_connections'];
  const mapped = async (t: ImportTarget, table: string, id: string) => (await q<{ target_id: string }>(t, `select target_id from T.import_map where source_table = '${table}' and source_id = '${id}'`))[0]?.target_id;

  /** Everything the fixture's ownerless rows must have become, owned by `owner`. */
  async function expectWork(t: ImportTarget, report: ImportReport, owner: string): Promise<void> {
    expect(report.not_imported.map((n) => n.table).join(' ')).not.toMatch(/service_tokens|projects/);
    expect(report.anomalies.by_kind).toMatchObject({ key_rotation: 3, orphan: 11, unknown_value: 2 });
    const counts = Object.fromEntries(WORK_TABLES.map((n) => [n, { imported: table(report, n)?.imported, skipped: table(report, n)?.skipped_by_reason }]));
    expect(counts).toEqual({
      service_tokens: { imported: 2, skipped: { unknown_value: 1 } },
      projects: { imported: 2, skipped: {} },
      sessions: { imported: 2, skipped: { orphan: 1 } },
      messages: { imported: 3, skipped: { unknown_value: 1 } },
      tools_usage: { imported: 1, skipped: {} },
      user_requests: { imported: 1, skipped: {} },
      commits: { imported: 1, skipped: {} },
      env_vars: { imported: 0, skipped: { rotation: 1 } },
      project_service_connections: { imported: 1, skipped: {} },
    });
    expect(await q(t, 'select id, user_id, created_by, name from T.projects order by id')).toEqual([
      { id: 'prj-a', user_id: owner, created_by: owner, name: 'Alpha' },
      { id: 'prj-b', user_id: owner, created_by: owner, name: 'Beta' },
    ]);
    // Tokens: the owner's, sealed as the secrets module seals them (bound to the row id), never in clear.
    const tokens = await q<{ id: string; user_id: string; provider: string; token_enc: string; key_id: string; token_hint: string }>(t, 'select id, user_id, provider, token_enc, key_id, token_hint from T.service_tokens order by provider');
    const box = new SecretBox(key);
    expect(tokens.map((k) => [k.user_id, k.provider, k.key_id, k.token_hint, box.open(k.token_enc, serviceTokenAad(k.id))])).toEqual([
      [owner, 'github', box.keyId, WORK_TOKENS[0]?.slice(-4), WORK_TOKENS[0]],
      [owner, 'vercel', box.keyId, WORK_TOKENS[1]?.slice(-4), WORK_TOKENS[1]],
    ]);
    expect(box.open(tokens[0]?.token_enc ?? '', serviceTokenAad('stk_other'))).toBeNull();
    // One opening of the target (PGlite allows one at a time): every table the import wrote to, as text.
    const stored = JSON.stringify(await q(t, ['service_tokens', 'import_map', 'import_runs', 'env_vars', 'projects', 'service_connections'].map((n) => `(select coalesce(json_agg(x), '[]')::text from T.${n} x)`).join(' || ').replace(/^/, 'select ').concat(' as all_rows')));
    for (const plain of [...WORK_TOKENS, 'bad-PLAINTEXT-token', '000-own-key-ciphertext']) expect(stored).not.toContain(plain);
    // AI work hangs off the owner's projects; session totals are Tally's own, counted as the rows arrived.
    const session = await mapped(t, 'sessions', 'ses-a1');
    expect(await q(t, `select project_id, external_session_id, status, total_messages, total_tools_used, total_tokens::int as total_tokens, total_cost_usd::text as cost from T.agent_sessions where id = '${session}'`)).toEqual([
      { project_id: 'prj-a', external_session_id: 'claude-1', status: 'completed', total_messages: 2, total_tools_used: 1, total_tokens: 100, cost: '0.012000' },
    ]);
    const [m1, m2] = [await mapped(t, 'messages', 'm-001'), await mapped(t, 'messages', 'm-002')];
    expect(await q(t, `select id, user_id, role, session_id, parent_message_id, metadata from T.messages where project_id = 'prj-a' order by created_at, role desc`)).toEqual([
      { id: m1, user_id: owner, role: 'user', session_id: session, parent_message_id: null, metadata: { source_conversation_id: 'conv-1' } },
      { id: m2, user_id: null, role: 'assistant', session_id: session, parent_message_id: m1, metadata: { step: 1 } },
    ]);
    expect(await q(t, 'select user_id, user_message_id, session_id, is_completed, is_successful from T.user_requests')).toEqual([{ user_id: owner, user_message_id: m1, session_id: session, is_completed: true, is_successful: true }]);
    expect(await q(t, 'select project_id, tool_name, lines_added, lines_removed, files_affected from T.tool_usages')).toEqual([{ project_id: 'prj-a', tool_name: 'Write', lines_added: 3, lines_removed: 1, files_affected: ['index.html'] }]);
    expect(await q(t, 'select project_id, session_id, commit_sha from T.commits')).toEqual([{ project_id: 'prj-a', session_id: session, commit_sha: 'abc1234def5678' }]);
    expect(await q(t, 'select project_id, provider, status, service_data from T.service_connections')).toEqual([{ project_id: 'prj-a', provider: 'github', status: 'connected', service_data: { repo: 'me/alpha' } }]);
    expect(await q(t, 'select id from T.env_vars')).toEqual([]);
  }

  const expectNothingTwice = async (t: ImportTarget, args: string[]) => {
    const again = await importOk(t, ...args);
    expect(again.tables.filter((x) => x.imported > 0)).toEqual([]);
    expect(table(again, 'projects')?.skipped_by_reason).toEqual({ already_imported: 2 });
  };

  it('from SQLite cc.db: without --owner the ownerless tables are listed not_imported; then --owner names a Tally user (by e-mail) and they arrive as theirs, sealed; a second run imports nothing', async () => {
    const t = ih.newTarget();
    const plain = await importOk(t, '--from', sqliteFile);
    expect(plain.owner).toBeNull();
    expect(plain.tables.map((x) => x.table)).not.toContain('projects');
    expect(plain.not_imported).toContainEqual({
      table: 'service_tokens, projects, sessions, messages, tools_usage, user_requests, commits, env_vars, project_service_connections',
      why: expect.stringMatching(/pass --owner <user id or e-mail> to import them/),
    });
    expect(await q(t, 'select id from T.projects')).toEqual([]);
    expect(await q(t, 'select id from T.service_tokens')).toEqual([]);

    const args = ['--from', sqliteFile, '--owner', 'USER-0003@Example.com'];
    const owned = await importOk(t, ...args);
    expect(owned.owner).toEqual({ given: 'USER-0003@Example.com', user_id: 'user-0003', from: 'tally' });
    await expectWork(t, owned, 'user-0003');
    await expectNothingTwice(t, args);
  });

  it('from Supabase (PostgreSQL): an --owner naming nobody fails in one line and imports nothing; --dry-run keeps nothing; --owner a source user imported in the same run owns it all; a second run imports nothing', async () => {
    const t = ih.newTarget();
    const from = ['--from', SOURCE_URL, '--source-schema', pgSource.schema];
    const bad = await run(t, 'import', ...from, '--owner', 'nobody@example.com', '--json');
    expect(bad.code).toBe(1);
    expect(bad.out).toBe('');
    expect(bad.err.trim().split('\n')).toEqual(["import: --owner nobody@example.com names no user, neither in Tally nor in the source's users (an id or e-mail); nothing was imported"]);
    expect(await q(t, 'select id from T.import_runs')).toEqual([]);
    expect(await q(t, 'select id from T.users')).toEqual([]);

    const dry = await importOk(t, ...from, '--owner', 'user-0002', '--dry-run');
    expect(table(dry, 'projects')?.imported).toBe(2);
    expect(table(dry, 'service_tokens')?.imported).toBe(2);
    for (const n of ['users', 'projects', 'service_tokens', 'agent_sessions', 'messages', 'import_map']) expect(await q(t, `select 1 from T.${n}`)).toEqual([]);

    const args = [...from, '--owner', 'user-0002'];
    const owned = await importOk(t, ...args);
    expect(owned.owner).toEqual({ given: 'user-0002', user_id: 'user-0002', from: 'source' });
    await expectWork(t, owned, 'user-0002');
    await expectNothingTwice(t, args);
  });

  it('--strict with --owner refuses a source with anomalies and imports nothing; an --owner import killed mid-way through the ownerless tables, resumed with --owner, brings each of their rows exactly once', async () => {
    const t = ih.newTarget();
    const args = ['--from', sqliteFile, '--owner', 'user-0004'];
    const strict = await run(t, 'import', ...args, '--strict', '--json');
    expect(strict.code, strict.err.slice(-2000)).toBe(1);
    expect((JSON.parse(strict.out) as ImportReport).status).toBe('refused');
    for (const n of ['users', 'projects', 'service_tokens', 'agent_sessions', 'messages', 'import_map']) expect(await q(t, `select 1 from T.${n}`)).toEqual([]);

    // The binary itself, one row a batch, killed once the sessions (after the tokens and projects) are under way.
    await ih.release(t);
    const child = spawn(process.execPath, [...ih.cli, 'import', ...args, '--batch-size', '1'], { env: ih.env(t), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        // A table's first line is drawn after its first batch committed.
        if (/import (sessions|messages) \[/.test(err)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`the import ended before it could be killed: ${err.slice(-2000)}`)));
    });
    await new Promise((r) => child.once('close', r));
    expect(await q(t, 'select id from T.projects order by id')).toEqual([{ id: 'prj-a' }, { id: 'prj-b' }]);
    const [partial] = await q<{ n: number }>(t, 'select count(*)::int as n from T.messages');
    expect(partial?.n).toBeLessThan(3);

    const resumed = await importOk(t, ...args, '--resume');
    expect(resumed.resumed).toBe(true);
    // The killed run had imported the users: the owner is now found in Tally.
    expect(resumed.owner).toEqual({ given: 'user-0004', user_id: 'user-0004', from: 'tally' });
    // Every ownerless row once, the owner's: the import map names each source row once.
    const counts = await q<{ projects: number; tokens: number; sessions: number; messages: number; tools: number; requests: number; commits: number; connections: number; owners: string[] }>(
      t,
      `select (select count(*)::int from T.projects) as projects, (select count(*)::int from T.service_tokens) as tokens,
        (select count(*)::int from T.agent_sessions) as sessions, (select count(*)::int from T.messages) as messages,
        (select count(*)::int from T.tool_usages) as tools, (select count(*)::int from T.user_requests) as requests,
        (select count(*)::int from T.commits) as commits, (select count(*)::int from T.service_connections) as connections,
        (select array_agg(distinct user_id) from (select user_id from T.projects union all select user_id from T.service_tokens) o) as owners`,
    );
    expect(counts).toEqual([{ projects: 2, tokens: 2, sessions: 2, messages: 3, tools: 1, requests: 1, commits: 1, connections: 1, owners: ['user-0004'] }]);
    const [dupes] = await q<{ n: number }>(t, 'select count(*)::int as n from (select source_table, source_id from T.import_map group by 1, 2 having count(*) > 1) d');
    expect(dupes?.n).toBe(0);
    await expectNothingTwice(t, args);
    expect((await run(t, 'reconcile')).code).toBe(0);
  });
});
