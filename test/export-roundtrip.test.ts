import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Database, openDatabase } from '../src/db/database.js';
import type { ExportManifest } from '../src/modules/export/export.js';
import { tallyCommand } from './support/cli.js';
import { POSTGRES_URL, TARGET, seededDataDir } from './support/harness.js';
import { type AppBuilderFixture, createAppBuilderSqlite, fillAppBuilder } from './support/import-source-app-builder.js';

vi.setConfig({ testTimeout: 180_000 });

type Target = { dataDir: string; schema: string };

/**
 * `tally export` then `tally import --from <export>` into an empty database (docs/export.md): the
 * restored database exports to the same bytes, table by table, and its ledger reconciles. The data is
 * a real one: seed 000's cc.db imported (accounts, opening entries over grants with classes and
 * expiries, plans, subscriptions, guards, history, the import's own bookkeeping, audit rows).
 */
describe(`tally export → import round trip (${TARGET})`, () => {
  let cli: string[] = [];
  let fixture: AppBuilderFixture;
  const tmp = mkdtempSync(join(tmpdir(), 'tally-export-'));
  const targets: Target[] = [];
  const newTarget = (): Target => {
    const t = { dataDir: seededDataDir(tmp, 't-'), schema: `t_exp_${randomBytes(4).toString('hex')}` };
    targets.push(t);
    return t;
  };
  const run = (t: Target, ...args: string[]) => {
    const env = { ...process.env, TALLY_DATA_DIR: t.dataDir, TALLY_DB_SCHEMA: t.schema, LOG_LEVEL: 'silent', DATABASE_URL: TARGET === 'postgres' ? POSTGRES_URL : '', NODE_ENV: 'development' };
    const res = spawnSync(process.execPath, [...cli, ...args], { env, encoding: 'utf8', cwd: join(import.meta.dirname, '..'), timeout: 120_000 });
    return { code: res.status, out: res.stdout, err: res.stderr };
  };
  const openTarget = (t: Target): Promise<Database> =>
    TARGET === 'postgres'
      ? openDatabase({ kind: 'postgres', url: POSTGRES_URL, poolMax: 2, schema: t.schema })
      : openDatabase({ kind: 'pglite', dataDir: join(t.dataDir, 'pgdata'), schema: t.schema });
  const balancesIn = async (t: Target) => {
    const db = await openTarget(t);
    try {
      const rows = (await sql.raw<{ user_id: string; balance: number }>(`select user_id, balance from ${t.schema}.credit_accounts`).execute(db.root)).rows;
      return new Map(rows.map((r) => [r.user_id, Number(r.balance)]));
    } finally {
      await db.close();
    }
  };
  let source: Target;
  let dirA: string;

  beforeAll(async () => {
    cli = await tallyCommand();
    const file = join(tmp, 'cc.db');
    const lite = await createAppBuilderSqlite(file);
    fixture = await fillAppBuilder(lite.insert, 12);
    lite.close();
    source = newTarget();
    const imported = run(source, 'import', '--from', file, '--json');
    expect(imported.code, imported.err.slice(-3000)).toBe(0);
    dirA = join(tmp, 'export-a');
    const exported = run(source, 'export', '--to', dirA);
    expect(exported.code, exported.err.slice(-3000)).toBe(0);
    expect(exported.out).toMatch(/^exported \d+ rows of \d+ tables to .* \(format tally-export v1, migrations up to /);
  }, 300_000);
  afterAll(async () => {
    for (const t of targets) {
      if (TARGET === 'postgres') {
        const db = await openTarget(t);
        await db.root.schema.dropSchema(t.schema).ifExists().cascade().execute();
        await db.close();
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  it('restores into an empty database exactly: the same rows, byte for byte, every table; balances equal; reconcile clean', async () => {
    const manifest = JSON.parse(readFileSync(join(dirA, 'manifest.json'), 'utf8')) as ExportManifest;
    expect(manifest).toMatchObject({ format: 'tally-export', version: 1 });
    const rowsOf = (name: string) => manifest.tables.find((t) => t.name === name)?.rows ?? 0;
    expect(rowsOf('users')).toBe(fixture.balances.size);
    expect(rowsOf('credit_grants')).toBeGreaterThan(fixture.balances.size);
    expect(rowsOf('tally_migrations')).toBe(0);
    expect(manifest.tables.some((t) => t.name === 'tally_migrations')).toBe(false);

    const target = newTarget();
    const restored = run(target, 'import', '--from', dirA, '--json');
    expect(restored.code, restored.err.slice(-3000)).toBe(0);
    const report = JSON.parse(restored.out) as { tables: { name: string; rows: number }[]; reconcile: { ok: boolean } };
    expect(report.reconcile.ok).toBe(true);
    expect(report.tables).toEqual(manifest.tables.map((t) => ({ name: t.name, rows: t.rows })));
    expect(await balancesIn(target)).toEqual(fixture.balances);
    expect(run(target, 'reconcile').code).toBe(0);
    // The audit log's hash chain came over whole: it verifies in the restored database.
    const audit = run(target, 'audit', 'verify');
    expect(audit.code, audit.out + audit.err.slice(-2000)).toBe(0);

    const dirB = join(tmp, 'export-b');
    expect(run(target, 'export', '--to', dirB).code).toBe(0);
    const files = readdirSync(dirA).filter((f) => f.endsWith('.jsonl')).sort();
    expect(readdirSync(dirB).filter((f) => f.endsWith('.jsonl')).sort()).toEqual(files);
    const differing = files.filter((f) => readFileSync(join(dirA, f), 'utf8') !== readFileSync(join(dirB, f), 'utf8'));
    expect(differing).toEqual([]);
    const again = JSON.parse(readFileSync(join(dirB, 'manifest.json'), 'utf8')) as ExportManifest;
    expect({ ...again, exported_at: '' }).toEqual({ ...manifest, exported_at: '' });
  });

  it('refuses a database that is not empty, and an export of another format version, restoring nothing', async () => {
    expect(run(source, 'import', '--from', dirA).err).toMatch(/this database is not empty \(users has rows\): an export restores into an empty one only/);
    const other = join(tmp, 'export-v2');
    cpSync(dirA, other, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(other, 'manifest.json'), 'utf8')) as ExportManifest;
    writeFileSync(join(other, 'manifest.json'), JSON.stringify({ ...manifest, version: 2 }));
    const target = newTarget();
    const res = run(target, 'import', '--from', other);
    expect(res.code).toBe(1);
    expect(res.err).toMatch(/export format version 2; this Tally reads version 1/);
    expect((await balancesIn(target)).size).toBe(0);
  });
});
