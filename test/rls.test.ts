import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Executor } from '../src/db/database.js';
import { inRequestTransaction } from '../src/db/request-role.js';
import type { Principal } from '../src/core/principal.js';
import { apiKeyInsert, apiKeyRevoke } from '../src/modules/api-keys/api-keys.repository.js';
import { userFindById, userUpdate } from '../src/modules/users/users.repository.js';
import { memberInsert, workspaceFindById, workspaceUpdate } from '../src/modules/workspaces/workspaces.repository.js';
import { client } from './support/client.js';
import { makeApiKey, makeUser } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

/**
 * Row-level security is the second lock. These tests skip the service layer entirely: they call
 * repositories (or plain SQL) inside a transaction whose role and claims are an end user's, as every
 * request's are, and show the database itself refuses what the service layer would have refused.
 */
describe(`row-level security without the service layer (${TARGET})`, () => {
  let app: TestApp;
  let alice: { id: string; email: string };
  let bob: { id: string; email: string };
  let bobKeyId: string;
  let bobWorkspace: string;
  const as = (userId: string): Principal => ({
    kind: 'user', userId, email: null, via: 'jwt', keyId: null, scopes: ['*'], sessionId: null,
  });
  const asAlice = <T>(fn: (trx: Executor) => Promise<T>) => inRequestTransaction(app.database.db, as(alice.id), fn);
  const t = (name: string) => sql.table(`${app.database.schema}.${name}`);

  /** Runs fn and returns the database error code it failed with (or 'ok'). */
  const failure = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
      return 'ok';
    } catch (err) {
      return (err as { code?: string }).code ?? String(err);
    }
  };

  beforeAll(async () => {
    app = await createTestApp();
    alice = await makeUser(app, { name: 'Alice' });
    bob = await makeUser(app, { name: 'Bob' });
    bobKeyId = (await makeApiKey(app, bob.id)).id;
    const ws = await client(app.server, app.serviceKey).post('/v1/workspaces', { name: 'Bob Co', owner_id: bob.id });
    bobWorkspace = ws.body.id;
  });
  afterAll(async () => {
    await app.close();
  });

  it('auth.uid() is the request user, set inside the transaction only', async () => {
    const uid = await asAlice(async (trx) => must((await sql<{ uid: string }>`select auth.uid() as uid`.execute(trx)).rows[0], 'the query returns a row').uid);
    expect(uid).toBe(alice.id);
    const after = await sql<{ uid: string | null }>`select auth.uid() as uid`.execute(app.database.db);
    expect(must(after.rows[0], 'after.rows[0]').uid).toBeNull();
  });

  it("a user cannot read another user's row, even when the service layer thinks it may", async () => {
    expect(await asAlice((trx) => userFindById(trx, bob.id))).toBeUndefined();
    expect(await asAlice((trx) => userFindById(trx, alice.id))).toMatchObject({ id: alice.id });
    // The service layer fooled into treating Alice as the service: the database still says no.
    const viaService = await failure(() => asAlice((trx) => app.services.users.get(trx, { kind: 'service' }, bob.id)));
    expect(viaService).not.toBe('ok');
    const rows = await asAlice(async (trx) => (await sql`select id from ${t('users')}`.execute(trx)).rows);
    expect(rows).toEqual([{ id: alice.id }]);
  });

  it("a user cannot update another user's row", async () => {
    expect(await asAlice((trx) => userUpdate(trx, bob.id, { name: 'pwned' }))).toBeUndefined();
    const bobNow = await userFindById(app.database.db, bob.id);
    expect(bobNow?.name).toBe('Bob');
  });

  it('a user cannot raise their own role, level, status or metadata (column grants)', async () => {
    for (const patch of [{ role: 'admin' }, { level: 99 }, { is_active: false }, { metadata: { vip: true } }, { email: 'new@x.io' }]) {
      expect(await failure(() => asAlice((trx) => userUpdate(trx, alice.id, patch))), JSON.stringify(patch)).toBe('42501');
    }
    expect(await asAlice((trx) => userUpdate(trx, alice.id, { name: 'Alice B.' }))).toMatchObject({ name: 'Alice B.' });
    expect(await userFindById(app.database.db, alice.id)).toMatchObject({ role: 'user', level: 1, is_active: true });
  });

  it('secrets are unreadable: password hashes, key hashes, identity tokens', async () => {
    for (const q of [
      sql`select password_hash from ${t('users')}`,
      sql`select key_hash from ${t('api_keys')}`,
      sql`select access_token_enc, refresh_token_enc from ${t('user_identities')}`,
      sql`select * from ${t('users')}`,
    ]) {
      expect(await failure(() => asAlice((trx) => q.execute(trx)))).toBe('42501');
    }
  });

  it("a user cannot mint or revoke keys on another user's account", async () => {
    const insert = await failure(() =>
      asAlice((trx) =>
        apiKeyInsert(trx, { id: 'key_forged', user_id: bob.id, name: 'x', prefix: 'tly_x', key_hash: 'a'.repeat(64), scopes: ['*'], expires_at: null }),
      ),
    );
    expect(insert).toBe('42501');
    expect(await asAlice((trx) => apiKeyRevoke(trx, bobKeyId))).toBeUndefined();
    const key = await app.database.db.selectFrom('api_keys').select('revoked_at').where('id', '=', bobKeyId).executeTakeFirstOrThrow();
    expect(key.revoked_at).toBeNull();
    // Nor reset their own usage counters or budget.
    const mine = (await makeApiKey(app, alice.id)).id;
    expect(
      await failure(() => asAlice((trx) => trx.updateTable('api_keys').set({ request_count: 0 }).where('id', '=', mine).execute())),
    ).toBe('42501');
  });

  it("a user cannot see, edit or join another's workspace", async () => {
    expect(await asAlice((trx) => workspaceFindById(trx, bobWorkspace))).toBeUndefined();
    expect(await asAlice((trx) => workspaceUpdate(trx, bobWorkspace, { name: 'pwned' }))).toBeUndefined();
    for (const role of ['owner', 'admin', 'member'] as const) {
      const joined = await failure(() =>
        asAlice((trx) => memberInsert(trx, { workspace_id: bobWorkspace, user_id: alice.id, role, invited_by: null })),
      );
      expect(joined, role).toBe('42501');
    }
    const ws = await workspaceFindById(app.database.db, bobWorkspace);
    expect(ws?.name).toBe('Bob Co');
  });

  it('a member sees co-members but cannot promote themselves', async () => {
    await memberInsert(app.database.db, { workspace_id: bobWorkspace, user_id: alice.id, role: 'viewer', invited_by: bob.id });
    expect(await asAlice((trx) => workspaceFindById(trx, bobWorkspace))).toMatchObject({ id: bobWorkspace });
    const roster = await asAlice(async (trx) => (await sql`select user_id from ${t('workspace_members')} order by user_id`.execute(trx)).rows);
    expect(roster).toHaveLength(2);
    const promoted = await asAlice(async (trx) =>
      trx.updateTable('workspace_members').set({ role: 'admin' }).where('user_id', '=', alice.id).executeTakeFirst(),
    );
    expect(promoted.numUpdatedRows).toBe(0n);
    const stillViewer = await app.database.db.selectFrom('workspace_members').select('role').where('user_id', '=', alice.id).executeTakeFirstOrThrow();
    expect(stillViewer.role).toBe('viewer');
  });

  it('anonymous requests see nothing', async () => {
    const anon = await failure(() =>
      inRequestTransaction(app.database.db, { kind: 'anon' }, (trx) => sql`select id from ${t('users')}`.execute(trx)),
    );
    expect(anon).toBe('42501');
  });

  it('no function in the schema is executable by anon, and authenticated gets only the allowlist', async () => {
    const allowed = ['is_workspace_member', 'shares_workspace_with', 'workspace_role_of'];
    const fns = await sql<{ name: string; anon: boolean; authenticated: boolean }>`
      select p.proname as name,
             has_function_privilege('anon', p.oid, 'execute') as anon,
             has_function_privilege('authenticated', p.oid, 'execute') as authenticated
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = ${app.database.schema} order by 1`.execute(app.database.root);
    expect(fns.rows.length).toBeGreaterThan(allowed.length);
    expect(fns.rows.filter((f) => f.anon)).toEqual([]);
    expect(fns.rows.filter((f) => f.authenticated).map((f) => f.name)).toEqual(allowed);
  });

  it('security-definer helpers are not executable by anon', async () => {
    const res = await failure(() =>
      inRequestTransaction(app.database.db, { kind: 'anon' }, (trx) =>
        sql`select ${sql.raw(`"${app.database.schema}"`)}.is_workspace_member('x')`.execute(trx),
      ),
    );
    expect(res).toBe('42501');
  });
});
