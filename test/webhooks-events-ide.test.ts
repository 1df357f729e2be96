import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { addEndpoint, localWebhooks, messages, receiver, verifyDelivery } from './support/webhooks.js';

/**
 * The IDE's events (docs/webhooks-out.md): deployment.succeeded|failed and
 * code_execution.completed|failed, each in the transaction of the move that ends the resource,
 * once, without the run's or the build's text, and to a workspace's endpoints only for its projects.
 */
describe(`IDE events (${TARGET})`, () => {
  let app: TestApp;
  let rx: Awaited<ReturnType<typeof receiver>>;

  beforeAll(async () => {
    rx = await receiver();
    app = await createTestApp(localWebhooks);
  });
  afterAll(async () => {
    await app?.close();
    await rx?.close();
  });

  it('a deployment that goes live or fails tells it once, without its logs; the moves before say nothing', async () => {
    const dev = await signUp(app);
    const endpoint = await addEndpoint(app, rx.url, ['deployment.succeeded', 'deployment.failed']);
    const base = `/v1/projects/${(await dev.api.post('/v1/projects', { name: 'deploys' })).body.id}`;
    const first = (await dev.api.post(`${base}/deployments`, { environment: 'production', commit_sha: 'aaaaaaa' })).body.id;
    for (const status of ['building', 'deploying']) expect((await dev.api.patch(`${base}/deployments/${first}`, { status })).status).toBe(200);
    expect(await messages(app, 'deployment.succeeded', dev.user.id)).toEqual([]);
    const live = await dev.api.patch(`${base}/deployments/${first}`, { status: 'success', deploy_url: 'https://app.example.com', logs: 'x'.repeat(10_000) });
    expect(live.status).toBe(200);
    const [told, ...more] = await messages(app, 'deployment.succeeded', dev.user.id);
    expect(more).toEqual([]);
    const { logs: _logs, ...shown } = live.body;
    expect(told?.data).toEqual(shown);
    // A refused move after it tells nothing more.
    expect((await dev.api.patch(`${base}/deployments/${first}`, { status: 'failed' })).status).toBe(409);

    const second = (await dev.api.post(`${base}/deployments`, { environment: 'production' })).body.id;
    expect((await dev.api.patch(`${base}/deployments/${second}`, { status: 'failed', logs: 'boom' })).status).toBe(200);
    const failed = await messages(app, 'deployment.failed', dev.user.id);
    expect(failed.map((m) => [m.data['id'], m.data['status'], 'logs' in m.data])).toEqual([[second, 'failed', false]]);
    expect(await messages(app, 'deployment.succeeded', dev.user.id)).toHaveLength(1);

    // Delivered and signed like every event.
    await app.services.queue.runDue(new Date());
    expect(rx.got.filter((r) => r.body.includes(second))).toHaveLength(1);
    const delivered = verifyDelivery(endpoint.secret, rx.got.find((r) => r.body.includes(second)) ?? { headers: {}, body: '' });
    expect(delivered).toMatchObject({ type: 'deployment.failed', data: { id: second } });
  });

  it('a code run that completes, fails or times out tells it once, without its source or output; a cancel tells nothing', async () => {
    const dev = await signUp(app);
    await addEndpoint(app, rx.url, ['code_execution.completed', 'code_execution.failed']);
    const base = `/v1/projects/${(await dev.api.post('/v1/projects', { name: 'runs' })).body.id}`;
    const run = async (final: Record<string, unknown>) => {
      const id = (await dev.api.post(`${base}/code-executions`, { language: 'python', source_code: 'print(1)', stdin: 'secret input' })).body.id;
      expect((await dev.api.patch(`${base}/code-executions/${id}`, { status: 'running' })).status).toBe(200);
      expect((await dev.api.patch(`${base}/code-executions/${id}`, final)).status).toBe(200);
      return id;
    };
    const ok = await run({ status: 'completed', exit_code: 0, stdout: '1\n' });
    const bad = await run({ status: 'failed', exit_code: 1, stderr: 'Traceback' });
    const slow = await run({ status: 'timed_out' });
    await run({ status: 'canceled' });
    const completed = await messages(app, 'code_execution.completed', dev.user.id);
    expect(completed.map((m) => [m.data['id'], m.data['status'], m.data['exit_code']])).toEqual([[ok, 'completed', 0]]);
    const failed = await messages(app, 'code_execution.failed', dev.user.id);
    expect(failed.map((m) => [m.data['id'], m.data['status']])).toEqual([
      [bad, 'failed'],
      [slow, 'timed_out'],
    ]);
    for (const m of [...completed, ...failed]) {
      for (const field of ['source_code', 'stdin', 'stdout', 'stderr', 'compile_output']) expect(m.data).not.toHaveProperty(field);
    }
  });

  it("a workspace's endpoint hears about its projects' runs and no one else's", async () => {
    const owner = await signUp(app);
    const outsider = await signUp(app);
    const ws = (await owner.api.post('/v1/workspaces', { name: 'IDE Co' })).body;
    const mine = await receiver();
    try {
      await addEndpoint(app, mine.url, ['code_execution.completed'], ws.id);
      const inWorkspace = `/v1/projects/${(await owner.api.post('/v1/projects', { name: 'team', workspace_id: ws.id })).body.id}`;
      const elsewhere = `/v1/projects/${(await outsider.api.post('/v1/projects', { name: 'solo' })).body.id}`;
      const finish = async (api: typeof owner.api, base: string) => {
        const id = (await api.post(`${base}/code-executions`, { language: 'js', source_code: '1' })).body.id;
        await api.patch(`${base}/code-executions/${id}`, { status: 'running' });
        expect((await api.patch(`${base}/code-executions/${id}`, { status: 'completed', exit_code: 0 })).status).toBe(200);
        return id;
      };
      const teamRun = await finish(owner.api, inWorkspace);
      const soloRun = await finish(outsider.api, elsewhere);
      await app.services.queue.runDue(new Date());
      expect(mine.got.map((r) => JSON.parse(r.body).data.id)).toEqual([teamRun]);
      expect(mine.got.some((r) => r.body.includes(soloRun))).toBe(false);
    } finally {
      await mine.close();
    }
  });
});
