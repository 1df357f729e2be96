import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEPLOYMENT_STATUSES,
  deploymentLifecycle,
  EDITOR_STATUSES,
  editorLifecycle,
  EXECUTION_STATUSES,
  executionLifecycle,
  type Lifecycle,
  TERMINAL_STATUSES,
  terminalLifecycle,
} from '../src/modules/ide/ide.lifecycles.js';
import type { Res } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

type User = Awaited<ReturnType<typeof signUp>>;

/**
 * The IDE resources' lifecycles (docs/ide.md): only the moves the closed unions allow; an illegal
 * move is 409 `invalid_state` and changes nothing (not even the other fields sent with it); one
 * deployment in flight and one live per environment, held by the database under parallel requests.
 */
describe(`IDE lifecycles (${TARGET})`, () => {
  let app: TestApp;
  let dev: User;
  let projectId: string;
  let base: string;
  const row = async (path: string) => (await dev.api.get(path)).body;
  const expectRefused = (res: Res, code = 'invalid_state') => {
    expect(res.status, JSON.stringify(res.body)).toBe(409);
    expect(res.body.error.code).toBe(code);
  };

  beforeAll(async () => {
    app = await createTestApp();
    dev = await signUp(app);
    projectId = (await dev.api.post('/v1/projects', { name: 'lifecycles' })).body.id;
    base = `/v1/projects/${projectId}`;
  });
  afterAll(async () => {
    await app?.close();
  });

  it('the database accepts exactly the statuses the closed unions declare', async () => {
    const db = app.database.db;
    const user = dev.user.id;
    const tries: [string, readonly string[], (status: string, id: string) => Promise<unknown>][] = [
      ['editor_sessions', EDITOR_STATUSES, (status, id) => db.insertInto('editor_sessions').values({ id, project_id: projectId, user_id: `${user}`, status, closed_at: status === 'open' ? null : new Date() }).execute()],
      ['terminal_sessions', TERMINAL_STATUSES, (status, id) => db.insertInto('terminal_sessions').values({ id, project_id: projectId, user_id: user, status, ended_at: status === 'running' ? null : new Date() }).execute()],
      ['code_executions', EXECUTION_STATUSES, (status, id) => db.insertInto('code_executions').values({ id, project_id: projectId, language: 'c', source_code: 'x', status }).execute()],
      ['deployments', DEPLOYMENT_STATUSES, (status, id) => db.insertInto('deployments').values({ id, project_id: projectId, environment: 'development', status }).execute()],
    ];
    for (const [table, statuses, insert] of tries) {
      for (const status of statuses) {
        await insert(status, `${table}_${status}`);
        await db.deleteFrom(table as 'deployments').where('id', '=', `${table}_${status}`).execute();
      }
      await expect(insert('bogus', `${table}_bogus`), table).rejects.toThrow(/check constraint/);
    }
    // Every declared status is reachable from the initial one, and every final one has no way out.
    const lifecycles: Lifecycle<string>[] = [executionLifecycle, terminalLifecycle, deploymentLifecycle, editorLifecycle];
    for (const lc of lifecycles) {
      const seen = new Set([lc.initial]);
      const todo = [lc.initial];
      for (let s = todo.pop(); s !== undefined; s = todo.pop()) {
        for (const n of lc.next[s] ?? []) if (!seen.has(n)) todo.push(n), seen.add(n);
      }
      expect(lc.statuses.filter((s) => !seen.has(s))).toEqual(lc === (deploymentLifecycle as Lifecycle<string>) ? ['superseded'] : []);
    }
  });

  it('a code execution runs queued → running → completed once; illegal moves are 409 and change nothing', async () => {
    const exe = await dev.api.post(`${base}/code-executions`, { language: 'python', source_code: 'print(1)', stdin: '1' });
    expect(exe.body).toMatchObject({ status: 'queued', started_at: null, finished_at: null, user_id: dev.user.id });
    const path = `${base}/code-executions/${exe.body.id}`;
    expectRefused(await dev.api.patch(path, { status: 'completed', stdout: 'skipped' }));
    expect(await row(path)).toMatchObject({ status: 'queued', stdout: null });
    const running = await dev.api.patch(path, { status: 'running', external_token: 'judge0-token' });
    expect(running.body.status).toBe('running');
    expect(running.body.started_at).not.toBeNull();
    const done = await dev.api.patch(path, { status: 'completed', stdout: '1\n', exit_code: 0, execution_time_ms: 12.5, memory_kb: 2048, status_detail: 'Accepted' });
    expect(done.body).toMatchObject({ status: 'completed', stdout: '1\n', exit_code: 0, execution_time_ms: 12.5, memory_kb: 2048, status_detail: 'Accepted' });
    expect(done.body.finished_at).not.toBeNull();
    for (const next of ['running', 'failed', 'canceled', 'queued']) expectRefused(await dev.api.patch(path, { status: next }));
    expectRefused(await dev.api.patch(path, { stdout: 'rewritten' }));
    expect(await row(path)).toEqual(done.body);
    // Two racing moves from running: exactly one applies.
    const race = (await dev.api.post(`${base}/code-executions`, { language: 'c', source_code: 'int main(){}' })).body.id;
    await dev.api.patch(`${base}/code-executions/${race}`, { status: 'running' });
    const answers = await Promise.all([
      dev.api.patch(`${base}/code-executions/${race}`, { status: 'completed', exit_code: 0 }),
      dev.api.patch(`${base}/code-executions/${race}`, { status: 'timed_out' }),
    ]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
    const winner = answers.find((a) => a.status === 200)?.body;
    expect(await row(`${base}/code-executions/${race}`)).toEqual(winner);
  });

  it('a terminal session ends once, with its exit code and duration', async () => {
    const t = await dev.api.post(`${base}/terminal-sessions`, { shell: 'zsh', working_directory: '/app', command: 'npm test' });
    const path = `${base}/terminal-sessions/${t.body.id}`;
    expect((await dev.api.patch(path, { working_directory: '/app/src', output: 'running…' })).body).toMatchObject({ status: 'running', working_directory: '/app/src' });
    expect((await dev.api.patch(path, { exit_code: 1 })).status).toBe(400);
    const ended = await dev.api.patch(path, { status: 'exited', exit_code: 1, output: 'FAIL' });
    expect(ended.body).toMatchObject({ status: 'exited', exit_code: 1, output: 'FAIL' });
    expect(ended.body.ended_at).not.toBeNull();
    expect(ended.body.duration_ms).toBeGreaterThanOrEqual(0);
    expectRefused(await dev.api.patch(path, { status: 'killed' }));
    expectRefused(await dev.api.patch(path, { output: 'more' }));
    expect(await row(path)).toEqual(ended.body);
  });

  it('one open editor session per user and project; a closed one is kept and cannot change', async () => {
    const file = (await dev.api.post(`${base}/files`, { path: 'main.py', content: 'print(1)' })).body.file.id;
    const open = await dev.api.post(`${base}/editor-sessions`, { open_files: [{ file_id: file, cursor_position: { line: 3, column: 7 } }], active_file_id: file, layout_state: { sidebar: 'left' } });
    expect(open.status).toBe(201);
    expectRefused(await dev.api.post(`${base}/editor-sessions`, {}), 'conflict');
    const path = `${base}/editor-sessions/${open.body.id}`;
    const moved = await dev.api.patch(path, { open_files: [{ file_id: file, cursor_position: { line: 10, column: 0 }, scroll_position: { top: 120, left: 0 } }] });
    expect(moved.body.open_files[0].cursor_position).toEqual({ line: 10, column: 0 });
    const closed = await dev.api.patch(path, { status: 'closed' });
    expect(closed.body.status).toBe('closed');
    expect(closed.body.closed_at).not.toBeNull();
    expectRefused(await dev.api.patch(path, { layout_state: { sidebar: 'right' } }));
    expectRefused(await dev.api.patch(path, { status: 'open' }));
    expect(await row(path)).toEqual(closed.body);
    const again = await dev.api.post(`${base}/editor-sessions`, {});
    expect(again.status).toBe(201);
    const kept = (await dev.api.get(`${base}/editor-sessions?status=closed`)).body.data.map((s: { id: string }) => s.id);
    expect(kept).toContain(open.body.id);
    // Deleting the file leaves the session, without the active file.
    await dev.api.del(`${base}/files/${file}`);
    expect((await row(path)).active_file_id).toBeNull();
  });

  it('a deployment moves pending → building → deploying → success; skips and moves out of a final state are 409; a newer success supersedes the live one', async () => {
    const first = await dev.api.post(`${base}/deployments`, { environment: 'production', commit_sha: 'aaaaaaa', branch: 'main' });
    expect(first.body).toMatchObject({ status: 'pending', deployed_by: dev.user.id });
    const p1 = `${base}/deployments/${first.body.id}`;
    expectRefused(await dev.api.patch(p1, { status: 'success', deploy_url: 'https://skipped.example.com' }));
    expect(await row(p1)).toMatchObject({ status: 'pending', deploy_url: null });
    expectRefused(await dev.api.patch(p1, { status: 'superseded' }));
    await dev.api.patch(p1, { status: 'building' });
    await dev.api.patch(p1, { status: 'deploying', build_time_ms: 900 });
    expectRefused(await dev.api.del(p1));
    const live = await dev.api.patch(p1, { status: 'success', deploy_url: 'https://app.example.com' });
    expect(live.body).toMatchObject({ status: 'success', deploy_url: 'https://app.example.com', build_time_ms: 900 });
    expect(live.body.deployed_at).not.toBeNull();
    expectRefused(await dev.api.patch(p1, { status: 'failed' }));
    expectRefused(await dev.api.patch(p1, { logs: 'rewritten' }));

    const second = (await dev.api.post(`${base}/deployments`, { environment: 'production', commit_sha: 'bbbbbbb' })).body.id;
    const p2 = `${base}/deployments/${second}`;
    for (const s of ['building', 'deploying', 'success']) expect((await dev.api.patch(p2, { status: s })).status).toBe(200);
    expect((await row(p1)).status).toBe('superseded');
    expect((await row(p2)).status).toBe('success');
    const liveNow = (await dev.api.get(`${base}/deployments?environment=production&status=success`)).body.data;
    expect(liveNow.map((d: { id: string }) => d.id)).toEqual([second]);
    // A canceled one frees the slot; a finished record may be deleted.
    const third = (await dev.api.post(`${base}/deployments`, { environment: 'production' })).body.id;
    expect((await dev.api.patch(`${base}/deployments/${third}`, { status: 'canceled' })).body.finished_at).not.toBeNull();
    expect((await dev.api.del(`${base}/deployments/${third}`)).status).toBe(200);
  });

  it('parallel starts: exactly one deployment per environment is in flight, the rest are 409 conflict — the database decides', async () => {
    const p = (await dev.api.post('/v1/projects', { name: 'parallel' })).body.id;
    const start = (environment: string) => dev.api.post(`/v1/projects/${p}/deployments`, { environment, commit_sha: 'ccccccc' });
    const answers = await Promise.all([...Array.from({ length: 8 }, () => start('production')), ...Array.from({ length: 4 }, () => start('staging'))]);
    const statuses = (from: number, to: number) => answers.slice(from, to).map((a) => a.status).sort();
    expect(statuses(0, 8)).toEqual([201, 409, 409, 409, 409, 409, 409, 409]);
    expect(statuses(8, 12)).toEqual([201, 409, 409, 409]);
    for (const a of answers.filter((x) => x.status === 409)) expect(a.body.error.code).toBe('conflict');
    const rows = await app.database.db.selectFrom('deployments').select(['environment', 'status']).where('project_id', '=', p).orderBy('environment').execute();
    expect(rows).toEqual([
      { environment: 'production', status: 'pending' },
      { environment: 'staging', status: 'pending' },
    ]);
    // Even written directly, bypassing the service, a second one in flight is refused.
    await expect(
      app.database.db.insertInto('deployments').values({ id: 'dep_direct', project_id: p, environment: 'production', status: 'building' }).execute(),
    ).rejects.toThrow(/deployments_one_in_flight|duplicate key/);
    await expect(
      sql`insert into ${sql.table(`${app.database.schema}.deployments`)} (id, project_id, environment, status) values ('dep_l1', ${p}, 'development', 'success'), ('dep_l2', ${p}, 'development', 'success')`.execute(app.database.db),
    ).rejects.toThrow(/deployments_one_live|duplicate key/);
  });
});
