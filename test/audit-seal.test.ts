import { randomBytes } from 'node:crypto';
import { type Kysely, sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../src/db/database.types.js';
import { client, type Json } from './support/client.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * Inserts and deletes captured once per statement (migration 0056): the same rows the row trigger
 * wrote, in the statement's order, for many rows or for none.
 */
describe(`audit capture: one pass a statement (${TARGET})`, () => {
  let app: TestApp;
  const t = (name: string) => sql.table(`${app.database.schema}.${name}`);
  const svc = () => client(app.server, app.serviceKey);

  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  interface Row {
    seq: number;
    action: string;
    target_table: string;
    target_id: string;
    before: Json;
    after: Json;
    actor_kind: string;
    actor_id: string | null;
    request_id: string | null;
  }
  const rowsFor = async (ids: string[]): Promise<Row[]> =>
    (
      await sql<Row>`select seq::int as seq, action, target_table, target_id, before, after, actor_kind, actor_id, request_id
        from ${t('audit_log')} where target_id = any(${ids}) order by seq`.execute(app.database.db)
    ).rows;

  it('one statement of many rows: a row each, in the statement order, images without noise, secrets redacted, actor and request of the transaction', async () => {
    const p = `cap-${randomBytes(4).toString('hex')}`;
    const ids = Array.from({ length: 40 }, (_, i) => `usr_${p}_${String(i).padStart(2, '0')}`);
    await app.database.db.transaction().execute(async (trx) => {
      await sql`select set_config('tally.actor', ${JSON.stringify({ kind: 'user', id: 'usr_someone', api_key_id: 'key_1' })}, true), set_config('tally.request_id', ${`req-${p}`}, true)`.execute(trx);
      await sql`insert into ${t('users')} (id, email, name, password_hash, last_login_at)
        select id, id || '@example.com', 'Name ' || id, case when right(id, 1) = '0' then 'secret-hash' end, now()
        from unnest(${ids}::text[]) with ordinality as u(id, n) order by n`.execute(trx);
      // No row changed: no audit row.
      await sql`insert into ${t('users')} (id, email) values (${ids[0]}, 'dupe@example.com') on conflict (id) do nothing`.execute(trx);
      await sql`delete from ${t('users')} where id = 'usr_nobody'`.execute(trx);
    });
    const rows = await rowsFor(ids);
    expect(rows.map((r) => r.target_id)).toEqual(ids);
    for (const r of rows) {
      expect(r).toMatchObject({ action: 'user.created', target_table: 'users', before: null, actor_kind: 'user', actor_id: 'usr_someone', request_id: `req-${p}` });
      expect(r.after).toMatchObject({ id: r.target_id, email: `${r.target_id}@example.com` });
      expect(r.after).not.toHaveProperty('updated_at');
      expect(r.after).not.toHaveProperty('last_login_at');
      expect(r.after.password_hash).toBe(r.target_id.endsWith('0') ? '[redacted]' : null);
    }
    expect(JSON.stringify(rows)).not.toContain('secret-hash');
    expect((await svc().get('/v1/audit/verify')).body).toMatchObject({ ok: true, problems: [] });
  });

  it("a delete is captured with its before-image, and a cascade's rows too (keys deleted with their user); composite keys join with ':'", async () => {
    const p = randomBytes(4).toString('hex');
    const user = `usr_del_${p}`;
    const keys = [`key_${p}_a`, `key_${p}_b`];
    const ws = `wsp_${p}`;
    await sql`insert into ${t('users')} (id, email) values (${user}, ${`${user}@example.com`})`.execute(app.database.db);
    await sql`insert into ${t('api_keys')} (id, user_id, name, prefix, key_hash)
      select k, ${user}, 'k', 'tly_x', encode(sha256(convert_to(k, 'UTF8')), 'hex') from unnest(${keys}::text[]) k`.execute(app.database.db);
    await sql`insert into ${t('workspaces')} (id, name, slug, owner_id) values (${ws}, 'W', ${`w-${p}`}, ${user})`.execute(app.database.db);
    await sql`insert into ${t('workspace_members')} (workspace_id, user_id, role) values (${ws}, ${user}, 'owner')`.execute(app.database.db);
    await sql`delete from ${t('workspace_members')} where workspace_id = ${ws}`.execute(app.database.db);
    await sql`delete from ${t('workspaces')} where id = ${ws}`.execute(app.database.db);
    await sql`delete from ${t('users')} where id = ${user}`.execute(app.database.db);
    const rows = await rowsFor([user, ...keys, ws, `${ws}:${user}`]);
    const actions = rows.map((r) => `${r.action} ${r.target_id}`);
    expect(actions.slice(0, 6)).toEqual([`user.created ${user}`, `api_key.created ${keys[0]}`, `api_key.created ${keys[1]}`, `workspace.created ${ws}`, `workspace_member.added ${ws}:${user}`, `workspace_member.removed ${ws}:${user}`]);
    expect(actions.slice(6).sort()).toEqual([`api_key.deleted ${keys[0]}`, `api_key.deleted ${keys[1]}`, `user.deleted ${user}`, `workspace.deleted ${ws}`].sort());
    const gone = rows.find((r) => r.action === 'api_key.deleted');
    expect(gone).toMatchObject({ after: null, before: { user_id: user, key_hash: '[redacted]' } });
    expect(gone?.before).not.toHaveProperty('request_count');
    expect((await svc().get('/v1/audit/verify')).body).toMatchObject({ ok: true, problems: [] });
  });
});

/**
 * The audit seal (migration 0055, docs/audit.md "Immutable, and tamper-evident"): a transaction's
 * audit rows are sealed in one pass at commit — in the order they were written, right after the
 * chain's head, the head moved once — and the chain stays exactly what `verify` checks: seq without
 * gaps, each prev_hash the previous hash, each hash the row's digest. Rolled-back rows (a whole
 * transaction or a savepoint) leave no row and no gap; rows of transactions committing
 * concurrently queue at commit; a row someone committed unsealed with the triggers off stays
 * unsealed (a later transaction never seals it for them).
 */
describe(`audit seal: a transaction's rows in one pass (${TARGET})`, () => {
  let app: TestApp;
  const t = (name: string) => sql.table(`${app.database.schema}.${name}`);
  const svc = () => client(app.server, app.serviceKey);
  const tag = () => randomBytes(6).toString('hex');

  /** Writes one audit row as the ledger does (the owning role, straight into audit_log). */
  async function write(db: Kysely<DB> | Transaction<DB>, targetId: string): Promise<void> {
    await sql`insert into ${t('audit_log')} (id, actor_kind, action, target_table, target_id, after)
      values (${`aud_${randomBytes(16).toString('hex')}`}, 'system', 'credits.granted', 'credit_ledger', ${targetId}, ${JSON.stringify({ note: targetId })}::jsonb)`.execute(db);
  }

  interface Link {
    seq: number | null;
    target_id: string;
    prev_hash: string | null;
    hash: string | null;
    digest: string;
    sealer: string | null;
    ord: number | null;
  }

  /** The rows whose target ids start with `prefix`, in chain order, with each hash recomputed. */
  async function links(prefix: string): Promise<Link[]> {
    const digest = sql.raw(`"${app.database.schema}".audit_log_digest(a)`);
    return (
      await sql<Link>`select a.seq::int as seq, a.target_id, a.prev_hash, a.hash, ${digest} as digest, a.sealer::text as sealer, a.ord::int as ord
        from ${t('audit_log')} a where a.target_id like ${`${prefix}%`} order by a.seq nulls last, a.target_id`.execute(app.database.db)
    ).rows;
  }

  async function head(): Promise<{ last_seq: number; last_hash: string }> {
    const [h] = (await sql<{ last_seq: number; last_hash: string }>`select last_seq::int as last_seq, last_hash from ${t('audit_chain')}`.execute(app.database.db)).rows;
    if (!h) throw new Error('no chain head');
    return h;
  }

  /** The hash of the row at `seq` ('' before the first). */
  async function hashAt(seq: number): Promise<string> {
    if (seq === 0) return '';
    const [r] = (await sql<{ hash: string }>`select hash from ${t('audit_log')} where seq = ${seq}`.execute(app.database.db)).rows;
    return r?.hash ?? 'missing';
  }

  /** Every row of the run is sealed, consecutive from `from`, linked, hashed, and carries no pending marks. */
  async function expectChained(rows: Link[], from: number): Promise<void> {
    let prev = await hashAt(from - 1);
    rows.forEach((r, i) => {
      expect(r.seq).toBe(from + i);
      expect(r.prev_hash).toBe(prev);
      expect(r.hash).toBe(r.digest);
      expect(r.sealer).toBeNull();
      expect(r.ord).toBeNull();
      prev = r.hash as string;
    });
  }

  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('a transaction of many rows is sealed in the order written, after the head, and moves the head once by their count', async () => {
    const p = `seal-many-${tag()}-`;
    const before = await head();
    await app.database.db.transaction().execute(async (trx) => {
      for (let i = 0; i < 25; i++) await write(trx, `${p}${String(i).padStart(3, '0')}`);
      // Set-based, as an import batch writes: one statement, many rows.
      await sql`insert into ${t('audit_log')} (id, actor_kind, action, target_table, target_id)
        select 'aud_' || md5(${p} || i), 'system', 'user.created', 'users', ${p} || lpad(i::text, 3, '0')
        from generate_series(25, 224) i`.execute(trx);
      // Unsealed until the commit, and listed nowhere.
      const pending = (await sql<{ n: number }>`select count(*)::int as n from ${t('audit_log')} where target_id like ${`${p}%`} and seq is null`.execute(trx)).rows[0]?.n;
      expect(pending).toBe(225);
    });
    const rows = await links(p);
    expect(rows.map((r) => r.target_id)).toEqual(Array.from({ length: 225 }, (_, i) => `${p}${String(i).padStart(3, '0')}`));
    await expectChained(rows, before.last_seq + 1);
    const after = await head();
    expect(after).toEqual({ last_seq: before.last_seq + 225, last_hash: rows.at(-1)?.hash });
    expect((await svc().get('/v1/audit/verify')).body).toMatchObject({ ok: true, problems: [], last_seq: after.last_seq });
  });

  it('a rolled-back transaction leaves no row and no gap; a rolled-back savepoint drops only its rows', async () => {
    const p = `seal-rb-${tag()}-`;
    const before = await head();
    await expect(
      app.database.db.transaction().execute(async (trx) => {
        for (let i = 0; i < 5; i++) await write(trx, `${p}gone-${i}`);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await head()).toEqual(before);
    expect(await links(`${p}gone-`)).toEqual([]);

    await app.database.db.transaction().execute(async (trx) => {
      await write(trx, `${p}a`);
      await sql`savepoint s1`.execute(trx);
      await write(trx, `${p}b-dropped`);
      await sql`rollback to savepoint s1`.execute(trx);
      await sql`savepoint s2`.execute(trx);
      await write(trx, `${p}c`); // written inside a savepoint that is kept: still this transaction's
      await sql`release savepoint s2`.execute(trx);
      await write(trx, `${p}d`);
    });
    const rows = await links(p);
    expect(rows.map((r) => r.target_id)).toEqual([`${p}a`, `${p}c`, `${p}d`]);
    await expectChained(rows, before.last_seq + 1);
    expect((await svc().get('/v1/audit/verify')).body).toMatchObject({ ok: true, problems: [] });
  });

  it('SET CONSTRAINTS ALL IMMEDIATE seals what is written so far; rows written after are sealed at commit, after them', async () => {
    const p = `seal-imm-${tag()}-`;
    const before = await head();
    await app.database.db.transaction().execute(async (trx) => {
      await write(trx, `${p}1`);
      await write(trx, `${p}2`);
      await sql`set constraints all immediate`.execute(trx);
      const sealed = (await sql<{ n: number }>`select count(*)::int as n from ${t('audit_log')} where target_id like ${`${p}%`} and seq is not null`.execute(trx)).rows[0]?.n;
      expect(sealed).toBe(2);
      await sql`set constraints all deferred`.execute(trx);
      await write(trx, `${p}3`);
    });
    const rows = await links(p);
    expect(rows.map((r) => r.target_id)).toEqual([`${p}1`, `${p}2`, `${p}3`]);
    await expectChained(rows, before.last_seq + 1);
  });

  it('a row written with a sealer of its own is sealed with its transaction too', async () => {
    const p = `seal-own-${tag()}-`;
    const before = await head();
    await app.database.db.transaction().execute(async (trx) => {
      await write(trx, `${p}1`);
      await sql`insert into ${t('audit_log')} (id, actor_kind, action, target_table, target_id, sealer)
        values (${`aud_${randomBytes(16).toString('hex')}`}, 'system', 'user.created', 'users', ${`${p}2`}, '1'::xid8)`.execute(trx);
    });
    const rows = await links(p);
    expect(rows.map((r) => r.target_id).sort()).toEqual([`${p}1`, `${p}2`]);
    await expectChained(rows, before.last_seq + 1);
  });

  it.runIf(TARGET === 'postgres')('concurrent transactions queue only at commit: each one sealed whole, in commit order', async () => {
    const p = `seal-conc-${tag()}-`;
    const before = await head();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let firstWrote!: () => void;
    const wrote = new Promise<void>((resolve) => {
      firstWrote = resolve;
    });
    // A writes first but commits last; B writes and commits while A is open: B is not blocked.
    const a = app.database.db.transaction().execute(async (trx) => {
      for (let i = 0; i < 10; i++) await write(trx, `${p}a${i}`);
      firstWrote();
      await gate;
      for (let i = 10; i < 20; i++) await write(trx, `${p}a${i}`);
    });
    await wrote;
    await app.database.db.transaction().execute(async (trx) => {
      for (let i = 0; i < 10; i++) await write(trx, `${p}b${i}`);
    });
    const mid = await links(p);
    expect(mid.filter((r) => r.seq !== null).map((r) => r.target_id)).toEqual(Array.from({ length: 10 }, (_, i) => `${p}b${i}`));
    release();
    await a;
    const rows = await links(p);
    expect(rows.map((r) => r.target_id)).toEqual([...Array.from({ length: 10 }, (_, i) => `${p}b${i}`), ...Array.from({ length: 20 }, (_, i) => `${p}a${i}`)]);
    await expectChained(rows, before.last_seq + 1);
    expect((await svc().get('/v1/audit/verify')).body).toMatchObject({ ok: true, problems: [] });
  });

  it('the head moves only from the seal, forward, onto a sealed row', async () => {
    const h = await head();
    const code = async (fn: () => Promise<unknown>) =>
      fn().then(
        () => 'ok',
        (err: unknown) => (err as { code?: string }).code ?? String(err),
      );
    expect(await code(() => sql`update ${t('audit_chain')} set last_seq = last_seq + 1`.execute(app.database.db))).toBe('42501');
    expect(await code(() => sql`update ${t('audit_chain')} set last_seq = ${h.last_seq + 5}, last_hash = 'x'`.execute(app.database.db))).toBe('42501');
    // Nor can a sealed row be re-sealed, or a pending mark be changed.
    const [sealed] = (await sql<{ id: string }>`select id from ${t('audit_log')} where seq is not null limit 1`.execute(app.database.db)).rows;
    expect(await code(() => sql`update ${t('audit_log')} set sealer = null, ord = null where id = ${sealed?.id}`.execute(app.database.db))).toBe('42501');
    expect(await head()).toEqual(h);
  });

  it('a row committed unsealed (triggers off) is never sealed by a later transaction: verify keeps reporting it', async () => {
    const p = `seal-tamper-${tag()}-`;
    const forged = `aud_${randomBytes(16).toString('hex')}`;
    await app.database.db.transaction().execute(async (trx) => {
      await sql`alter table ${t('audit_log')} disable trigger user`.execute(trx);
      await sql`insert into ${t('audit_log')} (id, actor_kind, action, target_table, target_id) values (${forged}, 'system', 'user.created', 'users', ${`${p}forged`})`.execute(trx);
      await sql`alter table ${t('audit_log')} enable trigger user`.execute(trx);
    });
    const before = await head();
    await app.database.db.transaction().execute(async (trx) => {
      await write(trx, `${p}honest`);
    });
    const rows = await links(p);
    expect(rows.find((r) => r.target_id === `${p}forged`)?.seq).toBeNull();
    await expectChained(
      rows.filter((r) => r.target_id === `${p}honest`),
      before.last_seq + 1,
    );
    const report = (await svc().get('/v1/audit/verify')).body;
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([expect.objectContaining({ id: forged, problem: expect.stringContaining('without a seal') })] as Json[]);
  });
});
