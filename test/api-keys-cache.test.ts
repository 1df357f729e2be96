import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, createTwoApps, TARGET, type TestApp } from './support/harness.js';

/**
 * A resolved API key is kept in process (docs/auth.md, "API key cache"): what Tally itself changes
 * — a revoke, a user disabled — shows at once, in this process and (PostgreSQL) in the others;
 * a change made by hand in SQL within TALLY_KEY_CACHE_MS (10 s); an expiry on time.
 */
describe(`API key cache (${TARGET})`, () => {
  let app: TestApp;
  let svc: ReturnType<typeof client>;
  // Starts at the real time: the database checks an expiry by its own clock when it reads a key.
  let now = new Date();
  const later = (ms: number) => (now = new Date(now.getTime() + ms));
  const t = (name: string) => sql.table(`${app.database.schema}.${name}`);
  const newKey = async (body: Record<string, unknown> = {}) => {
    const u = await makeUser(app);
    const res = await svc.post(`/v1/users/${u.id}/api-keys`, { name: 'cache', ...body });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return { userId: u.id, id: res.body.id as string, key: res.body.key as string };
  };
  const status = async (key: string) => (await client(app.server, key).get('/v1/me')).status;

  beforeAll(async () => {
    app = await createTestApp({}, { clock: () => now });
    svc = client(app.server, app.serviceKey);
  });
  afterAll(async () => {
    await app.close();
  });

  it("a revoke or a disabled user through Tally's API refuses the key at once", async () => {
    const a = await newKey();
    expect(await status(a.key)).toBe(200);
    expect(await status(a.key)).toBe(200); // now served from memory
    expect((await svc.del(`/v1/api-keys/${a.id}`)).status).toBeLessThan(300);
    expect(await status(a.key)).toBe(401);

    const b = await newKey();
    expect(await status(b.key)).toBe(200);
    expect((await svc.patch(`/v1/users/${b.userId}`, { is_active: false })).status).toBe(200);
    expect(await status(b.key)).toBe(401);
  });

  it('a key revoked by hand in SQL is refused within the time limit, and an expiry applies while cached', async () => {
    const a = await newKey();
    expect(await status(a.key)).toBe(200);
    // Nobody announced this write: the kept key is served until it is 10 s old.
    await sql`update ${t('api_keys')} set revoked_at = now() where id = ${a.id}`.execute(app.database.db);
    later(4_000);
    expect(await status(a.key)).toBe(200);
    later(7_000);
    expect(await status(a.key)).toBe(401);

    const soon = new Date(now.getTime() + 60_000);
    const b = await newKey({ expires_at: new Date(now.getTime() + 3_600_000).toISOString() });
    await sql`update ${t('api_keys')} set expires_at = ${soon} where id = ${b.id}`.execute(app.database.db);
    later(11_000); // any earlier copy has aged out: the next use loads the new expiry
    expect(await status(b.key)).toBe(200);
    later(60_000); // past `soon` by the app's clock, while the copy is still young enough to serve
    expect(await status(b.key)).toBe(401);
  });

  it('an unknown key is never kept: a stranger spraying keys fills nothing', async () => {
    for (let i = 0; i < 5; i++) expect(await status(`tly_${'0'.repeat(40)}${i}`)).toBe(401);
    const a = await newKey();
    expect(await status(a.key)).toBe(200);
  });
});

/** Two apps on one PostgreSQL database stand for two Tally processes (the bus: LISTEN/NOTIFY). */
describe.skipIf(TARGET === 'pglite')(`API key cache across processes (${TARGET})`, () => {
  let pair: Awaited<ReturnType<typeof createTwoApps>>;
  let one: App;
  let two: App;
  const now = new Date('2026-05-01T10:00:00.000Z'); // frozen: nothing ages out here

  beforeAll(async () => {
    pair = await createTwoApps({}, () => now);
    [one, two] = pair.apps;
  });
  afterAll(async () => {
    await pair.close();
  });

  it("one process's revoke refuses the key in the other within milliseconds", async () => {
    const svcTwo = client(two.server, two.config.auth.serviceKey);
    const u = await svcTwo.post('/v1/users', { email: `kc_${Date.now()}@example.com` });
    const made = await svcTwo.post(`/v1/users/${u.body.id}/api-keys`, { name: 'x' });
    expect(made.status).toBe(201);
    const me = async () => (await client(one.server, made.body.key).get('/v1/me')).status;
    expect(await me()).toBe(200);
    expect(await me()).toBe(200); // kept by process one
    expect((await svcTwo.del(`/v1/api-keys/${made.body.id}`)).status).toBeLessThan(300);
    let seen = 0;
    for (let i = 0; i < 100 && seen !== 401; i++) {
      seen = await me();
      if (seen !== 401) await new Promise((r) => setTimeout(r, 20));
    }
    expect(seen).toBe(401);
  });
});
