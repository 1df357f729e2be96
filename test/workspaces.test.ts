import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setRequestRole } from '../src/db/request-role.js';
import type { Principal } from '../src/core/principal.js';
import { client, type Json } from './support/client.js';
import { makeApiKey, makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;

type Api = ReturnType<typeof client>;
interface Actor {
  user: { id: string; email: string };
  api: Api;
}

describe(`workspaces (${TARGET})`, () => {
  let app: TestApp;
  let svc: Api;

  beforeAll(async () => {
    app = await createTestApp();
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app?.close();
  });

  async function createWorkspace(as: Api, body: Record<string, unknown> = {}) {
    const res = await as.post('/v1/workspaces', { name: 'Acme', ...body });
    if (res.status !== 201) throw new Error(`createWorkspace: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body as { id: string; slug: string; owner_id: string; name: string };
  }

  async function members(wsId: string, as: Api = svc) {
    const res = await as.get(`/v1/workspaces/${wsId}/members?limit=200`);
    expect(res.status).toBe(200);
    return res.body.data as Array<{ user_id: string; role: string; invited_by: string | null; joined_at: string }>;
  }

  async function roleIn(wsId: string, userId: string) {
    return (await members(wsId)).find((m) => m.user_id === userId)?.role ?? null;
  }

  /** A workspace with an owner, an admin, a member and a viewer, each a signed-up user with a JWT. */
  async function team() {
    const [owner, admin, member, viewer] = await Promise.all([signUp(app), signUp(app), signUp(app), signUp(app)]);
    const ws = await createWorkspace(owner.api, { name: 'Team' });
    for (const [who, role] of [[admin, 'admin'], [member, 'member'], [viewer, 'viewer']] as const) {
      const res = await owner.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: who.user.id, role });
      expect(res.status).toBe(201);
    }
    return { ws, owner, admin, member, viewer };
  }

  it('a user who creates a workspace owns it and is its only member, with role owner', async () => {
    const a = await signUp(app);
    const res = await a.api.post('/v1/workspaces', { name: 'Acme Inc.', description: 'Rockets', settings: { theme: 'dark' } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      name: 'Acme Inc.',
      description: 'Rockets',
      owner_id: a.user.id,
      settings: { theme: 'dark' },
      is_active: true,
    });
    expect(res.body.id).toMatch(/^wsp_[0-9a-z]{26}$/);
    expect(res.body.slug).toMatch(SLUG);

    const roster = await members(res.body.id, a.api);
    expect(roster).toHaveLength(1);
    expect(roster[0]).toMatchObject({ user_id: a.user.id, role: 'owner', invited_by: null });
    expect((await a.api.get(`/v1/workspaces/${res.body.id}`)).body).toEqual(res.body);
  });

  it('auto-generated slugs are URL-safe, distinct, and readable from the name', async () => {
    const a = await signUp(app);
    const cases: Array<[string, RegExp]> = [
      ['Acme', /^acme-[a-z0-9]+$/],
      ['Acme', /^acme-[a-z0-9]+$/],
      ['  Café Ünïcode!! 東京 ', /^cafe-unicode-[a-z0-9]+$/],
      ['東京', /^workspace-[a-z0-9]+$/],
      ['!!!---', /^workspace-[a-z0-9]+$/],
      ['-Leading and trailing-', /^leading-and-trailing-[a-z0-9]+$/],
      ['x'.repeat(255), /^x+-[a-z0-9]+$/],
      ['Ab '.repeat(80), /^ab-ab-ab-[a-z0-9-]+$/],
    ];
    const slugs: string[] = [];
    for (const [name, shape] of cases) {
      const ws = await createWorkspace(a.api, { name });
      expect(ws.slug, name).toMatch(SLUG);
      expect(ws.slug, name).toMatch(shape);
      expect(ws.slug.length).toBeLessThanOrEqual(64);
      expect(ws.name).toBe(name);
      slugs.push(ws.slug);
    }
    expect(new Set(slugs).size).toBe(slugs.length);
  });

  it('an explicit slug that is taken is a 409 conflict, even when the caller cannot see the other workspace', async () => {
    const a = await signUp(app);
    const b = await signUp(app);
    const taken = `taken-${a.user.id.slice(-8)}`;
    const first = await a.api.post('/v1/workspaces', { name: 'First', slug: taken });
    expect(first.status).toBe(201);
    expect(first.body.slug).toBe(taken);

    for (const api of [a.api, b.api, svc]) {
      const res = await api.post('/v1/workspaces', { name: 'Second', slug: taken, ...(api === svc ? { owner_id: b.user.id } : {}) });
      expect(res.status).toBe(409);
      expect(res.body.error).toMatchObject({ code: 'conflict', details: { field: 'slug' } });
    }
    // Renaming another workspace onto the slug is the same conflict; keeping one's own slug is not.
    const other = await createWorkspace(b.api, { name: 'Other' });
    const rename = await b.api.patch(`/v1/workspaces/${other.id}`, { slug: taken });
    expect(rename.status).toBe(409);
    expect(rename.body.error).toMatchObject({ code: 'conflict', details: { field: 'slug' } });
    expect((await b.api.get(`/v1/workspaces/${other.id}`)).body.slug).toBe(other.slug);
    expect((await a.api.patch(`/v1/workspaces/${first.body.id}`, { slug: taken, name: 'First again' })).status).toBe(200);
    // An invalid slug is a 400.
    expect((await a.api.post('/v1/workspaces', { name: 'Bad', slug: 'Not A Slug' })).status).toBe(400);
    // b owns exactly the one workspace it created.
    const bList = await b.api.get('/v1/workspaces');
    expect(bList.body.data.map((w: { id: string }) => w.id)).toEqual([other.id]);
  });

  it('a user cannot create a workspace owned by someone else', async () => {
    const a = await signUp(app);
    const b = await makeUser(app);
    const res = await a.api.post('/v1/workspaces', { name: 'Not mine', owner_id: b.id });
    expect(res.status).toBe(403);
    expect((await svc.get(`/v1/workspaces?user_id=${b.id}`)).body.data).toEqual([]);
    // Naming oneself is fine.
    expect((await a.api.post('/v1/workspaces', { name: 'Mine', owner_id: a.user.id })).status).toBe(201);
  });

  it('the service must name an existing owner when it creates a workspace', async () => {
    const noOwner = await svc.post('/v1/workspaces', { name: 'Orphan' });
    expect(noOwner.status).toBe(400);
    expect(noOwner.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'owner_id' } });

    const unknown = await svc.post('/v1/workspaces', { name: 'Ghost', owner_id: 'usr_doesnotexist' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');

    const u = await makeUser(app);
    const ok = await svc.post('/v1/workspaces', { name: 'Managed', owner_id: u.id });
    expect(ok.status).toBe(201);
    expect(ok.body.owner_id).toBe(u.id);
    expect(await members(ok.body.id)).toEqual([expect.objectContaining({ user_id: u.id, role: 'owner', invited_by: null })]);
    expect((await svc.get('/v1/workspaces?limit=200')).body.data.map((w: { name: string }) => w.name)).not.toContain('Orphan');
  });

  it('users list only the workspaces they belong to; the service lists all and filters by user_id', async () => {
    const a = await signUp(app);
    const b = await signUp(app);
    const a1 = await createWorkspace(a.api, { name: 'A1' });
    const a2 = await createWorkspace(a.api, { name: 'A2' });
    const b1 = await createWorkspace(b.api, { name: 'B1' });
    const b2 = await createWorkspace(b.api, { name: 'B2' });
    // a joins b2 as a viewer: a member's workspaces include it.
    expect((await b.api.post(`/v1/workspaces/${b2.id}/members`, { user_id: a.user.id, role: 'viewer' })).status).toBe(201);

    const ids = (res: { status: number; body: Json }) => {
      expect(res.status).toBe(200);
      return (res.body.data as Array<{ id: string }>).map((w) => w.id);
    };
    expect(ids(await a.api.get('/v1/workspaces'))).toEqual([b2.id, a2.id, a1.id]);
    expect(ids(await b.api.get('/v1/workspaces'))).toEqual([b2.id, b1.id]);
    expect(ids(await a.api.get(`/v1/workspaces?user_id=${a.user.id}`))).toEqual([b2.id, a2.id, a1.id]);
    const peek = await a.api.get(`/v1/workspaces?user_id=${b.user.id}`);
    expect(peek.status).toBe(403);

    const all = ids(await svc.get('/v1/workspaces?limit=200'));
    expect(all).toEqual(expect.arrayContaining([a1.id, a2.id, b1.id, b2.id]));
    expect(ids(await svc.get(`/v1/workspaces?user_id=${a.user.id}`))).toEqual([b2.id, a2.id, a1.id]);
    expect(ids(await svc.get(`/v1/workspaces?user_id=${b.user.id}`))).toEqual([b2.id, b1.id]);

    // The user's list pages too.
    const page1 = await a.api.get('/v1/workspaces?limit=2');
    expect(ids(page1)).toEqual([b2.id, a2.id]);
    const page2 = await a.api.get(`/v1/workspaces?limit=2&cursor=${page1.body.next_cursor}`);
    expect(ids(page2)).toEqual([a1.id]);
    expect(page2.body.next_cursor).toBeNull();
  });

  it('a non-member gets 404 for a workspace, its roster, updates and deletion', async () => {
    const { ws } = await team();
    const stranger = await signUp(app);
    const strangerKey = await makeApiKey(app, stranger.user.id);
    for (const api of [stranger.api, client(app.server, strangerKey.key)]) {
      for (const res of [
        await api.get(`/v1/workspaces/${ws.id}`),
        await api.get(`/v1/workspaces/${ws.id}/members`),
        await api.patch(`/v1/workspaces/${ws.id}`, { name: 'Hijacked' }),
        await api.post(`/v1/workspaces/${ws.id}/members`, { user_id: stranger.user.id, role: 'viewer' }),
        await api.del(`/v1/workspaces/${ws.id}`),
      ]) {
        expect(res.status).toBe(404);
        expect(res.body.error.code).toBe('not_found');
      }
    }
    const after = await svc.get(`/v1/workspaces/${ws.id}`);
    expect(after.body.name).toBe('Team');
    expect(await roleIn(ws.id, stranger.user.id)).toBeNull();
    expect((await svc.get('/v1/workspaces/wsp_doesnotexist')).status).toBe(404);
  });

  it('owners and admins may update a workspace; members and viewers get 403', async () => {
    const { ws, owner, admin, member, viewer } = await team();
    const byOwner = await owner.api.patch(`/v1/workspaces/${ws.id}`, { name: 'Renamed by owner' });
    expect(byOwner.status).toBe(200);
    expect(byOwner.body.name).toBe('Renamed by owner');
    const byAdmin = await admin.api.patch(`/v1/workspaces/${ws.id}`, { description: 'by admin', settings: { a: 1 } });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body).toMatchObject({ name: 'Renamed by owner', description: 'by admin', settings: { a: 1 } });

    for (const who of [member, viewer]) {
      const res = await who.api.patch(`/v1/workspaces/${ws.id}`, { name: 'Nope' });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('forbidden');
      // …but they can read it.
      expect((await who.api.get(`/v1/workspaces/${ws.id}`)).status).toBe(200);
    }
    expect((await svc.get(`/v1/workspaces/${ws.id}`)).body).toMatchObject({ name: 'Renamed by owner', description: 'by admin' });
    expect((await svc.patch(`/v1/workspaces/${ws.id}`, { is_active: false })).body.is_active).toBe(false);
    expect((await owner.api.patch(`/v1/workspaces/${ws.id}`, {})).status).toBe(400);
  });

  it('only the owner may delete a workspace; afterwards it is gone', async () => {
    const { ws, owner, admin, member, viewer } = await team();
    for (const who of [admin, member, viewer]) {
      const res = await who.api.del(`/v1/workspaces/${ws.id}`);
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('forbidden');
    }
    expect((await svc.get(`/v1/workspaces/${ws.id}`)).status).toBe(200);

    const del = await owner.api.del(`/v1/workspaces/${ws.id}`);
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ id: ws.id, deleted: true });
    for (const api of [owner.api, admin.api, svc]) {
      expect((await api.get(`/v1/workspaces/${ws.id}`)).status).toBe(404);
      expect((await api.get(`/v1/workspaces/${ws.id}/members`)).status).toBe(404);
    }
    expect((await owner.api.del(`/v1/workspaces/${ws.id}`)).status).toBe(404);
    expect((await owner.api.get('/v1/workspaces')).body.data.map((w: { id: string }) => w.id)).not.toContain(ws.id);
    expect((await admin.api.get('/v1/workspaces')).body.data.map((w: { id: string }) => w.id)).not.toContain(ws.id);

    // The service acts for the owner.
    const other = await createWorkspace(owner.api, { name: 'Second' });
    expect((await svc.del(`/v1/workspaces/${other.id}`)).status).toBe(200);
    expect((await owner.api.get(`/v1/workspaces/${other.id}`)).status).toBe(404);
  });

  it('owners appoint admins, members and viewers; admins appoint members and viewers but not admins', async () => {
    const owner = await signUp(app);
    const admin = await signUp(app);
    const ws = await createWorkspace(owner.api);
    const users = await Promise.all(Array.from({ length: 6 }, () => makeUser(app)));

    const addAdmin = await owner.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: admin.user.id, role: 'admin' });
    expect(addAdmin.status).toBe(201);
    expect(addAdmin.body).toMatchObject({ workspace_id: ws.id, user_id: admin.user.id, role: 'admin', invited_by: owner.user.id });
    for (const [u, role] of [[must(users[0], 'users[0]'), 'member'], [must(users[1], 'users[1]'), 'viewer']] as const) {
      const res = await owner.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: u.id, role });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({ user_id: u.id, role, invited_by: owner.user.id });
    }
    for (const [u, role] of [[must(users[2], 'users[2]'), 'member'], [must(users[3], 'users[3]'), 'viewer']] as const) {
      const res = await admin.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: u.id, role });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({ user_id: u.id, role, invited_by: admin.user.id });
    }
    const adminAppoints = await admin.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: must(users[4], 'users[4]').id, role: 'admin' });
    expect(adminAppoints.status).toBe(403);
    expect(adminAppoints.body.error.code).toBe('forbidden');
    expect(await roleIn(ws.id, must(users[4], 'users[4]').id)).toBeNull();

    // The service acts for the owner: it appoints admins; invited_by is no user.
    const bySvc = await svc.post(`/v1/workspaces/${ws.id}/members`, { user_id: must(users[5], 'users[5]').id, role: 'admin' });
    expect(bySvc.status).toBe(201);
    expect(bySvc.body).toMatchObject({ role: 'admin', invited_by: null });

    expect((await members(ws.id)).map((m) => [m.user_id, m.role]).sort()).toEqual(
      [
        [owner.user.id, 'owner'],
        [admin.user.id, 'admin'],
        [must(users[0], 'users[0]').id, 'member'],
        [must(users[1], 'users[1]').id, 'viewer'],
        [must(users[2], 'users[2]').id, 'member'],
        [must(users[3], 'users[3]').id, 'viewer'],
        [must(users[5], 'users[5]').id, 'admin'],
      ].sort(),
    );
  });

  it('members and viewers cannot add anyone', async () => {
    const { ws, member, viewer } = await team();
    const newcomer = await makeUser(app);
    for (const who of [member, viewer]) {
      for (const role of ['viewer', 'member', 'admin']) {
        const res = await who.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: newcomer.id, role });
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe('forbidden');
      }
    }
    expect(await roleIn(ws.id, newcomer.id)).toBeNull();
  });

  it('adding an existing member is a 409 conflict; adding an unknown user is a 404', async () => {
    const { ws, owner, admin, member } = await team();
    for (const api of [owner.api, admin.api, svc]) {
      const res = await api.post(`/v1/workspaces/${ws.id}/members`, { user_id: member.user.id, role: 'viewer' });
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('conflict');
    }
    const ownerAgain = await svc.post(`/v1/workspaces/${ws.id}/members`, { user_id: owner.user.id, role: 'member' });
    expect(ownerAgain.status).toBe(409);
    expect(await roleIn(ws.id, member.user.id)).toBe('member');
    expect(await roleIn(ws.id, owner.user.id)).toBe('owner');

    for (const api of [owner.api, admin.api, svc]) {
      const res = await api.post(`/v1/workspaces/${ws.id}/members`, { user_id: 'usr_doesnotexist', role: 'member' });
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
    expect(await members(ws.id)).toHaveLength(4);
  });

  it('the role owner cannot be given through the API', async () => {
    const { ws, owner, member } = await team();
    const newcomer = await makeUser(app);
    for (const api of [owner.api, svc]) {
      const add = await api.post(`/v1/workspaces/${ws.id}/members`, { user_id: newcomer.id, role: 'owner' });
      expect(add.status).toBe(400);
      expect(add.body.error.code).toBe('invalid_request');
      const promote = await api.patch(`/v1/workspaces/${ws.id}/members/${member.user.id}`, { role: 'owner' });
      expect(promote.status).toBe(400);
      expect(promote.body.error.code).toBe('invalid_request');
    }
    expect(await roleIn(ws.id, newcomer.id)).toBeNull();
    expect(await roleIn(ws.id, member.user.id)).toBe('member');
    expect((await members(ws.id)).filter((m) => m.role === 'owner').map((m) => m.user_id)).toEqual([owner.user.id]);
  });

  it('role changes follow the appointment rules', async () => {
    const { ws, owner, admin, member, viewer } = await team();
    const url = (u: Actor) => `/v1/workspaces/${ws.id}/members/${u.user.id}`;

    // An admin moves members and viewers between member and viewer…
    const demote = await admin.api.patch(url(member), { role: 'viewer' });
    expect(demote.status).toBe(200);
    expect(demote.body).toMatchObject({ user_id: member.user.id, role: 'viewer' });
    expect((await admin.api.patch(url(member), { role: 'member' })).body.role).toBe('member');
    // …but appoints no admin, and does not touch another admin.
    const escalate = await admin.api.patch(url(viewer), { role: 'admin' });
    expect(escalate.status).toBe(403);
    expect(escalate.body.error.code).toBe('forbidden');
    expect(await roleIn(ws.id, viewer.user.id)).toBe('viewer');

    // Members and viewers change nobody's role, not even their own.
    for (const who of [member, viewer]) {
      for (const target of [member, viewer]) {
        const res = await who.api.patch(url(target), { role: target === member ? 'viewer' : 'member' });
        expect(res.status).toBe(403);
      }
      expect((await who.api.patch(url(who), { role: 'admin' })).status).toBe(403);
    }
    expect(await roleIn(ws.id, member.user.id)).toBe('member');
    expect(await roleIn(ws.id, viewer.user.id)).toBe('viewer');

    // The owner appoints and removes admins.
    const promote = await owner.api.patch(url(viewer), { role: 'admin' });
    expect(promote.status).toBe(200);
    expect(promote.body.role).toBe('admin');
    const otherAdmin = await admin.api.patch(url(viewer), { role: 'member' });
    expect(otherAdmin.status).toBe(403);
    expect(await roleIn(ws.id, viewer.user.id)).toBe('admin');
    expect((await owner.api.patch(url(admin), { role: 'member' })).body.role).toBe('member');
    // The former admin has lost its powers.
    expect((await admin.api.patch(url(member), { role: 'viewer' })).status).toBe(403);
    // The service acts for the owner.
    expect((await svc.patch(url(admin), { role: 'admin' })).body.role).toBe('admin');

    const stranger = await makeUser(app);
    const missing = await owner.api.patch(`/v1/workspaces/${ws.id}/members/${stranger.id}`, { role: 'member' });
    expect(missing.status).toBe(404);
  });

  it('the owner\'s membership can be neither changed nor removed', async () => {
    const { ws, owner, admin } = await team();
    const url = `/v1/workspaces/${ws.id}/members/${owner.user.id}`;
    for (const api of [owner.api, admin.api, svc]) {
      const change = await api.patch(url, { role: 'admin' });
      expect(change.status).toBe(409);
      expect(change.body.error.code).toBe('invalid_state');
      const remove = await api.del(url);
      expect(remove.status).toBe(409);
      expect(remove.body.error.code).toBe('invalid_state');
    }
    expect(await roleIn(ws.id, owner.user.id)).toBe('owner');
    expect((await owner.api.get(`/v1/workspaces/${ws.id}`)).body.owner_id).toBe(owner.user.id);
  });

  it('any member may leave; only owners and admins remove others; only the owner removes admins', async () => {
    const { ws, owner, admin, member, viewer } = await team();
    const url = (id: string) => `/v1/workspaces/${ws.id}/members/${id}`;
    const extra = await makeUser(app);
    expect((await owner.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: extra.id, role: 'member' })).status).toBe(201);
    const admin2 = await signUp(app);
    expect((await owner.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: admin2.user.id, role: 'admin' })).status).toBe(201);

    for (const target of [member.user.id, admin.user.id, extra.id]) {
      const res = await viewer.api.del(url(target));
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('forbidden');
    }
    expect((await member.api.del(url(viewer.user.id))).status).toBe(403);
    expect((await admin.api.del(url(admin2.user.id))).status).toBe(403);
    expect(await members(ws.id)).toHaveLength(6);

    // Leaving.
    const leave = await member.api.del(url(member.user.id));
    expect(leave.status).toBe(200);
    expect(leave.body).toEqual({ id: member.user.id, deleted: true });
    expect((await member.api.get(`/v1/workspaces/${ws.id}`)).status).toBe(404);
    expect((await member.api.get('/v1/workspaces')).body.data).toEqual([]);
    expect((await viewer.api.del(url(viewer.user.id))).status).toBe(200);
    expect((await admin2.api.del(url(admin2.user.id))).status).toBe(200);

    // Managers removing others.
    expect((await admin.api.del(url(extra.id))).status).toBe(200);
    expect((await owner.api.del(url(admin.user.id))).status).toBe(200);
    expect((await admin.api.get(`/v1/workspaces/${ws.id}`)).status).toBe(404);

    expect((await members(ws.id)).map((m) => m.user_id)).toEqual([owner.user.id]);
    expect((await owner.api.del(url(extra.id))).status).toBe(404);
  });

  it('member lists are paginated newest first, without duplicates or gaps', async () => {
    const owner = await signUp(app);
    const ws = await createWorkspace(owner.api);
    const added: string[] = [];
    for (let i = 0; i < 5; i++) {
      const u = await makeUser(app);
      const res = await owner.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: u.id, role: i % 2 ? 'viewer' : 'member' });
      expect(res.status).toBe(201);
      added.push(u.id);
    }
    const expected = [...added].reverse().concat(owner.user.id);

    for (const api of [owner.api, svc]) {
      const seen: Array<{ user_id: string; joined_at: string }> = [];
      const sizes: number[] = [];
      let cursor: string | null = null;
      for (let guard = 0; guard < 10; guard++) {
        const res: { status: number; body: Json } = await api.get(
          `/v1/workspaces/${ws.id}/members?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        );
        expect(res.status).toBe(200);
        sizes.push(res.body.data.length);
        seen.push(...res.body.data);
        cursor = res.body.next_cursor;
        if (cursor === null) break;
      }
      expect(cursor).toBeNull();
      expect(sizes).toEqual([2, 2, 2]);
      expect(seen.map((m) => m.user_id)).toEqual(expected);
      for (let i = 1; i < seen.length; i++) {
        expect(Date.parse(must(seen[i - 1], 'seen[i - 1]').joined_at)).toBeGreaterThanOrEqual(Date.parse(must(seen[i], 'seen[i]').joined_at));
      }
    }
  });

  it('API-key scopes apply to workspaces', async () => {
    const u = await makeUser(app);
    const reader = await makeApiKey(app, u.id, { name: 'ws-read', scopes: ['workspaces:read'] });
    const writer = await makeApiKey(app, u.id, { name: 'ws-write', scopes: ['workspaces:write'] });
    const denied = await client(app.server, reader.key).post('/v1/workspaces', { name: 'Via reader' });
    expect(denied.status).toBe(403);
    const made = await client(app.server, writer.key).post('/v1/workspaces', { name: 'Via writer' });
    expect(made.status).toBe(201);
    expect(made.body.owner_id).toBe(u.id);
    const listed = await client(app.server, reader.key).get('/v1/workspaces');
    expect(listed.body.data.map((w: { id: string }) => w.id)).toEqual([made.body.id]);
  });

  it('co-members can see each other\'s user rows in SQL, but GET /v1/users/:id stays self-only (403)', async () => {
    const a = await signUp(app);
    const b = await signUp(app);
    const c = await signUp(app);
    const ws = await createWorkspace(a.api);
    expect((await a.api.post(`/v1/workspaces/${ws.id}/members`, { user_id: b.user.id, role: 'viewer' })).status).toBe(201);

    const asUser = (userId: string): Principal => ({
      kind: 'user', userId, email: null, via: 'jwt', keyId: null, scopes: ['*'], sessionId: null,
    });
    const visible = async (viewerId: string) =>
      app.database.db.transaction().execute(async (trx) => {
        await setRequestRole(trx, asUser(viewerId));
        const rows = await trx.selectFrom('users').select('id').where('id', 'in', [a.user.id, b.user.id, c.user.id]).execute();
        return rows.map((r) => r.id).sort();
      });
    // Row-level security: co-members see each other; a stranger sees only themself.
    expect(await visible(a.user.id)).toEqual([a.user.id, b.user.id].sort());
    expect(await visible(b.user.id)).toEqual([a.user.id, b.user.id].sort());
    expect(await visible(c.user.id)).toEqual([c.user.id]);

    // The API is stricter: a user reads only their own user row.
    for (const [who, other] of [[a, b], [b, a], [c, a]] as const) {
      const res = await who.api.get(`/v1/users/${other.user.id}`);
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('forbidden');
    }
    expect((await a.api.get(`/v1/users/${a.user.id}`)).status).toBe(200);
  });
});
