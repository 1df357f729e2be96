import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Json } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { rawPut } from './support/storage.js';
import { signCallback } from '../src/modules/jobs/jobs.signature.js';

/**
 * The audit of storage objects, IDE resources and jobs (docs/audit.md, "What is audited"): each
 * audited action leaves exactly one row naming the actor and the request; the high-volume writes
 * (uploads, sync bookkeeping, a job's start, build logs) leave none; sealed credentials never
 * appear; and the chain still verifies.
 */
describe(`audit of resources (${TARGET})`, () => {
  let app: TestApp;
  const svc = () => client(app.server, app.serviceKey);
  const key = () => `k-${randomBytes(6).toString('hex')}`;

  /** The audit rows one request left, oldest first. */
  async function rowsOf(requestId: unknown): Promise<Json[]> {
    expect(typeof requestId).toBe('string');
    const res = await svc().get(`/v1/audit?request_id=${String(requestId)}`);
    expect(res.status).toBe(200);
    return [...res.body.data].reverse();
  }

  /** Every audit row about one target, oldest first. */
  async function rowsAbout(table: string, id: string): Promise<Json[]> {
    const res = await svc().get(`/v1/audit?target_table=${table}&target_id=${id}&limit=100`);
    expect(res.status).toBe(200);
    return [...res.body.data].reverse();
  }

  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('storage: an object delete is one row with its deleter; uploads and overwrites write none; a quota change is a bucket row', async () => {
    const owner = await signUp(app);
    const bucket = `a${randomBytes(3).toString('hex')}`;
    expect((await svc().post('/v1/storage/buckets', { id: bucket, allowed_mime_types: ['text/*'] })).status).toBe(201);
    const quota = await svc().patch(`/v1/storage/buckets/${bucket}`, { user_quota_bytes: 1_000_000 });
    expect(quota.status).toBe(200);
    expect(await rowsOf(quota.headers['x-request-id'])).toMatchObject([
      { action: 'bucket.updated', actor: { kind: 'service' }, before: { user_quota_bytes: null }, after: { user_quota_bytes: 1_000_000 } },
    ]);

    const url = `/v1/storage/objects/${bucket}/${owner.user.id}/notes/a.txt`;
    const up = await rawPut(app, url, Buffer.from('hello'), { token: owner.token, type: 'text/plain', headers: { 'x-metadata': '{"note":"private words"}' } });
    expect(up.status).toBe(201);
    expect(await rowsOf(up.headers['x-request-id'])).toEqual([]);
    const over = await rawPut(app, url, Buffer.from('hello again'), { token: owner.token, type: 'text/plain', headers: { 'x-upsert': 'true' } });
    expect(over.status).toBe(200);
    expect(await rowsOf(over.headers['x-request-id'])).toEqual([]);

    const gone = await owner.api.del(url);
    expect(gone.status).toBe(200);
    const rows = await rowsOf(gone.headers['x-request-id']);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'storage_object.deleted',
      actor: { kind: 'user', id: owner.user.id },
      target: { table: 'storage_objects', id: up.body.id },
      before: { bucket_id: bucket, path: `${owner.user.id}/notes/a.txt`, size: 11, uploaded_by: owner.user.id },
      after: null,
    });
    expect(JSON.stringify(rows[0])).not.toContain('private words');
  });

  it('git repositories: create, change and credential rotation are one row each; the token never appears; sync bookkeeping writes none', async () => {
    const dev = await signUp(app);
    const project = (await dev.api.post('/v1/projects', { name: 'repo' })).body.id;
    const token = `ghp_${randomBytes(20).toString('hex')}`;
    const made = await dev.api.post(`/v1/projects/${project}/git-repositories`, { provider: 'github', repo_url: 'https://github.com/acme/app', credentials: token });
    expect(made.status).toBe(201);
    const [created, ...moreCreated] = await rowsOf(made.headers['x-request-id']);
    expect(moreCreated).toEqual([]);
    expect(created).toMatchObject({
      action: 'git_repository.created',
      actor: { kind: 'user', id: dev.user.id },
      target: { table: 'git_repositories', id: made.body.id },
      after: { repo_url: 'https://github.com/acme/app', credentials_enc: '[redacted]', created_by: dev.user.id },
    });
    expect([null, '[redacted]']).toContain(created?.after.credentials_hint);

    const path = `/v1/projects/${project}/git-repositories/${made.body.id}`;
    const branch = await dev.api.patch(path, { default_branch: 'trunk' });
    expect(branch.status).toBe(200);
    expect(await rowsOf(branch.headers['x-request-id'])).toMatchObject([
      { action: 'git_repository.updated', before: { default_branch: 'main' }, after: { default_branch: 'trunk' } },
    ]);

    const token2 = `ghp_${randomBytes(20).toString('hex')}`;
    const rotated = await dev.api.patch(path, { credentials: token2 });
    expect(rotated.status).toBe(200);
    const rot = await rowsOf(rotated.headers['x-request-id']);
    expect(rot).toMatchObject([{ action: 'git_repository.credentials_rotated', before: { credentials_enc: '[redacted]' }, after: { credentials_enc: '[redacted]' } }]);

    // Tally's own sync work stamps the repository: not an audited change.
    const sync = await svc().patch(path, { sync_status: 'syncing', last_sync_at: new Date().toISOString() });
    expect(sync.status).toBe(200);
    expect(await rowsOf(sync.headers['x-request-id'])).toEqual([]);

    const removed = await dev.api.del(path);
    expect(removed.status).toBe(200);
    expect(await rowsOf(removed.headers['x-request-id'])).toMatchObject([{ action: 'git_repository.deleted', before: { id: made.body.id }, after: null }]);

    const all = JSON.stringify(await rowsAbout('git_repositories', made.body.id));
    expect(all).not.toContain(token);
    expect(all).not.toContain(token2);
    expect(all).not.toContain(token.slice(-4));
  });

  it('deployments: who deployed what where, each status move once (the superseded one too), logs never copied', async () => {
    const dev = await signUp(app);
    const base = `/v1/projects/${(await dev.api.post('/v1/projects', { name: 'ship' })).body.id}/deployments`;
    const first = await dev.api.post(base, { environment: 'production', commit_sha: 'aaaaaaa', branch: 'main' });
    expect(first.status).toBe(201);
    expect(await rowsOf(first.headers['x-request-id'])).toMatchObject([
      { action: 'deployment.created', actor: { kind: 'user', id: dev.user.id }, target: { table: 'deployments', id: first.body.id },
        after: { environment: 'production', commit_sha: 'aaaaaaa', deployed_by: dev.user.id, status: 'pending' } },
    ]);
    const building = await dev.api.patch(`${base}/${first.body.id}`, { status: 'building' });
    expect(await rowsOf(building.headers['x-request-id'])).toMatchObject([{ action: 'deployment.status_changed', before: { status: 'pending' }, after: { status: 'building' } }]);
    // A log append alone writes nothing.
    const log = await dev.api.patch(`${base}/${first.body.id}`, { logs: 'step 1 of 9 SECRET_LOG_LINE' });
    expect(log.status).toBe(200);
    expect(await rowsOf(log.headers['x-request-id'])).toEqual([]);
    await dev.api.patch(`${base}/${first.body.id}`, { status: 'deploying' });
    const live = await dev.api.patch(`${base}/${first.body.id}`, { status: 'success', deploy_url: 'https://app.example.com' });
    expect(live.status).toBe(200);
    expect(await rowsOf(live.headers['x-request-id'])).toMatchObject([{ action: 'deployment.status_changed', target: { id: first.body.id }, after: { status: 'success', deploy_url: 'https://app.example.com' } }]);

    const second = (await dev.api.post(base, { environment: 'production', commit_sha: 'bbbbbbb' })).body.id;
    for (const status of ['building', 'deploying']) await dev.api.patch(`${base}/${second}`, { status });
    const next = await dev.api.patch(`${base}/${second}`, { status: 'success' });
    expect(next.status).toBe(200);
    const moved = await rowsOf(next.headers['x-request-id']);
    expect(moved.map((r) => [r.target.id, r.before.status, r.after.status]).sort()).toEqual(
      [[first.body.id, 'success', 'superseded'], [second, 'deploying', 'success']].sort(),
    );
    const all = await rowsAbout('deployments', first.body.id);
    expect(all.map((r) => r.action)).toEqual(['deployment.created', 'deployment.status_changed', 'deployment.status_changed', 'deployment.status_changed', 'deployment.status_changed']);
    expect(JSON.stringify(all)).not.toContain('SECRET_LOG_LINE');
  });

  it('jobs: the creation and the final move are one row each, with the actor and request; the start writes none; the prompt is not copied', async () => {
    const user = await signUp(app);
    expect((await svc().post('/v1/credits/grant', { user_id: user.user.id, amount: 100, reason: 'test' }, { idempotencyKey: key() })).status).toBe(201);
    const made = await svc().post('/v1/jobs', { user_id: user.user.id, kind: 'video', input: { prompt: 'PROMPT_WORDS' }, cost: 10 }, { idempotencyKey: key() });
    expect(made.status).toBe(201);
    const rows = await rowsOf(made.headers['x-request-id']);
    expect(rows.filter((r) => r.target.table === 'jobs')).toMatchObject([
      { action: 'job.created', actor: { kind: 'service' }, target: { id: made.body.id }, after: { user_id: user.user.id, cost: 10, status: 'pending' } },
    ]);
    const started = await svc().post(`/v1/jobs/${made.body.id}/start`, {});
    expect(started.status).toBe(200);
    expect(await rowsOf(started.headers['x-request-id'])).toEqual([]);
    const done = await svc().post(`/v1/jobs/${made.body.id}/complete`, { cost: 7 });
    expect(done.status).toBe(200);
    expect(await rowsOf(done.headers['x-request-id'])).toMatchObject([
      { action: 'job.completed', actor: { kind: 'service' }, before: { status: 'processing' }, after: { status: 'completed', captured: 7 } },
    ]);
    // A repeat moves nothing and writes nothing.
    const again = await svc().post(`/v1/jobs/${made.body.id}/complete`, { cost: 7 });
    expect(again.status).toBe(409);
    expect(await rowsOf(again.headers['x-request-id'])).toEqual([]);

    const other = await svc().post('/v1/jobs', { user_id: user.user.id, kind: 'video', input: {}, cost: 5 }, { idempotencyKey: key() });
    expect(other.body).toMatchObject({ status: 'pending' });
    const canceled = await svc().post(`/v1/jobs/${other.body.id}/cancel`, { reason: 'user asked' });
    expect(canceled.status).toBe(200);
    expect(await rowsOf(canceled.headers['x-request-id'])).toMatchObject([{ action: 'job.canceled', target: { id: other.body.id }, after: { status: 'canceled' } }]);
    expect(JSON.stringify(await rowsAbout('jobs', made.body.id))).not.toContain('PROMPT_WORDS');
  });

  it("jobs ended outside a request: a provider's callback and the timeout worker leave one row each, naming the provider (and the request) or the worker", async () => {
    const user = await signUp(app);
    expect((await svc().post('/v1/credits/grant', { user_id: user.user.id, amount: 50, reason: 'test' }, { idempotencyKey: key() })).status).toBe(201);
    const viaCallback = (await svc().post('/v1/jobs', { user_id: user.user.id, kind: 'video', input: {}, cost: 5 }, { idempotencyKey: key() })).body;
    const raw = JSON.stringify({ event: 'failed', error: 'provider gave up' });
    const signature = signCallback(app.config.jobs.callbackSecret, viaCallback.id, raw, Math.floor(Date.now() / 1000));
    const told = await app.server.inject({ method: 'POST', url: `/v1/jobs/${viaCallback.id}/callback`, payload: raw, headers: { 'content-type': 'application/json', 'tally-signature': signature } });
    expect(told.statusCode).toBe(200);
    const [failed, ...moreFailed] = (await rowsAbout('jobs', viaCallback.id)).filter((r) => r.action !== 'job.created');
    expect(moreFailed).toEqual([]);
    expect(failed).toMatchObject({
      action: 'job.failed', actor: { kind: 'provider', id: 'default' }, request_id: told.headers['x-request-id'], after: { status: 'failed', error: 'provider gave up' },
    });

    const viaTimeout = (await svc().post('/v1/jobs', { user_id: user.user.id, kind: 'video', input: {}, cost: 5, timeout_seconds: 1 }, { idempotencyKey: key() })).body;
    await new Promise((r) => setTimeout(r, 1_100));
    await app.services.queue.runDue(new Date());
    expect((await svc().get(`/v1/jobs/${viaTimeout.id}`)).body.status).toBe('timed_out');
    const ended = (await rowsAbout('jobs', viaTimeout.id)).filter((r) => r.action !== 'job.created');
    expect(ended).toMatchObject([{ action: 'job.timed_out', actor: { kind: 'system', id: 'jobs.timeout' }, after: { status: 'timed_out' } }]);
    expect(ended[0]?.request_id).toMatch(/^timeout:/);
  });

  it('IDE rows written often (editor, terminal, runs, analyses) and project files write no audit row; the chain verifies', async () => {
    const dev = await signUp(app);
    const base = `/v1/projects/${(await dev.api.post('/v1/projects', { name: 'quiet' })).body.id}`;
    const calls = [
      await dev.api.post(`${base}/editor-sessions`, { open_files: [] }),
      await dev.api.post(`${base}/terminal-sessions`, { shell: 'bash' }),
      await dev.api.post(`${base}/code-executions`, { language: 'python', source_code: 'print(1)' }),
      await dev.api.post(`${base}/code-analyses`, { file_path: 'src/a.ts', analysis_type: 'security', result: { findings: [] } }),
      await dev.api.post(`${base}/files`, { path: 'src/a.ts', content: 'let a = 1;' }),
      await dev.api.post(`${base}/files`, { path: 'src/a.ts', content: 'let a = 2;' }),
    ];
    for (const c of calls) {
      expect([200, 201]).toContain(c.status);
      expect(await rowsOf(c.headers['x-request-id'])).toEqual([]);
    }
    const verify = await svc().get('/v1/audit/verify');
    expect(verify.body).toMatchObject({ ok: true, problems: [] });
  });
});
