import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { TARGET } from './support/harness.js';
import { billedRuns } from './support/ide-billing.js';

/**
 * Attacker review 4, billed code runs (docs/ide.md, "Billing runs"): a run is post-paid, its charge
 * made by the runner's final move. Whoever could make that move impossible while the run is in
 * flight gets the run for nothing.
 */
describe(`attack 4: billed code runs (${TARGET})`, () => {
  const b = billedRuns();
  const { svc, key, balance, events, owner, started } = b;

  beforeAll(() => b.start());
  afterAll(() => b.stop());

  it('the author cannot delete their own running billed run to escape its charge: 409, and the runner still bills it', async () => {
    const u = await owner(100);
    const before = await balance(u.user.id);
    const run = await started(u);
    const del = await u.api.del(`${u.base}/${run}`);
    expect(del.status).toBe(409);
    expect(del.body.error).toMatchObject({ code: 'invalid_state' });
    expect((await svc().patch(`${u.base}/${run}`, { status: 'completed', execution_time_ms: 10_000 })).status).toBe(200);
    expect(await balance(u.user.id)).toBe(before - 20);
    expect(await events(u.user.id, run)).toHaveLength(1);
    // Once final (billed), or never started, a run may be deleted.
    expect((await u.api.del(`${u.base}/${run}`)).status).toBe(200);
    const queued = (await u.api.post(u.base, { language: 'python', source_code: 'x' })).body.id as string;
    expect((await u.api.del(`${u.base}/${queued}`)).status).toBe(200);
  });

  /** A workspace with a pool of 50 credits, a project of it, and a member `dev` with a run started (40 held). */
  async function teamRun() {
    const lead = await signUp(b.app);
    const dev = await signUp(b.app);
    const ws = (await lead.api.post('/v1/workspaces', { name: 'Team' })).body.id as string;
    expect((await lead.api.post(`/v1/workspaces/${ws}/members`, { user_id: dev.user.id, role: 'member' })).status).toBe(201);
    expect((await svc().post('/v1/credits/grant', { workspace_id: ws, amount: 50, reason: 'pool' }, { idempotencyKey: key() })).status).toBe(201);
    const project = (await lead.api.post('/v1/projects', { name: 'team runs', workspace_id: ws })).body.id as string;
    const base = `/v1/projects/${project}/code-executions`;
    const run = (await dev.api.post(base, { language: 'go', source_code: 'package main' })).body.id as string;
    expect((await svc().patch(`${base}/${run}`, { status: 'running' })).status).toBe(200);
    const pool = async () => (await svc().get(`/v1/workspaces/${ws}/balance`)).body as Json;
    expect(await pool()).toMatchObject({ balance: 50, held: 40 });
    return { lead, dev, ws, base, run, pool };
  }

  /**
   * Closed (was OPEN in attacker review 4): a run was post-paid and its charge re-checked the
   * payer's standing at the end, so the payer could make the final move unbillable after the work
   * was done. Now the start holds the run's price (role, cap and credits checked then) and the end
   * captures from that hold, re-checking nothing.
   */
  it("a workspace owner who demotes the member mid-run cannot make the run's charge impossible: the runner's completion bills the pool", async () => {
    const { lead, dev, ws, base, run, pool } = await teamRun();
    expect((await lead.api.patch(`/v1/workspaces/${ws}/members/${dev.user.id}`, { role: 'viewer' })).status).toBe(200);
    const done = await svc().patch(`${base}/${run}`, { status: 'completed', execution_time_ms: 4000 });
    expect(done.status).toBe(200);
    expect(await pool()).toMatchObject({ balance: 42, held: 0 });
    const [event, ...more] = await events(dev.user.id, run);
    expect(more).toEqual([]);
    expect(event).toMatchObject({ charged: 8, workspace_id: ws });
  });

  it('nor by removing the member, or capping their spend at 0, mid-run: the completion (or a cancel) still bills the pool once', async () => {
    const removed = await teamRun();
    expect((await removed.lead.api.del(`/v1/workspaces/${removed.ws}/members/${removed.dev.user.id}`)).status).toBe(200);
    expect((await svc().patch(`${removed.base}/${removed.run}`, { status: 'completed', execution_time_ms: 2000 })).status).toBe(200);
    expect(await removed.pool()).toMatchObject({ balance: 46, held: 0 });
    expect(await events(removed.dev.user.id, removed.run)).toHaveLength(1);

    const capped = await teamRun();
    expect((await capped.lead.api.put(`/v1/workspaces/${capped.ws}/members/${capped.dev.user.id}/spend-cap`, { amount: 0, period: 'lifetime' })).status).toBe(200);
    // The lead cancels it: billed for the time it ran (under a second: 2 credits), from the hold.
    expect((await capped.lead.api.patch(`${capped.base}/${capped.run}`, { status: 'canceled' })).status).toBe(200);
    expect(await capped.pool()).toMatchObject({ balance: 48, held: 0 });
    expect(await events(capped.dev.user.id, capped.run)).toHaveLength(1);
  });

  it('a member who may not spend cannot start a run: a viewer (403) or a member capped below the hold (402) is refused before it runs, nothing held', async () => {
    const { lead, dev, ws, base, pool } = await teamRun();
    expect((await lead.api.put(`/v1/workspaces/${ws}/members/${dev.user.id}/spend-cap`, { amount: 45, period: 'lifetime' })).status).toBe(200);
    // 40 of the cap is held by the first run: a second one (40 more) is over it.
    const second = (await dev.api.post(base, { language: 'go', source_code: 'package main' })).body.id as string;
    const capped = await svc().patch(`${base}/${second}`, { status: 'running' });
    expect(capped.status).toBe(402);
    expect(capped.body.error).toMatchObject({ code: 'budget_exceeded' });
    expect((await lead.api.patch(`/v1/workspaces/${ws}/members/${dev.user.id}`, { role: 'viewer' })).status).toBe(200);
    const third = await svc().patch(`${base}/${second}`, { status: 'running' });
    expect(third.status).toBe(403);
    expect((await svc().get(`${base}/${second}`)).body.status).toBe('queued');
    expect(await pool()).toMatchObject({ balance: 50, held: 40 });
  });

  it('the project owner cannot delete the project under a running billed run to escape its charge: 409, and the runner still bills it', async () => {
    const u = await owner(100);
    const before = await balance(u.user.id);
    const run = await started(u);
    const del = await u.api.del(`/v1/projects/${u.project}`);
    expect(del.status).toBe(409);
    expect((await svc().patch(`${u.base}/${run}`, { status: 'completed', execution_time_ms: 3_000 })).status).toBe(200);
    expect(await balance(u.user.id)).toBe(before - 6);
    expect((await u.api.del(`/v1/projects/${u.project}`)).status).toBe(200);
  });
});
