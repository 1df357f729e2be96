import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../src/core/principal.js';
import { setRequestRole } from '../src/db/request-role.js';
import { reconcile } from '../src/modules/credits/credits.reconcile.js';
import { client, type Json } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * Issue 17 (5): jobs, usage events and holds bill a workspace pool for the acting member, by role,
 * within the member's spend cap (docs/ledger.md, "Workspace pools").
 */
const key = () => `k_${randomBytes(8).toString('hex')}`;
type Api = ReturnType<typeof client>;
type Actor = Awaited<ReturnType<typeof signUp>>;

describe(`workspace pools (${TARGET})`, () => {
  let app: TestApp;
  let svc: Api;
  // A clock the tests move (month boundaries); starts mid-month.
  let now = new Date('2026-03-15T12:00:00.000Z');

  const post = (url: string, body: unknown, idempotencyKey: string | undefined = key()) =>
    svc.post(url, body, idempotencyKey === undefined ? {} : { idempotencyKey });
  const poolBalance = async (wsId: string) => (await svc.get(`/v1/workspaces/${wsId}/balance`)).body as Json;
  const poolEntries = async (wsId: string) => (await svc.get(`/v1/workspaces/${wsId}/transactions?limit=200`)).body.data as Json[];
  const expectReconciled = async () => {
    const report = await reconcile(app.database);
    expect(report.drift).toEqual([]);
  };

  beforeAll(async () => {
    app = await createTestApp({}, { clock: () => new Date(now.getTime()) });
    svc = client(app.server, app.serviceKey);
    const model = await post('/v1/cost-models', { metric: 'pool_tokens', formula: 'quantity * base_rate', base_rate: '1', class: 'Usage' });
    expect(model.body).toMatchObject({ metric: 'pool_tokens' });
  });
  afterAll(async () => {
    await app?.close();
  });

  /** A workspace with an owner, an admin, a member and a viewer, and a funded pool. */
  async function team(fund = 1000) {
    const [owner, admin, member, viewer, stranger] = await Promise.all([signUp(app), signUp(app), signUp(app), signUp(app), signUp(app)]);
    const ws = (await owner.api.post('/v1/workspaces', { name: 'Team' })).body as { id: string };
    for (const [who, role] of [[admin, 'admin'], [member, 'member'], [viewer, 'viewer']] as const) {
      expect((await owner.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: who.user.id, role })).status).toBe(201);
    }
    if (fund > 0) expect((await post('/v1/credits/grant', { workspace_id: ws.id, amount: fund, reason: 'team top-up' })).status).toBe(201);
    return { ws, owner, admin, member, viewer, stranger };
  }

  const debit = (wsId: string, who: Actor, amount: number, k = key()) =>
    post('/v1/credits/debit', { workspace_id: wsId, user_id: who.user.id, amount, reason: 'render' }, k);
  const hold = (wsId: string, who: Actor, amount: number, k = key()) => post('/v1/holds', { workspace_id: wsId, user_id: who.user.id, amount }, k);
  const event = (wsId: string, who: Actor, quantity: number, actionHash = key()) =>
    post('/v1/events', { workspace_id: wsId, user_id: who.user.id, metric: 'pool_tokens', quantity, action_hash: actionHash });
  const job = (wsId: string | undefined, who: Actor, cost: number, extra: Record<string, unknown> = {}) =>
    post('/v1/jobs', { ...(wsId ? { workspace_id: wsId } : {}), user_id: who.user.id, kind: 'video', input: { prompt: 'a cat' }, cost, ...extra });
  const setCap = (as: Api, wsId: string, userId: string, amount: number, period = 'month') =>
    as.put(`/v1/workspaces/${wsId}/members/${userId}/spend-cap`, { amount, period });

  it("a member's debit, hold, capture, usage event and job debit the pool and record the member", async () => {
    const { ws, member, admin, owner } = await team();
    const personal = (await svc.get(`/v1/users/${member.user.id}/balance`)).body.balance as number;

    const d = await debit(ws.id, member, 10);
    expect(d.status).toBe(201);
    expect(d.body.transaction).toMatchObject({ workspace_id: ws.id, user_id: null, member_id: member.user.id, type: 'debit', amount: -10 });

    const h = await hold(ws.id, admin, 20);
    expect(h.status).toBe(201);
    expect(h.body).toMatchObject({ workspace_id: ws.id, member_id: admin.user.id, status: 'held', amount: 20 });
    const c = await post(`/v1/holds/${h.body.id}/capture`, { amount: 15 });
    expect(c.status).toBe(200);

    const e = await event(ws.id, owner, 7);
    expect(e.status).toBe(201);
    expect(e.body).toMatchObject({ user_id: owner.user.id, workspace_id: ws.id, charged: 7, overage: 0 });

    const j = await job(ws.id, member, 30);
    expect(j.status).toBe(201);
    expect(j.body).toMatchObject({ user_id: member.user.id, workspace_id: ws.id, status: 'pending' });
    const jh = (await svc.get(`/v1/holds/${j.body.hold_id}`)).body;
    expect(jh).toMatchObject({ workspace_id: ws.id, member_id: member.user.id, amount: 30 });
    expect((await post(`/v1/jobs/${j.body.id}/complete`, { cost: 25 })).status).toBe(200);

    const entries = poolEntries(ws.id);
    const byType = (await entries).map((t) => [t.type, t.amount, t.member_id]);
    expect(byType).toEqual(
      expect.arrayContaining([
        ['debit', -10, member.user.id],
        ['capture', -15, admin.user.id],
        ['debit', -7, owner.user.id],
        ['capture', -25, member.user.id],
        ['grant', 1000, null],
      ]),
    );
    expect(e.body.transaction_id).toBe((await entries).find((t) => t.amount === -7)?.id);
    expect(await poolBalance(ws.id)).toMatchObject({ balance: 1000 - 10 - 15 - 7 - 25, held: 0, total_spent: 57 });
    // The member's own credits are untouched.
    expect((await svc.get(`/v1/users/${member.user.id}/balance`)).body.balance).toBe(personal);
    // The usage event is listed under the member who spent, naming the pool.
    const listed = (await svc.get(`/v1/users/${owner.user.id}/events`)).body.data as Json[];
    expect(listed[0]).toMatchObject({ event_id: e.body.event_id, workspace_id: ws.id });
    await expectReconciled();
  });

  it("a job on a workspace's project bills that workspace's pool; naming another workspace is refused", async () => {
    const { ws, member } = await team();
    const other = await team();
    const project = await member.api.post('/v1/projects', { name: 'App', workspace_id: ws.id });
    expect(project.status).toBe(201);
    const j = await job(undefined, member, 12, { project_id: project.body.id });
    expect(j.status).toBe(201);
    expect(j.body).toMatchObject({ workspace_id: ws.id, user_id: member.user.id });
    expect(await poolBalance(ws.id)).toMatchObject({ balance: 1000, held: 12 });
    const wrong = await job(other.ws.id, member, 12, { project_id: project.body.id });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toMatchObject({ code: 'invalid_request' });
    // A user's own project takes only that user's jobs: another user's project is not found, and nothing is held.
    const own = await member.api.post('/v1/projects', { name: 'Mine' });
    expect(own.status).toBe(201);
    const stranger = await job(undefined, other.member, 12, { project_id: own.body.id });
    expect(stranger.status).toBe(404);
    expect(stranger.body.error).toMatchObject({ code: 'not_found' });
    expect((await job(undefined, member, 0, { project_id: own.body.id })).status).toBe(201);
    expect((await post(`/v1/jobs/${j.body.id}/cancel`, {})).status).toBe(200);
    expect(await poolBalance(ws.id)).toMatchObject({ balance: 1000, held: 0 });
    await expectReconciled();
  });

  it('a viewer never spends the pool (403) and nothing changes', async () => {
    const { ws, viewer } = await team();
    const before = await poolBalance(ws.id);
    const entries = (await poolEntries(ws.id)).length;
    for (const res of [await debit(ws.id, viewer, 1), await hold(ws.id, viewer, 1), await event(ws.id, viewer, 1), await job(ws.id, viewer, 1)]) {
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('forbidden');
    }
    // A free job is refused too: the role decides, not the amount.
    expect((await job(ws.id, viewer, 0)).status).toBe(403);
    // In a batch, each event gets its own answer: the viewer's is refused, a member's beside it is not.
    const { member } = await team(0);
    const batch = await post('/v1/events/batch', {
      events: [
        { workspace_id: ws.id, user_id: viewer.user.id, metric: 'pool_tokens', quantity: 2, action_hash: key() },
        { user_id: member.user.id, metric: 'pool_tokens', quantity: 1, action_hash: key() },
      ],
    });
    expect(batch.status).toBe(200);
    expect(batch.body.results.map((r: Json) => [r.status, r.error?.code ?? r.event.workspace_id])).toEqual([
      [403, 'forbidden'],
      [201, null],
    ]);
    expect(await poolBalance(ws.id)).toEqual(before);
    expect((await poolEntries(ws.id)).length).toBe(entries);
    expect((await svc.get(`/v1/users/${viewer.user.id}/jobs`)).body.data).toEqual([]);
    expect((await svc.get(`/v1/users/${viewer.user.id}/events`)).body.data).toEqual([]);
    await expectReconciled();
  });

  it('a deactivated workspace keeps its pool but nobody spends it (409); only the owner deactivates or reactivates it', async () => {
    const { ws, owner, admin, member } = await team();
    // An admin may rename the workspace but not switch it off or on.
    expect((await admin.api.patch(`/v1/workspaces/${ws.id}`, { is_active: false })).status).toBe(403);
    expect((await owner.api.patch(`/v1/workspaces/${ws.id}`, { is_active: false })).status).toBe(200);
    const before = await poolBalance(ws.id);
    const entries = (await poolEntries(ws.id)).length;
    for (const res of [await debit(ws.id, member, 1), await hold(ws.id, member, 1), await event(ws.id, member, 1), await job(ws.id, member, 1), await job(ws.id, member, 0)]) {
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('conflict');
    }
    expect((await admin.api.patch(`/v1/workspaces/${ws.id}`, { is_active: true })).status).toBe(403);
    expect(await poolBalance(ws.id)).toEqual(before);
    expect((await poolEntries(ws.id)).length).toBe(entries);
    // Reactivated by its owner, the pool is spent again.
    expect((await owner.api.patch(`/v1/workspaces/${ws.id}`, { is_active: true })).status).toBe(200);
    expect((await debit(ws.id, member, 1)).status).toBe(201);
    await expectReconciled();
  });

  it('a stranger gets the answer a workspace that does not exist gets (404, nothing disclosed)', async () => {
    const { ws, stranger } = await team();
    const missing = 'wsp_00000000000000000000000000';
    const shape = (res: { status: number; body: Json }, id: string) => {
      expect(res.status).toBe(404);
      expect(res.body.error).toMatchObject({ code: 'not_found', message: `Workspace ${id} not found`, details: { id } });
      return Object.keys(res.body.error).sort();
    };
    const calls = [
      (id: string) => debit(id, stranger, 1),
      (id: string) => hold(id, stranger, 1),
      (id: string) => event(id, stranger, 1),
      (id: string) => job(id, stranger, 1),
    ];
    for (const call of calls) {
      expect(shape(await call(ws.id), ws.id)).toEqual(shape(await call(missing), missing));
    }
    expect(await poolBalance(ws.id)).toMatchObject({ balance: 1000, held: 0 });
    // On a pool never used before, a refused spend leaves nothing behind: not even its account.
    const fresh = await team(0);
    for (const call of calls) expect((await call(fresh.ws.id)).status).toBe(404);
    const accounts = await app.database.db.selectFrom('credit_accounts').select('id').where('workspace_id', '=', fresh.ws.id).execute();
    expect(accounts).toEqual([]);
    await expectReconciled();
  });

  it('spend caps: set by the service, the owner or an admin on others — never by the member on themself', async () => {
    const { ws, owner, admin, member, viewer, stranger } = await team();
    const capUrl = (userId: string) => `/v1/workspaces/${ws.id}/members/${userId}/spend-cap`;
    // Nobody sets or removes their own cap.
    expect((await setCap(member.api, ws.id, member.user.id, 1_000_000)).status).toBe(403);
    expect((await setCap(admin.api, ws.id, admin.user.id, 1_000_000)).status).toBe(403);
    expect((await setCap(owner.api, ws.id, owner.user.id, 1_000_000)).status).toBe(403);
    // Members and viewers manage nobody's; admins cannot cap an admin or the owner; strangers see no workspace.
    expect((await setCap(member.api, ws.id, viewer.user.id, 5)).status).toBe(403);
    expect((await setCap(admin.api, ws.id, owner.user.id, 5)).status).toBe(403);
    expect((await setCap(stranger.api, ws.id, member.user.id, 5)).status).toBe(404);

    const set = await setCap(admin.api, ws.id, member.user.id, 40, 'month');
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ workspace_id: ws.id, user_id: member.user.id, amount: 40, period: 'month', spent: 0, held: 0, remaining: 40, set_by: admin.user.id });
    expect(set.body.period_start).toBe('2026-03-01T00:00:00.000Z');
    expect((await setCap(owner.api, ws.id, admin.user.id, 500, 'lifetime')).status).toBe(200);

    expect((await debit(ws.id, member, 25)).status).toBe(201);
    expect((await hold(ws.id, member, 10)).status).toBe(201);
    // The member reads their own cap and what it counts; cannot read another's or remove theirs.
    const mine = await member.api.get(capUrl(member.user.id));
    expect(mine.body).toMatchObject({ amount: 40, spent: 25, held: 10, remaining: 5 });
    expect((await member.api.get(capUrl(admin.user.id))).status).toBe(403);
    expect((await member.api.del(capUrl(member.user.id))).status).toBe(403);

    const over = await debit(ws.id, member, 6);
    expect(over.status).toBe(402);
    expect(over.body.error).toMatchObject({ code: 'budget_exceeded', details: { reason: 'member_spend_cap', cap: 40, used: 35, requested: 6 } });
    expect((await event(ws.id, member, 6)).status).toBe(402);
    expect((await job(ws.id, member, 6)).status).toBe(402);
    expect((await debit(ws.id, member, 5)).status).toBe(201);

    // Leaving and re-joining does not reset the cap or what it counts.
    expect((await member.api.del(`/v1/workspaces/${ws.id}/members/${member.user.id}`)).status).toBe(200);
    expect((await debit(ws.id, member, 1)).status).toBe(404);
    expect((await owner.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: member.user.id, role: 'member' })).status).toBe(201);
    const back = await debit(ws.id, member, 1);
    expect(back.status).toBe(402);
    expect(back.body.error.details).toMatchObject({ used: 40 });

    // Row-level security repeats the rule: the member cannot write their own cap row directly.
    const asUser = (userId: string): Principal => ({ kind: 'user', userId, email: null, via: 'jwt', keyId: null, scopes: ['*'], sessionId: null });
    const direct = app.database.db.transaction().execute(async (trx) => {
      await setRequestRole(trx, asUser(member.user.id));
      return trx.updateTable('workspace_spend_caps').set({ amount: 1_000_000 }).where('workspace_id', '=', ws.id).where('user_id', '=', member.user.id).executeTakeFirst();
    });
    expect(Number((await direct).numUpdatedRows)).toBe(0);
    const deleted = await app.database.db.transaction().execute(async (trx) => {
      await setRequestRole(trx, asUser(member.user.id));
      return trx.deleteFrom('workspace_spend_caps').where('workspace_id', '=', ws.id).executeTakeFirst();
    });
    expect(Number(deleted.numDeletedRows)).toBe(0);
    expect((await svc.get(capUrl(member.user.id))).body).toMatchObject({ amount: 40, remaining: 0 });

    // The owner lifts it.
    expect((await owner.api.del(capUrl(member.user.id))).status).toBe(200);
    expect((await debit(ws.id, member, 1)).status).toBe(201);
    await expectReconciled();
  });

  it('a monthly cap counts the UTC calendar month; a lifetime cap never resets; open holds count in any month', async () => {
    const { ws, member, admin } = await team();
    expect((await setCap(svc, ws.id, member.user.id, 30, 'month')).status).toBe(200);
    expect((await setCap(svc, ws.id, admin.user.id, 30, 'lifetime')).status).toBe(200);
    now = new Date('2026-03-31T23:59:00.000Z');
    expect((await debit(ws.id, member, 20)).status).toBe(201);
    expect((await post('/v1/holds', { workspace_id: ws.id, user_id: member.user.id, amount: 10, expires_in_seconds: 7200 })).status).toBe(201);
    expect((await debit(ws.id, admin, 30)).status).toBe(201);
    expect((await debit(ws.id, member, 1)).status).toBe(402);
    // 00:30 on April 1st in UTC (still March 31st in New York): a new month for the cap.
    now = new Date('2026-04-01T00:30:00.000Z');
    // The March hold still counts (10 of 30) until it resolves.
    expect((await debit(ws.id, member, 21)).status).toBe(402);
    expect((await debit(ws.id, member, 20)).status).toBe(201);
    expect((await debit(ws.id, admin, 1)).status).toBe(402);
    const cap = (await svc.get(`/v1/workspaces/${ws.id}/members/${member.user.id}/spend-cap`)).body;
    expect(cap).toMatchObject({ spent: 20, held: 10, remaining: 0, period_start: '2026-04-01T00:00:00.000Z', period_end: '2026-05-01T00:00:00.000Z' });
    now = new Date('2026-03-15T12:00:00.000Z');
    await expectReconciled();
  });

  it('replays do not count twice against the cap, and replay their first answer after the cap is full', async () => {
    const { ws, member } = await team();
    expect((await setCap(svc, ws.id, member.user.id, 30)).status).toBe(200);
    const k1 = key();
    const first = await debit(ws.id, member, 10, k1);
    expect(first.status).toBe(201);
    const again = await debit(ws.id, member, 10, k1);
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toEqual(first.body);
    const hash = key();
    const e1 = await event(ws.id, member, 10, hash);
    expect(e1.status).toBe(201);
    const e2 = await event(ws.id, member, 10, hash);
    expect(e2.status).toBe(200);
    expect(e2.body.event_id).toBe(e1.body.event_id);
    // 20 of 30 used: another 10 fits exactly once.
    expect((await debit(ws.id, member, 10)).status).toBe(201);
    expect((await debit(ws.id, member, 1)).status).toBe(402);
    // The cap is full, yet the first request's key still replays its 201.
    const late = await debit(ws.id, member, 10, k1);
    expect(late.status).toBe(201);
    expect(late.body).toEqual(first.body);
    expect(await poolBalance(ws.id)).toMatchObject({ balance: 970 });
    expect((await svc.get(`/v1/workspaces/${ws.id}/members/${member.user.id}/spend-cap`)).body).toMatchObject({ spent: 30, remaining: 0 });
    await expectReconciled();
  });

  it('the cap holds under 20 parallel spends of every kind (debits, holds, usage events, jobs)', async () => {
    const { ws, member, admin } = await team();
    expect((await setCap(svc, ws.id, member.user.id, 55)).status).toBe(200);
    const kinds = [
      () => debit(ws.id, member, 10),
      () => hold(ws.id, member, 10),
      () => event(ws.id, member, 10),
      () => job(ws.id, member, 10),
    ];
    // The admin (uncapped) spends the same pool meanwhile.
    const results = await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => (kinds[i % kinds.length] as () => Promise<{ status: number; body: Json }>)()),
      ...Array.from({ length: 5 }, () => debit(ws.id, admin, 3)),
    ]);
    const mine = results.slice(0, 20);
    expect(mine.filter((r) => r.status === 201).length).toBe(5);
    expect(mine.filter((r) => r.status === 402).every((r) => r.body.error.code === 'budget_exceeded')).toBe(true);
    expect(mine.filter((r) => r.status !== 201 && r.status !== 402)).toEqual([]);
    expect(results.slice(20).every((r) => r.status === 201)).toBe(true);
    const cap = (await svc.get(`/v1/workspaces/${ws.id}/members/${member.user.id}/spend-cap`)).body;
    expect(cap.spent + cap.held).toBe(50);
    expect(await poolBalance(ws.id)).toMatchObject({ balance: 1000 - 15 - (cap.spent as number), held: cap.held });
    await expectReconciled();
  });
});
