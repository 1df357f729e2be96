import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tallyCommand } from './support/cli.js';
import { POSTGRES_URL, TARGET, seededDataDir } from './support/harness.js';
import { createAppBuilderSqlite, fillAppBuilder } from './support/import-source-app-builder.js';

vi.setConfig({ testTimeout: 180_000 });

/**
 * A restore on PostgreSQL by the database's owner, who is no superuser (docs/export.md): no
 * `session_replication_role`; foreign keys on, tables parents first, a self-reference set in a second
 * pass; Tally's triggers off only inside the restore's transaction. The data spans several export
 * pages (keyset paging, a composite key too) and a refresh token whose parent lies a batch later.
 */
describe.skipIf(TARGET !== 'postgres')('tally import --from <export> as a non-superuser owner (postgres)', () => {
  const tag = randomBytes(4).toString('hex');
  const role = `t_owner_${tag}`;
  const dbName = `t_restore_${tag}`;
  const sourceSchema = `t_exp_src_${tag}`;
  // Made in beforeAll: on PGlite the suite is skipped, and its body still runs.
  let tmp = '';
  let ownerUrl = '';
  let dirA = '';
  let admin: pg.Client;
  let cli: string[] = [];
  const run = (databaseUrl: string, schema: string, ...args: string[]) => {
    const env = { ...process.env, TALLY_DATA_DIR: seededDataDir(tmp, 'd-'), TALLY_DB_SCHEMA: schema, LOG_LEVEL: 'silent', DATABASE_URL: databaseUrl, NODE_ENV: 'development' };
    const res = spawnSync(process.execPath, [...cli, ...args], { env, encoding: 'utf8', cwd: join(import.meta.dirname, '..'), timeout: 150_000 });
    return { code: res.status, out: res.stdout, err: res.stderr };
  };

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'tally-restore-owner-'));
    ownerUrl = Object.assign(new URL(POSTGRES_URL), { username: role, password: '', pathname: `/${dbName}` }).toString();
    dirA = join(tmp, 'export-a');
    cli = await tallyCommand();
    admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    const file = join(tmp, 'cc.db');
    const lite = await createAppBuilderSqlite(file);
    await fillAppBuilder(lite.insert, 6);
    lite.close();
    const imported = run(POSTGRES_URL, sourceSchema, 'import', '--from', file, '--json');
    expect(imported.code, imported.err.slice(-3000)).toBe(0);
    // More than one export page (1000 rows) in users, workspace_members (a two-column key) and the
    // audit rows they make; refresh tokens whose first points at the last (a later restore batch).
    const s = sourceSchema;
    await admin.query(`insert into ${s}.users (id, email) select 'usr_bulk_' || lpad(i::text, 5, '0'), 'bulk' || i || '@example.com' from generate_series(1, 2500) i`);
    await admin.query(`insert into ${s}.workspaces (id, name, slug, owner_id) values ('ws_bulk', 'Bulk', 'bulk', 'usr_bulk_00001')`);
    await admin.query(`insert into ${s}.workspace_members (workspace_id, user_id, role) select 'ws_bulk', 'usr_bulk_' || lpad(i::text, 5, '0'), 'member' from generate_series(2, 2500) i`);
    await admin.query(`insert into ${s}.user_sessions (id, user_id, expires_at) values ('ses_bulk', 'usr_bulk_00001', now() + interval '1 day')`);
    await admin.query(
      `insert into ${s}.refresh_tokens (id, session_id, user_id, token_hash, parent_id, expires_at)
       select 'rt_' || lpad(i::text, 4, '0'), 'ses_bulk', 'usr_bulk_00001', encode(sha256(i::text::bytea), 'hex'),
              case when i = 1 then 'rt_0700' when i > 1 and i < 700 then 'rt_' || lpad((i - 1)::text, 4, '0') end, now() + interval '1 day'
       from generate_series(1, 700) i`,
    );
    const exported = run(POSTGRES_URL, sourceSchema, 'export', '--to', dirA);
    expect(exported.code, exported.err.slice(-3000)).toBe(0);
    await admin.query(`create role ${role} login nosuperuser nocreatedb nocreaterole`);
    await admin.query(`create database ${dbName} owner ${role}`);
  }, 300_000);
  afterAll(async () => {
    await admin.query(`drop database if exists ${dbName} with (force)`);
    await admin.query(`drop role if exists ${role}`);
    await admin.query(`drop schema if exists ${sourceSchema} cascade`);
    await admin.end();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('restores exactly as the owner of a fresh database, leaves every trigger on, and the append-only tables stay append-only', async () => {
    const owner = new pg.Client({ connectionString: ownerUrl });
    await owner.connect();
    try {
      // The old path's setting is out of this role's reach.
      await expect(owner.query('set session_replication_role = replica')).rejects.toThrow(/permission denied/);
      const restored = run(ownerUrl, 'tally', 'import', '--from', dirA, '--json');
      expect(restored.code, restored.err.slice(-3000)).toBe(0);
      expect((JSON.parse(restored.out) as { reconcile: { ok: boolean } }).reconcile.ok).toBe(true);
      const audit = run(ownerUrl, 'tally', 'audit', 'verify');
      expect(audit.code, audit.out + audit.err.slice(-2000)).toBe(0);

      const dirB = join(tmp, 'export-b');
      expect(run(ownerUrl, 'tally', 'export', '--to', dirB).code).toBe(0);
      const files = readdirSync(dirA).filter((f) => f.endsWith('.jsonl')).sort();
      expect(readdirSync(dirB).filter((f) => f.endsWith('.jsonl')).sort()).toEqual(files);
      expect(files.filter((f) => readFileSync(join(dirA, f), 'utf8') !== readFileSync(join(dirB, f), 'utf8'))).toEqual([]);
      const lines = (f: string) => readFileSync(join(dirB, f), 'utf8').trim().split('\n');
      expect(lines('workspace_members.jsonl')).toHaveLength(2499);
      expect(lines('users.jsonl').length).toBeGreaterThan(2500);
      expect(lines('refresh_tokens.jsonl').find((l) => l.includes('"id":"rt_0001"'))).toContain('"parent_id":"rt_0700"');

      const off = await owner.query(`select c.relname, t.tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'tally' and not t.tgisinternal and t.tgenabled <> 'O'`);
      expect(off.rows).toEqual([]);
      await expect(owner.query(`update tally.credit_ledger set amount = amount where true`)).rejects.toThrow(/append-only/);
      await expect(owner.query(`delete from tally.audit_log where true`)).rejects.toThrow(/audit_log is append-only/);
      await expect(owner.query(`select count(*) from tally.refresh_tokens where parent_id is not null`)).resolves.toMatchObject({ rows: [{ count: '699' }] });
    } finally {
      await owner.end();
    }
  });
});
