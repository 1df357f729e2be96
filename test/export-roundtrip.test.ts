import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ExportManifest } from '../src/modules/export/export.js';
import { TARGET } from './support/harness.js';
import { type ImportTarget, importHarness } from './support/import-cli.js';
import { type AppBuilderFixture, createAppBuilderSqlite, fillAppBuilder } from './support/import-source-app-builder.js';

vi.setConfig({ testTimeout: 180_000 });

type Target = ImportTarget;

/**
 * `tally export` then `tally import --from <export>` into an empty database (docs/export.md): the
 * restored database exports to the same bytes, table by table, and its ledger reconciles. The data is
 * a real one: seed 000's cc.db imported (accounts, opening entries over grants with classes and
 * expiries, plans, subscriptions, guards, history, the import's own bookkeeping, audit rows).
 */
describe(`tally export → import round trip (${TARGET})`, () => {
  const ih = importHarness('exp');
  const { run, tmp } = ih;
  let fixture: AppBuilderFixture;
  const newTarget = () => ih.newTarget();
  const balancesIn = async (t: Target) =>
    new Map((await ih.q<{ user_id: string; balance: number }>(t, 'select user_id, balance from T.credit_accounts')).map((r) => [r.user_id, Number(r.balance)]));
  let source: Target;
  let dirA: string;

  beforeAll(async () => {
    await ih.start();
    const file = join(tmp, 'cc.db');
    const lite = await createAppBuilderSqlite(file);
    fixture = await fillAppBuilder(lite.insert, 12);
    lite.close();
    source = newTarget();
    const imported = await run(source, 'import', '--from', file, '--json');
    expect(imported.code, imported.err.slice(-3000)).toBe(0);
    dirA = join(tmp, 'export-a');
    const exported = await run(source, 'export', '--to', dirA);
    expect(exported.code, exported.err.slice(-3000)).toBe(0);
    expect(exported.out).toMatch(/^exported \d+ rows of \d+ tables to .* \(format tally-export v1, migrations up to /);
  }, 300_000);
  afterAll(async () => {
    await ih.stop();
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
    const restored = await run(target, 'import', '--from', dirA, '--json');
    expect(restored.code, restored.err.slice(-3000)).toBe(0);
    const report = JSON.parse(restored.out) as { tables: { name: string; rows: number }[]; reconcile: { ok: boolean } };
    expect(report.reconcile.ok).toBe(true);
    expect(report.tables).toEqual(manifest.tables.map((t) => ({ name: t.name, rows: t.rows })));
    expect(await balancesIn(target)).toEqual(fixture.balances);
    expect((await run(target, 'reconcile')).code).toBe(0);
    // The audit log's hash chain came over whole: it verifies in the restored database.
    const audit = await run(target, 'audit', 'verify');
    expect(audit.code, audit.out + audit.err.slice(-2000)).toBe(0);

    const dirB = join(tmp, 'export-b');
    expect((await run(target, 'export', '--to', dirB)).code).toBe(0);
    const files = readdirSync(dirA).filter((f) => f.endsWith('.jsonl')).sort();
    expect(readdirSync(dirB).filter((f) => f.endsWith('.jsonl')).sort()).toEqual(files);
    const differing = files.filter((f) => readFileSync(join(dirA, f), 'utf8') !== readFileSync(join(dirB, f), 'utf8'));
    expect(differing).toEqual([]);
    const again = JSON.parse(readFileSync(join(dirB, 'manifest.json'), 'utf8')) as ExportManifest;
    expect({ ...again, exported_at: '' }).toEqual({ ...manifest, exported_at: '' });
  });

  it('refuses a database that is not empty, and an export of another format version, restoring nothing', async () => {
    expect((await run(source, 'import', '--from', dirA)).err).toMatch(/this database is not empty \(users has rows\): an export restores into an empty one only/);
    const other = join(tmp, 'export-v2');
    cpSync(dirA, other, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(other, 'manifest.json'), 'utf8')) as ExportManifest;
    writeFileSync(join(other, 'manifest.json'), JSON.stringify({ ...manifest, version: 2 }));
    const target = newTarget();
    const res = await run(target, 'import', '--from', other);
    expect(res.code).toBe(1);
    expect(res.err).toMatch(/export format version 2; this Tally reads version 1/);
    expect((await balancesIn(target)).size).toBe(0);
  });
});
