import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createTestApp, createTestDb, TARGET } from './support/harness.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { pglitePoolStats } from './support/pglite-pool.js';

/**
 * The worker's pool of PGlite databases (test/support/pglite-pool.ts) hands the next file a
 * database exactly as the snapshot holds it: a reused one must be indistinguishable from a fresh
 * one, and one whose catalog a file changed must never be reused.
 */
describe.skipIf(TARGET !== 'pglite')('pglite pool', () => {
  /** Every row of every table (and the sequences), digested: the whole state a test could see. */
  const stateOf = async (db: Awaited<ReturnType<typeof createTestDb>>) => {
    const root = db.database.root;
    const tables = await sql<{ t: string }>`
      select c.oid::regclass::text as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and n.nspname in ('tally', 'auth', 'public') order by 1`.execute(root);
    const out: Record<string, string> = {};
    for (const { t } of tables.rows) {
      const r = await sql<{ d: string | null }>`select md5(string_agg(x::text, ',' order by x::text)) as d from ${sql.raw(t)} x`.execute(root);
      out[t] = r.rows[0]?.d ?? 'empty';
    }
    const seq = await sql<{ v: string }>`select last_value::text || is_called::text as v from tally.storage_deletions_id_seq`.execute(root);
    out['seq'] = seq.rows[0]?.v ?? '';
    const role = await sql<{ r: string }>`select current_user || ':' || current_setting('search_path') as r`.execute(root);
    out['session'] = role.rows[0]?.r ?? '';
    return out;
  };

  it('gives back a written-to database exactly as fresh, and reuses it', async () => {
    const first = await createTestDb();
    const fresh = await stateOf(first);
    await first.close();

    // A whole app's worth of writes: a user, credits, an API key, the audit log's chained rows.
    const app = await createTestApp();
    const svc = client(app.server, app.serviceKey);
    const user = await makeUser(app);
    const grant = await svc.post('/v1/credits/grant', { user_id: user.id, amount: 50, reason: 'purchase' }, { idempotencyKey: 'pool-grant-1' });
    expect(grant.status, JSON.stringify(grant.body)).toBe(201);
    expect((await svc.post(`/v1/users/${user.id}/api-keys`, { name: 'pool' })).status).toBeLessThan(300);
    await sql`select setval('tally.storage_deletions_id_seq', 999)`.execute(app.database.root);
    await sql`set search_path = public`.execute(app.database.root);
    const dirty = await stateOf({ database: app.database, close: async () => {} });
    expect(dirty).not.toEqual(fresh);
    const reusedBefore = pglitePoolStats.reused;
    await app.close();

    const again = await createTestDb();
    expect(pglitePoolStats.reused).toBeGreaterThan(reusedBefore);
    expect(await stateOf(again)).toEqual(fresh);
    await again.close();
  });

  it('never reuses a database whose catalog a file changed', async () => {
    for (const change of [
      'create table tally.pool_extra (id int)',
      'alter table tally.audit_log disable trigger audit_log_immutable',
      'create role pool_extra_role',
      'grant select on tally.users to anon',
    ]) {
      const db = await createTestDb();
      await sql.raw(change).execute(db.database.root);
      const discarded = pglitePoolStats.discarded;
      await db.close();
      expect(pglitePoolStats.discarded, change).toBe(discarded + 1);
    }
    const clean = await createTestDb();
    const n = await sql<{ n: number }>`select count(*)::int as n from pg_roles where rolname = 'pool_extra_role'`.execute(clean.database.root);
    expect(n.rows[0]?.n).toBe(0);
    await clean.close();
  });
});
