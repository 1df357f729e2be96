import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { INLINE_MAX_BYTES } from '../src/modules/projects/projects.files.service.js';
import { createDriver } from '../src/modules/storage/storage.drivers.js';
import { TARGET } from './support/harness.js';
import { importHarness, type ImportTarget } from './support/import-cli.js';
import { type Source, SOURCE_URL } from './support/import-source.js';
import { createCloudIdePostgres } from './support/import-source-cloud-ide.js';
import { type ExpectedVersion, type FilesFixture, fillFiles } from './support/import-source-cloud-ide-files.js';

vi.setConfig({ testTimeout: 180_000 });

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** `tally import` of seed 002's files and versions (docs/import.md, cloud-ide: files). */
describe(`tally import cloud-ide files (${TARGET})`, () => {
  const h = importHarness('cf');
  const { run, q } = h;
  let src: Source;
  let fixture: FilesFixture;
  const importArgs = (...more: string[]) => ['import', '--from', SOURCE_URL, '--source-schema', src.schema, '--schema', 'cloud-ide', ...more];
  const driverOf = (t: ImportTarget) => {
    const { config } = loadConfig(h.env(t));
    return createDriver(config.storage, config.dataDir);
  };

  beforeAll(async () => {
    await h.start();
    src = await createCloudIdePostgres();
    fixture = await fillFiles(src);
  }, 300_000);
  afterAll(async () => {
    await src?.drop();
    await h.stop();
  });

  /** Every file, version, byte and editor-session link exactly as the fixture says, and storage clean. */
  async function expectFiles(t: ImportTarget): Promise<void> {
    const rows = await q<{ id: string; project_id: string; path: string; current_version: number; size: number; sha256: string; created_at: Date; updated_at: Date }>(
      t,
      'select id, project_id, path, current_version, size::int as size, sha256, created_at, updated_at from T.project_files order by id',
    );
    expect(rows.map((r) => r.id).sort()).toEqual([...fixture.files.keys()].sort());
    const driver = driverOf(t);
    for (const r of rows) {
      const f = fixture.files.get(r.id);
      if (!f) throw new Error(`unexpected file ${r.id}`);
      const current = f.versions[f.current]?.content ?? '';
      expect({ project: r.project_id, path: r.path, current: r.current_version, size: r.size, sha256: r.sha256, created_at: r.created_at.toISOString(), updated_at: r.updated_at.toISOString() }, r.path).toEqual({
        project: f.project, path: f.path, current: f.current, size: Buffer.byteLength(current), sha256: sha(current), created_at: f.created_at, updated_at: f.updated_at,
      });
      const versions = await q<{ id: string; version: number; content: string | null; storage_key: string | null; size: number; sha256: string; author_id: string | null; message: string | null; created_at: Date; project_id: string; content_type: string }>(
        t,
        `select id, version, content, storage_key, size::int as size, sha256, author_id, message, created_at, project_id, content_type from T.project_file_versions where file_id = '${r.id}' order by version`,
      );
      expect(versions.map((v) => v.version), r.path).toEqual(Object.keys(f.versions).map(Number));
      for (const v of versions) {
        const want = f.versions[v.version] as ExpectedVersion;
        expect({ author: v.author_id, message: v.message, created_at: v.created_at.toISOString(), project: v.project_id, size: v.size, sha256: v.sha256 }, `${r.path}@${v.version}`).toEqual({
          author: want.author, message: want.message, created_at: want.created_at, project: f.project, size: Buffer.byteLength(want.content), sha256: sha(want.content),
        });
        // The projects module's rule: text up to INLINE_MAX_BYTES in the row, the rest in storage under f/<project>/<version>.
        if (Buffer.byteLength(want.content) <= INLINE_MAX_BYTES) expect({ content: v.content, key: v.storage_key }).toEqual({ content: want.content, key: null });
        else {
          expect({ content: v.content, key: v.storage_key }).toEqual({ content: null, key: `f/${f.project}/${v.id}` });
          const stream = await driver.get(String(v.storage_key));
          expect(stream, `${r.path}@${v.version} bytes`).not.toBeNull();
          expect((await buffer(stream as NodeJS.ReadableStream)).toString('utf8') === want.content).toBe(true);
        }
      }
    }
    const stored = await q<{ n: number }>(t, 'select count(*)::int as n from T.project_file_versions where storage_key is not null');
    expect(stored[0]?.n).toBe(2);
    const sessions = await q<{ project_id: string; open_files: { file_id: string }[]; active_file_id: string | null }>(t, 'select project_id, open_files, active_file_id from T.editor_sessions order by project_id');
    expect(sessions.map((s) => ({ project: s.project_id, open: s.open_files.map((o) => o.file_id), active: s.active_file_id })).sort((a, b) => a.project.localeCompare(b.project))).toEqual(
      [...fixture.sessions].sort((a, b) => a.project.localeCompare(b.project)),
    );
    // Nothing missing, nothing orphaned: every stored version's bytes are there, and no bytes without a row.
    const check = await run(t, 'storage', 'check', '--json');
    expect(check.code, check.out + check.err).toBe(0);
  }

  it('imports files and versions by their rules, links editor sessions, reports each anomaly, and a second run imports nothing', async () => {
    const t = h.newTarget();
    const res = await run(t, ...importArgs('--json'));
    expect(res.code, (res.err + res.out).slice(-3000)).toBe(0);
    const report = JSON.parse(res.out) as ImportReport;
    const table = (name: string) => report.tables.find((x) => x.table === name);
    expect(table('files')).toMatchObject({ imported: fixture.counts.files.imported, skipped_by_reason: fixture.counts.files.skipped });
    expect(table('file_versions')).toMatchObject({ imported: fixture.counts.versions.imported, skipped_by_reason: fixture.counts.versions.skipped });
    expect(report.not_imported.map((n) => n.table).join(', ')).not.toContain('files');
    const byKind = Object.fromEntries(Object.entries(fixture.anomalies).map(([k, ids]) => [k, ids.length]));
    expect(report.anomalies.by_kind).toEqual(byKind);
    for (const [kind, ids] of Object.entries(fixture.anomalies)) {
      expect(report.anomalies.cases.filter((a) => a.kind === kind).map((a) => a.source_id).sort(), kind).toEqual([...ids].sort());
    }
    expect(report.anomalies.cases.find((a) => a.kind === 'storage_only' && a.table === 'files')?.details).toMatchObject({ storage_path: 'p0/assets/logo.svg', path: '/assets/logo.svg' });
    await expectFiles(t);

    const again = await run(t, ...importArgs('--json'));
    expect(again.code, again.err.slice(-3000)).toBe(0);
    const second = JSON.parse(again.out) as ImportReport;
    expect(second.tables.map((x) => x.imported)).toEqual(second.tables.map(() => 0));
    expect(second.tables.find((x) => x.table === 'file_versions')?.skipped_by_reason.already_imported).toBe(fixture.counts.versions.imported);
    await expectFiles(t);
  });

  it('--strict refuses before writing; --dry-run reports the files and keeps nothing, neither rows nor bytes', async () => {
    const t = h.newTarget();
    const strict = await run(t, ...importArgs('--strict', '--json'));
    expect(strict.code).toBe(1);
    const refused = JSON.parse(strict.out) as ImportReport;
    expect(refused.status).toBe('refused');
    expect(refused.anomalies.by_kind).toEqual({ orphan: 2, duplicate_path: 1, foreign_parent: 1, storage_only: 2 });
    expect(await q(t, 'select id from T.project_files')).toEqual([]);

    const dry = await run(t, ...importArgs('--dry-run', '--json'));
    expect(dry.code, dry.err.slice(-3000)).toBe(0);
    const report = JSON.parse(dry.out) as ImportReport;
    expect(report.tables.find((x) => x.table === 'files')?.imported).toBe(fixture.counts.files.imported);
    expect(report.tables.find((x) => x.table === 'file_versions')?.imported).toBe(fixture.counts.versions.imported);
    for (const name of ['project_files', 'project_file_versions', 'editor_sessions', 'projects']) expect(await q(t, `select id from T.${name}`)).toEqual([]);
    expect(await driverOf(t).list('f/', { limit: 10 })).toEqual([]);
  });

  it('killed with SIGKILL among the file versions, --resume completes them exactly, with no bytes left behind', async () => {
    const t = h.newTarget();
    expect((await run(t, 'migrate')).code).toBe(0);
    await h.release(t);
    const child = spawn(process.execPath, [...h.cli, ...importArgs('--batch-size', '1')], { env: h.env(t), cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        // A versions batch has committed: the import is among them (large ones are being stored).
        if (/import file_versions \[/.test(err)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`the import ended before it could be killed: ${err}`)));
    });
    await new Promise((r) => child.once('close', r));
    const [partial] = await q<{ n: number }>(t, "select count(*)::int as n from T.import_runs where status = 'completed'");
    expect(partial?.n).toBe(0);

    const resumed = await run(t, ...importArgs('--resume', '--json'));
    expect(resumed.code, resumed.err.slice(-3000)).toBe(0);
    const report = JSON.parse(resumed.out) as ImportReport;
    expect(report.resumed).toBe(true);
    expect(report.tables.find((x) => x.table === 'files')).toMatchObject({ read: 14, imported: fixture.counts.files.imported });
    expect(report.tables.find((x) => x.table === 'file_versions')).toMatchObject({ read: 15, imported: fixture.counts.versions.imported });
    await expectFiles(t);
  });
});
