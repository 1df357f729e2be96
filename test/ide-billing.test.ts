import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { TARGET } from './support/harness.js';
import { billedRuns, CODE_METRIC } from './support/ide-billing.js';

const METRIC = CODE_METRIC;

/**
 * Billed code runs (docs/ide.md, "Billing runs"; TALLY_CODE_EXECUTION_METRIC): a run's start holds
 * the price of the longest billed run (refused before it runs when the payer cannot pay), and its
 * final move charges the project's owner a usage event of the metric, priced by its cost model and
 * captured from that hold, in the same transaction and once per run (the run's id is the event's
 * action_hash). Only the service reports what a run cost; a stranger can neither see nor bill a run.
 */
describe(`billed code runs (${TARGET})`, () => {
  const b = billedRuns();
  const { svc, key, balance, events, owner, started } = b;

const account = async (userId: string) => (await svc().get(`/v1/users/${userId}/balance`)).body as Json;

  /** What a usage event recorded about the run (its metadata; the API's event answer leaves it out). */
  const metadataOf = async (event: Json | undefined) =>
    (await sql<{ metadata: Json }>`select metadata from ${sql.table(`${b.app.database.schema}.usage_events`)} where id = ${String(event?.event_id)}`.execute(b.app.database.db)).rows[0]?.metadata;

  beforeAll(() => b.start());
  afterAll(() => b.stop());

  it("a completed run is billed once to the project's owner at the cost model's price, with its language", async () => {
    const u = await owner(100);
    const before = await balance(u.user.id);
    const run = await started(u);
    const done = await svc().patch(`${u.base}/${run}`, { status: 'completed', execution_time_ms: 2500, stdout: '1\n', exit_code: 0 });
    expect(done.status).toBe(200);
    expect(await balance(u.user.id)).toBe(before - 6);
    const [event, ...more] = await events(u.user.id, run);
    expect(more).toEqual([]);
    expect(event).toMatchObject({ metric: METRIC, quantity: 2500, charged: 6, workspace_id: null });
    expect(await metadataOf(event)).toMatchObject({ language: 'python', code_execution_id: run, status: 'completed' });
  });

  it('a duplicated completion (two at once, then a retry) bills once; an event the app recorded for the run is not billed again', async () => {
    const u = await owner(100);
    const before = await balance(u.user.id);
    const run = await started(u);
    const both = await Promise.all([1, 2].map(() => svc().patch(`${u.base}/${run}`, { status: 'completed', execution_time_ms: 1000 })));
    expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
    expect((await svc().patch(`${u.base}/${run}`, { status: 'completed', execution_time_ms: 1000 })).status).toBe(409);
    expect(await balance(u.user.id)).toBe(before - 2);
    expect(await events(u.user.id, run)).toHaveLength(1);

    // An app that already billed a run itself (the advice before the opt-in: action_hash = the run's id) pays once.
    const second = await started(u);
    const own = await svc().post('/v1/events', { user_id: u.user.id, metric: METRIC, quantity: 3000, action_hash: second, metadata: { code_execution_id: second, project_id: u.base.split('/')[3], language: 'python', status: 'completed' } }, { idempotencyKey: key() });
    expect(own.body).toMatchObject({ charged: 6 });
    expect((await svc().patch(`${u.base}/${second}`, { status: 'completed', execution_time_ms: 3000 })).status).toBe(200);
    expect(await balance(u.user.id)).toBe(before - 2 - 6);
    expect(await events(u.user.id, second)).toHaveLength(1);
  });

  it('an unpriced metric refuses the final move as it refuses a usage event (400), nothing changes; priced again, the retry bills once', async () => {
    const u = await owner(100);
    const before = await balance(u.user.id);
    const run = await started(u);
    expect((await svc().patch(`/v1/cost-models/${METRIC}`, { is_active: false })).status).toBe(200);
    try {
      const direct = await svc().post('/v1/events', { user_id: u.user.id, metric: METRIC, quantity: 1, action_hash: `probe-${run}` }, { idempotencyKey: key() });
      const refused = await svc().patch(`${u.base}/${run}`, { status: 'completed', execution_time_ms: 1000 });
      expect(refused.status).toBe(direct.status);
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatchObject({ code: 'invalid_request', message: direct.body.error.message });
      expect(refused.body.error.message).toContain('Unknown metric');
    } finally {
      expect((await svc().patch(`/v1/cost-models/${METRIC}`, { is_active: true })).status).toBe(200);
    }
    expect((await svc().get(`${u.base}/${run}`)).body.status).toBe('running');
    expect(await balance(u.user.id)).toBe(before);
    expect((await svc().patch(`${u.base}/${run}`, { status: 'completed', execution_time_ms: 1000 })).status).toBe(200);
    expect(await balance(u.user.id)).toBe(before - 2);
  });

  it('credits short of the hold: the start is refused (402) before anything runs, the run stays queued; a run canceled before it started costs nothing', async () => {
    const u = await owner(0);
    const all = await balance(u.user.id);
    expect(all).toBeLessThan(40);
    const run = (await u.api.post(u.base, { language: 'python', source_code: 'print(1)' })).body.id as string;
    const short = await svc().patch(`${u.base}/${run}`, { status: 'running' });
    expect(short.status).toBe(402);
    expect(short.body.error).toMatchObject({ code: 'insufficient_credits' });
    expect((await svc().get(`${u.base}/${run}`)).body).toMatchObject({ status: 'queued', started_at: null });
    expect(await account(u.user.id)).toMatchObject({ balance: all, held: 0 });
    // Queued, it may still be canceled (or failed) for nothing.
    expect((await svc().patch(`${u.base}/${run}`, { status: 'failed' })).status).toBe(200);
    expect(await events(u.user.id, run)).toEqual([]);

    const queued = (await u.api.post(u.base, { language: 'python', source_code: 'print(2)' })).body.id;
    expect((await u.api.patch(`${u.base}/${queued}`, { status: 'canceled' })).status).toBe(200);
    expect(await events(u.user.id, queued)).toEqual([]);
    expect(await balance(u.user.id)).toBe(all);
  });

  it('only the runner prices a run: its author may not report the end or the time (403), may cancel (billed for the time it ran)', async () => {
    const u = await owner(100);
    const before = await balance(u.user.id);
    const run = await started(u);
    for (const body of [{ status: 'completed' }, { status: 'failed' }, { status: 'timed_out' }, { execution_time_ms: 0 }]) {
      expect((await u.api.patch(`${u.base}/${run}`, body)).status).toBe(403);
    }
    expect(await balance(u.user.id)).toBe(before);
    const canceled = await u.api.patch(`${u.base}/${run}`, { status: 'canceled' });
    expect(canceled.status).toBe(200);
    const [event] = await events(u.user.id, run);
    expect(event).toMatchObject({ metric: METRIC, charged: 2 });
    expect(await metadataOf(event)).toMatchObject({ status: 'canceled' });
    expect(await balance(u.user.id)).toBe(before - 2);
  });

  it('a run is prepaid: its start holds the price of the longest billed run, its end captures what it cost and releases the rest', async () => {
    const u = await owner(100);
    const before = await account(u.user.id);
    const run = await started(u);
    // 20 s at 2 credits a started second: 40 held while it runs.
    expect(await account(u.user.id)).toMatchObject({ balance: before.balance, held: 40, available: before.available - 40 });
    // A second start of the same run is no move: nothing more is held.
    expect((await svc().patch(`${u.base}/${run}`, { status: 'running' })).status).toBe(200);
    expect(await account(u.user.id)).toMatchObject({ held: 40 });
    expect((await svc().patch(`${u.base}/${run}`, { status: 'completed', execution_time_ms: 7_500 })).status).toBe(200);
    expect(await account(u.user.id)).toMatchObject({ balance: before.balance - 16, held: 0 });
    const [event, ...more] = await events(u.user.id, run);
    expect(more).toEqual([]);
    expect(event).toMatchObject({ charged: 16, quantity: 7_500 });
    expect(await metadataOf(event)).toMatchObject({ code_execution_id: run, hold_id: expect.stringMatching(/^hold_/) });
    expect(await metadataOf(event)).not.toHaveProperty('uncharged');

    // The author may start their own run (under row-level security): held the same, settled by the runner.
    const own = (await u.api.post(u.base, { language: 'python', source_code: 'print(3)' })).body.id as string;
    const start = await u.api.patch(`${u.base}/${own}`, { status: 'running' });
    expect(start.status).toBe(200);
    expect(start.body).not.toHaveProperty('hold_id');
    expect(await account(u.user.id)).toMatchObject({ balance: before.balance - 16, held: 40 });
    expect((await svc().patch(`${u.base}/${own}`, { status: 'completed', execution_time_ms: 1 })).status).toBe(200);
    expect(await account(u.user.id)).toMatchObject({ balance: before.balance - 18, held: 0 });
  });

  it('the payer cannot dodge a started run: credits spent while it runs do not refuse its end; its price beyond the hold is not charged (recorded as uncharged)', async () => {
    const u = await owner(100);
    const run = await started(u);
    const spend = (await account(u.user.id)).available as number;
    expect((await svc().post('/v1/credits/debit', { user_id: u.user.id, amount: spend, reason: 'elsewhere' }, { idempotencyKey: key() })).status).toBe(201);
    // Nothing is left but what the run holds: the hold cannot be spent by anything else.
    expect((await svc().post('/v1/credits/debit', { user_id: u.user.id, amount: 1, reason: 'elsewhere' }, { idempotencyKey: key() })).status).toBe(402);
    expect(await account(u.user.id)).toMatchObject({ balance: 40, held: 40, available: 0 });
    // The runner reports 100 s: 200 credits at the price, 40 held — the hold is captured, the rest forgiven and recorded.
    expect((await svc().patch(`${u.base}/${run}`, { status: 'timed_out', execution_time_ms: 100_000 })).status).toBe(200);
    expect(await account(u.user.id)).toMatchObject({ balance: 0, held: 0 });
    const [event] = await events(u.user.id, run);
    expect(event).toMatchObject({ charged: 40, cost: 200 });
    expect(await metadataOf(event)).toMatchObject({ uncharged: 160, status: 'timed_out' });
  });

  it("an event the app recorded for a prepaid run releases the run's hold: paid once", async () => {
    const u = await owner(100);
    const before = await account(u.user.id);
    const run = await started(u);
    const own = await svc().post('/v1/events', { user_id: u.user.id, metric: METRIC, quantity: 3000, action_hash: run, metadata: { code_execution_id: run, project_id: u.base.split('/')[3], language: 'python', status: 'completed' } }, { idempotencyKey: key() });
    expect(own.body).toMatchObject({ charged: 6 });
    expect((await svc().patch(`${u.base}/${run}`, { status: 'completed', execution_time_ms: 3000 })).status).toBe(200);
    expect(await account(u.user.id)).toMatchObject({ balance: before.balance - 6, held: 0 });
    expect(await events(u.user.id, run)).toHaveLength(1);
  });

  it("a non-member cannot touch, end or bill someone else's run (404), and nothing is charged", async () => {
    const u = await owner(100);
    const stranger = await signUp(b.app);
    const before = await balance(u.user.id);
    const strangerBefore = await balance(stranger.user.id);
    const run = await started(u);
    for (const body of [{ status: 'canceled' }, { status: 'completed', execution_time_ms: 5000 }]) {
      expect((await stranger.api.patch(`${u.base}/${run}`, body)).status).toBe(404);
    }
    expect((await stranger.api.post(u.base, { language: 'python', source_code: 'x' })).status).toBe(404);
    expect((await svc().get(`${u.base}/${run}`)).body.status).toBe('running');
    expect(await balance(u.user.id)).toBe(before);
    expect(await balance(stranger.user.id)).toBe(strangerBefore);
    expect(await events(u.user.id, run)).toEqual([]);
  });

  it("a workspace project's run is paid by the pool, for the member who ran it", async () => {
    const lead = await signUp(b.app);
    const dev = await signUp(b.app);
    const ws = (await lead.api.post('/v1/workspaces', { name: 'Team' })).body.id as string;
    expect((await lead.api.post(`/v1/workspaces/${ws}/members`, { user_id: dev.user.id, role: 'member' })).status).toBe(201);
    expect((await svc().post('/v1/credits/grant', { workspace_id: ws, amount: 50, reason: 'pool' }, { idempotencyKey: key() })).status).toBe(201);
    const project = (await lead.api.post('/v1/projects', { name: 'team runs', workspace_id: ws })).body.id as string;
    const base = `/v1/projects/${project}/code-executions`;
    const personal = await balance(dev.user.id);
    const run = (await dev.api.post(base, { language: 'go', source_code: 'package main' })).body.id as string;
    expect((await svc().patch(`${base}/${run}`, { status: 'running' })).status).toBe(200);
    expect((await svc().patch(`${base}/${run}`, { status: 'failed', execution_time_ms: 4001 })).status).toBe(200);
    expect((await svc().get(`/v1/workspaces/${ws}/balance`)).body.balance).toBe(40);
    expect(await balance(dev.user.id)).toBe(personal);
    const [event] = await events(dev.user.id, run);
    expect(event).toMatchObject({ metric: METRIC, charged: 10, workspace_id: ws });
    expect(await metadataOf(event)).toMatchObject({ language: 'go' });
  });
});
