import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { makeApiKey, makeUser } from './support/fixtures.js';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, balanceOf, fundedKey, type GatewayWorld, gatewayWorld, priceModel } from './support/gateway-fixture.js';

/**
 * Attacker review 5: the in-process API key cache (docs/auth.md, "API key cache"). A key that should
 * no longer work, or work with less, must not — through the HTTP API or the gateway — whether Tally
 * announced the change (every write route) or the announcement never arrived (a process that died
 * between its commit and its NOTIFY, a NOTIFY that failed, the bus down, SQL by hand: stood for here
 * by an UPDATE nobody announces). The gateway moves no credit for such a key, even from the cache.
 */
describe(`attack 5: the API key cache (${TARGET})`, () => {
  let w: GatewayWorld;
  let upstream: { id: string; credential: string };
  // Starts at the real time (the database checks expiries by its own clock); tests move it forward.
  let now = new Date();
  const later = (ms: number) => (now = new Date(now.getTime() + ms));
  const t = (name: string) => sql.table(`${w.app.database.schema}.${name}`);
  const chat = (key: string, body: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
    fetch(`${w.base}/gateway/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ model: 'a5-gpt', messages: [{ role: 'user', content: 'x' }], max_tokens: 2, ...body }),
    });
  const me = async (key: string) => (await client(w.app.server, key).get('/v1/me')).status;
  /** Requests recorded for this user (a hold is taken with its record, or neither). */
  const recorded = async (userId: string) => (await allSettled(w, userId)).length;

  beforeAll(async () => {
    w = await gatewayWorld({}, { clock: () => now });
    await priceModel(w, 'a5-gpt');
    await priceModel(w, 'a5-other');
    upstream = await addUpstream(w, 'openai', { models: ['a5-*'] });
  });
  afterAll(async () => {
    await w.close();
  });

  describe("Tally's own changes refuse a kept key on the next request", () => {
    it('a PATCH of its allow-list or budget', async () => {
      const k = await fundedKey(w, 1000);
      expect((await chat(k.key)).status).toBe(200);
      expect((await chat(k.key)).status).toBe(200); // served from memory
      expect((await w.svc.patch(`/v1/api-keys/${k.keyId}`, { models: ['a5-other'] })).status).toBe(200);
      expect((await chat(k.key)).status).toBe(403);
      expect((await w.svc.patch(`/v1/api-keys/${k.keyId}`, { models: null, credit_budget: 0 })).status).toBe(200);
      expect((await chat(k.key)).status).toBe(402);
      expect(await recorded(k.userId)).toBe(2);
    });

    it('a workspace key whose user left the workspace, or whose workspace was deleted', async () => {
      const owner = await makeUser(w.app);
      const member = await makeUser(w.app);
      const ws = (await w.svc.post('/v1/workspaces', { name: 'a5 pool', owner_id: owner.id })).body.id as string;
      expect((await w.svc.post(`/v1/workspaces/${ws}/members`, { user_id: member.id, role: 'member' })).status).toBe(201);
      expect((await w.svc.post('/v1/credits/grant', { workspace_id: ws, amount: 1000, reason: 'pool' }, { idempotencyKey: `a5-${randomBytes(6).toString('hex')}` })).status).toBe(201);
      const key = await makeApiKey(w.app, member.id, { name: 'pool', workspace_id: ws });
      expect((await chat(key.key)).status).toBe(200);
      expect((await w.svc.del(`/v1/workspaces/${ws}/members/${member.id}`)).status).toBeLessThan(300);
      const after = await chat(key.key);
      expect(after.status).toBeGreaterThanOrEqual(400);
      expect(await recorded(member.id)).toBe(1);

      const empty = (await w.svc.post('/v1/workspaces', { name: 'a5 empty', owner_id: owner.id })).body.id as string;
      const k2 = await makeApiKey(w.app, owner.id, { name: 'gone', workspace_id: empty });
      expect(await me(k2.key)).toBe(200);
      expect((await w.svc.del(`/v1/workspaces/${empty}`)).status).toBeLessThan(300);
      expect(await me(k2.key)).toBe(401); // the key went with its workspace
    });
  });

  describe('a change nobody announced: the gateway still moves no credit', () => {
    it('a key revoked, a user disabled, a scope removed — by SQL — spend nothing through the cache', async () => {
      for (const change of ['revoke', 'disable', 'scope', 'expire'] as const) {
        const k = await fundedKey(w, 1000);
        expect((await chat(k.key)).status).toBe(200); // kept in memory now
        await allSettled(w, k.userId);
        const before = await balanceOf(w, k.userId);
        const hits = w.fake.hits(upstream.credential);
        if (change === 'revoke') await sql`update ${t('api_keys')} set revoked_at = now() where id = ${k.keyId}`.execute(w.app.database.db);
        if (change === 'disable') await sql`update ${t('users')} set is_active = false where id = ${k.userId}`.execute(w.app.database.db);
        if (change === 'scope') await sql`update ${t('api_keys')} set scopes = '{credits:read}' where id = ${k.keyId}`.execute(w.app.database.db);
        if (change === 'expire') await sql`update ${t('api_keys')} set expires_at = now() - interval '1 second' where id = ${k.keyId}`.execute(w.app.database.db);
        for (const headers of [{}, { 'idempotency-key': `a5-${change}` }] as Record<string, string>[]) {
          const res = await chat(k.key, {}, headers);
          expect(res.status, `${change} ${JSON.stringify(headers)}`).toBe(change === 'scope' ? 403 : 401);
        }
        expect(w.fake.hits(upstream.credential), change).toBe(hits);
        expect(await balanceOf(w, k.userId), change).toEqual(before);
        expect(await recorded(k.userId), change).toBe(1);
      }
    });

    it('a budget or an allow-list set by SQL on a kept key applies to its next request', async () => {
      const k = await fundedKey(w, 1000);
      expect((await chat(k.key)).status).toBe(200);
      await sql`update ${t('api_keys')} set models = '{a5-other}' where id = ${k.keyId}`.execute(w.app.database.db);
      expect((await chat(k.key)).status).toBe(403);
      await sql`update ${t('api_keys')} set models = null, credit_budget = 0 where id = ${k.keyId}`.execute(w.app.database.db);
      expect((await chat(k.key)).status).toBe(402);
      expect(await recorded(k.userId)).toBe(1);
    });
  });

  it('a kept key whose background reload finds it revoked is dropped, not served to the end of its life', async () => {
    const u = await makeUser(w.app);
    const k = await makeApiKey(w.app, u.id);
    expect(await me(k.key)).toBe(200);
    await sql`update ${t('api_keys')} set revoked_at = now() where id = ${k.id}`.execute(w.app.database.db);
    later(6_000); // past half of TALLY_KEY_CACHE_MS: served once more, reloaded behind
    expect(await me(k.key)).toBe(200);
    for (let i = 0; i < 50 && (await me(k.key)) === 200; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await me(k.key)).toBe(401); // still 6 s old: without the drop it was served until 10 s
  });
});
