import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { DEFAULT_BILLING } from '../../src/config/config.js';
import { client, type Json } from './client.js';
import { signUp } from './fixtures.js';
import { createTestApp, type TestApp } from './harness.js';

export const CODE_METRIC = 'code_execution_ms';
/** A run holds 20 s of run time (40 credits) when it starts. */
export const CODE_HOLD_MS = 20_000;

/**
 * The set-up of the billed-code-run tests (docs/ide.md, "Billing runs"): an app that bills runs
 * under CODE_METRIC at two credits per started second, and helpers over it. Call `start()` in
 * `beforeAll` and `stop()` in `afterAll`.
 */
export function billedRuns() {
  let app: TestApp | undefined;
  const live = (): TestApp => {
    if (!app) throw new Error('billedRuns: start() first');
    return app;
  };
  const svc = () => client(live().server, live().serviceKey);
  const key = () => `k-${randomBytes(6).toString('hex')}`;
  const balance = async (userId: string) => (await svc().get(`/v1/users/${userId}/balance`)).body.balance as number;
  const events = async (userId: string, runId: string): Promise<Json[]> =>
    ((await svc().get(`/v1/users/${userId}/events?limit=100`)).body.data as Json[]).filter((e) => e.action_hash === runId);

  /** A signed-up user with `credits` granted and a project of their own. */
  async function owner(credits: number) {
    const u = await signUp(live());
    if (credits > 0) expect((await svc().post('/v1/credits/grant', { user_id: u.user.id, amount: credits, reason: 'test' }, { idempotencyKey: key() })).status).toBe(201);
    const project = (await u.api.post('/v1/projects', { name: 'runs' })).body.id as string;
    return { ...u, project, base: `/v1/projects/${project}/code-executions` };
  }

  /** A run queued by its author and started by the runner (the service). */
  async function started(u: Awaited<ReturnType<typeof owner>>, source = 'print(1)'): Promise<string> {
    const made = await u.api.post(u.base, { language: 'python', source_code: source });
    expect(made.status).toBe(201);
    expect((await svc().patch(`${u.base}/${made.body.id}`, { status: 'running' })).status).toBe(200);
    return made.body.id;
  }

  return {
    get app(): TestApp {
      return live();
    },
    svc,
    key,
    balance,
    events,
    owner,
    started,
    async start(): Promise<void> {
      app = await createTestApp({ billing: { ...DEFAULT_BILLING, codeExecutionMetric: CODE_METRIC, codeExecutionHoldMs: CODE_HOLD_MS } });
      // Two credits per started second of run time.
      const model = await svc().post('/v1/cost-models', { metric: CODE_METRIC, formula: 'ceil(quantity / 1000) * base_rate', base_rate: '2', class: 'Usage' });
      expect(model.status).toBe(201);
    },
    async stop(): Promise<void> {
      await app?.close();
    },
  };
}
