import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { addEndpoint, idemKey, localWebhooks, receiver, verifyDelivery } from './support/webhooks.js';

/**
 * Workspace endpoints (docs/webhooks-out.md, "Endpoints"): a workspace's owner or admin manages its
 * endpoints and nothing else, and such an endpoint receives that workspace's events only.
 */
describe(`workspace webhook endpoints (${TARGET})`, () => {
  let app: TestApp;
  let rx: Awaited<ReturnType<typeof receiver>>;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let admin: Awaited<ReturnType<typeof signUp>>;
  let member: Awaited<ReturnType<typeof signUp>>;
  let stranger: Awaited<ReturnType<typeof signUp>>;
  let ws: string;
  const svc = () => client(app.server, app.serviceKey);

  beforeAll(async () => {
    rx = await receiver();
    app = await createTestApp(localWebhooks);
    [owner, admin, member, stranger] = [await signUp(app), await signUp(app), await signUp(app), await signUp(app)];
    const created = await owner.api.post('/v1/workspaces', { name: 'Acme' });
    expect(created.status).toBe(201);
    ws = created.body.id;
    expect((await owner.api.post(`/v1/workspaces/${ws}/members`, { user_id: admin.user.id, role: 'admin' })).status).toBe(201);
    expect((await owner.api.post(`/v1/workspaces/${ws}/members`, { user_id: member.user.id, role: 'member' })).status).toBe(201);
  });
  afterAll(async () => {
    await app?.close();
    await rx?.close();
  });

  it("owners and admins manage their workspace's endpoints; members get 403, strangers 404, deployment endpoints stay the operator's", async () => {
    const made = await owner.api.post('/v1/webhook-endpoints', { url: rx.url, event_types: ['credits.granted'], workspace_id: ws });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ workspace_id: ws, secret: expect.stringMatching(/^whsec_/) });
    const id = made.body.id as string;
    expect((await admin.api.patch(`/v1/webhook-endpoints/${id}`, { description: 'by the admin' })).body.description).toBe('by the admin');
    expect((await admin.api.get(`/v1/webhook-endpoints?workspace_id=${ws}`)).body.data.map((e: { id: string }) => e.id)).toEqual([id]);

    expect((await member.api.get(`/v1/webhook-endpoints/${id}`)).status).toBe(403);
    expect((await member.api.post('/v1/webhook-endpoints', { url: rx.url, event_types: ['*'], workspace_id: ws })).status).toBe(403);
    expect((await stranger.api.get(`/v1/webhook-endpoints/${id}`)).status).toBe(404);
    expect((await stranger.api.post(`/v1/webhook-endpoints/${id}/rotate-secret`, {})).status).toBe(404);
    expect((await stranger.api.get(`/v1/webhook-endpoints?workspace_id=${ws}`)).status).toBe(404);
    // Without a workspace a user reaches nothing: the deployment's endpoints are the operator's.
    expect((await owner.api.post('/v1/webhook-endpoints', { url: rx.url, event_types: ['*'] })).status).toBe(403);
    expect((await owner.api.get('/v1/webhook-endpoints')).status).toBe(403);
    const global = await addEndpoint(app, rx.url, ['webhook.test']);
    expect((await owner.api.get(`/v1/webhook-endpoints/${global.id}`)).status).toBe(404);
    expect((await owner.api.call('DELETE', `/v1/webhook-endpoints/${global.id}`)).status).toBe(404);
    expect((await svc().get(`/v1/webhook-endpoints/${global.id}`)).status).toBe(200);

    expect((await owner.api.call('DELETE', `/v1/webhook-endpoints/${id}`)).status).toBe(200);
    await svc().call('DELETE', `/v1/webhook-endpoints/${global.id}`);
  });

  it("a workspace's managers create at most 10 endpoints in it (the operator is not bounded)", async () => {
    const other = (await stranger.api.post('/v1/workspaces', { name: 'Many' })).body.id as string;
    for (let i = 0; i < 10; i++) {
      expect((await stranger.api.post('/v1/webhook-endpoints', { url: `${rx.url}?${i}`, event_types: ['webhook.test'], workspace_id: other })).status).toBe(201);
    }
    const eleventh = await stranger.api.post('/v1/webhook-endpoints', { url: rx.url, event_types: ['webhook.test'], workspace_id: other });
    expect(eleventh.status).toBe(409);
    expect(eleventh.body.error).toMatchObject({ code: 'invalid_state', details: { limit: 10 } });
    expect((await svc().post('/v1/webhook-endpoints', { url: rx.url, event_types: ['webhook.test'], workspace_id: other })).status).toBe(201);
  });

  it("a workspace's endpoint receives that workspace's events only; the deployment's receives all", async () => {
    const mine = (await owner.api.post('/v1/webhook-endpoints', { url: `${rx.url}?ws`, event_types: ['credits.granted', 'job.completed'], workspace_id: ws })).body as { id: string; secret: string };
    const all = await addEndpoint(app, `${rx.url}?all`, ['credits.granted']);
    const user = await makeUser(app);
    const before = rx.got.length;
    expect((await svc().post('/v1/credits/grant', { workspace_id: ws, amount: 40, reason: 'pool' }, { idempotencyKey: idemKey() })).status).toBe(201);
    expect((await svc().post('/v1/credits/grant', { user_id: user.id, amount: 7, reason: 'own' }, { idempotencyKey: idemKey() })).status).toBe(201);
    // A job the pool pays for (run by the admin) is the workspace's event too; the user's own is not.
    const poolJob = await svc().post('/v1/jobs', { workspace_id: ws, user_id: admin.user.id, kind: 'video', input: { prompt: 'a cat' }, cost: 5 }, { idempotencyKey: idemKey() });
    expect(poolJob.status).toBe(201);
    expect((await svc().post(`/v1/jobs/${poolJob.body.id}/complete`, {}, { idempotencyKey: idemKey() })).status).toBe(200);
    const ownJob = await svc().post('/v1/jobs', { user_id: user.id, kind: 'video', input: { prompt: 'a dog' }, cost: 2 }, { idempotencyKey: idemKey() });
    expect((await svc().post(`/v1/jobs/${ownJob.body.id}/complete`, {}, { idempotencyKey: idemKey() })).status).toBe(200);
    await app.services.queue.runDue();
    const got = rx.got.slice(before);
    const wsDeliveries = (await svc().get(`/v1/webhook-endpoints/${mine.id}/deliveries`)).body.data as { event_type: string; payload: { data: { id?: string; transaction?: { amount: number } } } }[];
    expect(wsDeliveries.map((d) => [d.event_type, d.payload.data.transaction?.amount ?? d.payload.data.id]).reverse()).toEqual([
      ['credits.granted', 40],
      ['job.completed', poolJob.body.id],
    ]);
    const allDeliveries = (await svc().get(`/v1/webhook-endpoints/${all.id}/deliveries`)).body.data as { payload: { data: { transaction: { amount: number } } } }[];
    expect(allDeliveries.map((d) => d.payload.data.transaction.amount).sort((a, b) => a - b)).toEqual([3, 7, 40]);
    // What reached the receiver verifies with the workspace endpoint's own secret.
    const poolDelivery = got.find((r) => r.body.includes('"amount":40') && verifies(mine.secret, r));
    expect(poolDelivery).toBeDefined();
  });
});

function verifies(secret: string, r: Parameters<typeof verifyDelivery>[1]): boolean {
  try {
    verifyDelivery(secret, r);
    return true;
  } catch {
    return false;
  }
}
