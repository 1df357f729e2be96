import { randomUUID } from 'node:crypto';
import type { Source } from './import-source.js';

/** A version as Tally must keep it: its content, author (Tally user id or null) and time. */
export interface ExpectedVersion {
  content: string;
  author: string | null;
  created_at: string;
  message: string | null;
}

/** A file as Tally must keep it (its id is the source's): where, which version is current, every version. */
export interface ExpectedFile {
  project: string;
  path: string;
  current: number;
  created_at: string;
  updated_at: string;
  versions: Record<number, ExpectedVersion>;
}

export interface FilesFixture {
  users: string[];
  projects: string[];
  files: Map<string, ExpectedFile>;
  /** What each table must report: imported and skipped by reason. */
  counts: { files: { imported: number; skipped: Record<string, number> }; versions: { imported: number; skipped: Record<string, number> } };
  /** The editor sessions (user 0 in projects 0 and 1): the open files and active file Tally must link. */
  sessions: { project: string; open: string[]; active: string | null }[];
  /** Source ids of the rows each anomaly must name. */
  anomalies: Record<string, string[]>;
}

const KIB = 1024;
const at = (day: number, hour = 10) => new Date(Date.UTC(2026, 0, day, hour)).toISOString();

/**
 * Seed 002's `files` and `file_versions` (with what they hang off: users, a workspace, two projects)
 * holding every case docs/import.md has a rule for: folders, versions kept by number, author and
 * time, content inline and in storage (above the projects module's 16 KiB), a current content newer
 * than its last version, a file never versioned, an empty file, content only in Supabase Storage
 * (a file's and a version's), the trash, two paths that meet once the leading '/' goes, a path Tally
 * cannot take, a version numbered 0, a parent in another project, orphans both ways, and editor
 * sessions naming files Tally has and files it does not.
 */
export async function fillFiles(src: Source): Promise<FilesFixture> {
  await src.query('set session_replication_role = replica');
  const users: string[] = [];
  for (let u = 0; u < 3; u++) {
    const id = randomUUID();
    users.push(id);
    await src.query('insert into users (id, email, full_name) values ($1, $2, $3)', [id, `f${u}@example.com`, `Filer ${u}`]);
  }
  const [u0, u1] = users as [string, string];
  const ghost = randomUUID();
  const [ws] = await src.query<{ id: string }>("insert into workspaces (name, slug, owner_id) values ('Files', 'files', $1) returning id::text as id", [u0]);
  const projects: string[] = [];
  for (let p = 0; p < 2; p++) {
    const [row] = await src.query<{ id: string }>("insert into projects (workspace_id, name, slug) values ($1, $2, $3) returning id::text as id", [ws?.id, `Repo ${p}`, `repo-${p}`]);
    projects.push(String(row?.id));
  }
  const [p0, p1] = projects as [string, string];
  const files = new Map<string, ExpectedFile>();
  const anomalies: Record<string, string[]> = { orphan: [], duplicate_path: [], foreign_parent: [], storage_only: [], unknown_value: [], unlinked_file: [] };

  const file = async (project: string, path: string, o: { type?: string; content?: string | null; storage?: string; parent?: string; deleted?: boolean; mime?: string; by?: string; day?: number; updatedDay?: number } = {}) => {
    const [row] = await src.query<{ id: string }>(
      `insert into files (project_id, path, name, type, content, size_bytes, mime_type, language, parent_id, storage_path, is_deleted, created_by, updated_by, created_at, updated_at)
       values ($1, $2, $3, $4, $5, $6, $7, 'typescript', $8, $9, $10, $11, $11, $12, $13) returning id::text as id`,
      [project, path, path.split('/').at(-1), o.type ?? 'file', o.content ?? null, o.content ? Buffer.byteLength(o.content) : null, o.mime ?? null, o.parent ?? null, o.storage ?? null, o.deleted ?? false, o.by ?? u0, at(o.day ?? 1), at(o.updatedDay ?? o.day ?? 1, 12)],
    );
    return String(row?.id);
  };
  const version = async (fileId: string, n: number, content: string, o: { by?: string | null; day?: number; size?: number | null; message?: string } = {}) => {
    const [row] = await src.query<{ id: string }>(
      'insert into file_versions (file_id, version_number, content, size_bytes, changed_by, change_message, created_at) values ($1, $2, $3, $4, $5, $6, $7) returning id::text as id',
      [fileId, n, content, o.size === undefined ? Buffer.byteLength(content) : o.size, o.by === undefined ? u0 : o.by, o.message ?? `save ${n}`, at(o.day ?? 1, 10 + n)],
    );
    return String(row?.id);
  };
  const expect = (id: string, project: string, path: string, current: number, day: number, updatedDay: number, versions: Record<number, ExpectedVersion>) =>
    files.set(id, { project, path, current, created_at: at(day), updated_at: at(updatedDay, 12), versions });
  const v = (content: string, author: string | null, n: number, day = 1, message: string | null = `save ${n}`): ExpectedVersion => ({ content, author, created_at: at(day, 10 + n), message });
  const NEWER = "cloud-ide: the file's content at import, newer than its last saved version";

  // Folders: implied by the paths under them (an empty one, /docs, leaves nothing).
  const srcFolder = await file(p0, '/src', { type: 'folder' });
  await file(p0, '/docs', { type: 'folder' });
  // Three saved versions by three authors (the third's user is gone: no author), and one numbered 0.
  const index = await file(p0, '/src/index.ts', { content: 'export const v = 3;\n', parent: srcFolder, day: 2, updatedDay: 5 });
  await version(index, 1, 'export const v = 1;\n', { by: u0, day: 2 });
  await version(index, 2, 'export const v = 2;\n', { by: u1, day: 3 });
  await version(index, 3, 'export const v = 3;\n', { by: ghost, day: 4 });
  anomalies.unknown_value?.push(await version(index, 0, 'prehistory', { day: 1 }));
  expect(index, p0, 'src/index.ts', 3, 2, 5, { 1: v('export const v = 1;\n', u0, 1, 2), 2: v('export const v = 2;\n', u1, 2, 3), 3: v('export const v = 3;\n', null, 3, 4) });
  // Large text (stored) and small (inline); the file edited since its last version: its 100 KiB become version 3.
  const big = 'x'.repeat(100 * KIB);
  const bigV1 = `${'y'.repeat(20 * KIB)}\n`;
  const bigFile = await file(p0, '/src/big.txt', { content: big, mime: 'text/plain', parent: srcFolder, day: 2, updatedDay: 6 });
  await version(bigFile, 1, bigV1, { by: u1, day: 3 });
  await version(bigFile, 2, 'small now\n', { by: u1, day: 4 });
  expect(bigFile, p0, 'src/big.txt', 3, 2, 6, { 1: v(bigV1, u1, 1, 3), 2: v('small now\n', u1, 2, 4), 3: { content: big, author: u0, created_at: at(6, 12), message: NEWER } });
  // Never versioned: its content is version 1. An empty file (no content, no storage): version 1, empty.
  const readme = await file(p0, 'README.md', { content: '# Repo\n', mime: 'text/markdown', by: u1, day: 3 });
  expect(readme, p0, 'README.md', 1, 3, 3, { 1: { content: '# Repo\n', author: u1, created_at: at(3, 12), message: NEWER } });
  const empty = await file(p0, '/src/empty.ts', { parent: srcFolder, day: 3 });
  expect(empty, p0, 'src/empty.ts', 1, 3, 3, { 1: { content: '', author: u0, created_at: at(3, 12), message: NEWER } });
  // Supabase Storage: a file whose current bytes are only there (not imported, nor its version); a
  // file whose first version's bytes are only there (a gap at 1; its current, 2, is in the database).
  const logo = await file(p0, '/assets/logo.svg', { storage: 'p0/assets/logo.svg', mime: 'image/svg+xml', day: 2 });
  await version(logo, 1, '', { size: 512 });
  anomalies.storage_only?.push(logo);
  const data = await file(p0, '/assets/data.json', { content: '{"a":1}', storage: 'p0/assets/data.json', mime: 'application/json', day: 2, updatedDay: 4 });
  anomalies.storage_only?.push(await version(data, 1, '', { size: 2048, day: 2 }));
  await version(data, 2, '{"a":1}', { day: 4 });
  expect(data, p0, 'assets/data.json', 2, 2, 4, { 2: v('{"a":1}', u0, 2, 4) });
  // The trash: not imported, nor its version.
  const old = await file(p0, '/old.ts', { content: 'gone', deleted: true });
  await version(old, 1, 'gone');
  // Two paths that meet: the more recently updated wins.
  const dupOld = await file(p0, '/src/dup.ts', { content: 'old', day: 2, updatedDay: 2 });
  await version(dupOld, 1, 'old', { day: 2 });
  anomalies.duplicate_path?.push(dupOld);
  const dupNew = await file(p0, 'src/dup.ts', { content: 'new', day: 3, updatedDay: 7 });
  await version(dupNew, 1, 'new', { day: 7 });
  expect(dupNew, p0, 'src/dup.ts', 1, 3, 7, { 1: v('new', u0, 1, 7) });
  // A path Tally cannot take.
  const dotted = await file(p0, '/src/../etc/passwd', { content: 'root' });
  anomalies.unknown_value?.push(dotted);
  // A file of project 1 whose parent folder is project 0's: imported in project 1, at its path.
  const util = await file(p1, '/lib/util.ts', { content: 'export {}', parent: srcFolder, day: 4 });
  await version(util, 1, 'export {}', { by: u1, day: 4 });
  anomalies.foreign_parent?.push(util);
  expect(util, p1, 'lib/util.ts', 1, 4, 4, { 1: v('export {}', u1, 1, 4) });
  // Orphans: a file whose project is gone (and its version), a version whose file is gone.
  const lost = await file(randomUUID(), '/lost.ts', { content: 'lost' });
  await version(lost, 1, 'lost');
  anomalies.orphan?.push(lost, await version(randomUUID(), 1, 'nobody'));

  // Editor sessions: one naming files Tally has, a storage-only file, a folder and no file at all;
  // one in project 1 whose active file is project 0's.
  const open = (ids: string[]) => JSON.stringify(ids.map((id, i) => ({ file_id: id, cursor_position: { line: i + 1, column: 1 } })));
  const [s0] = await src.query<{ id: string }>('insert into editor_sessions (user_id, project_id, open_files, active_file_id) values ($1, $2, $3, $4) returning id::text as id', [u0, p0, open([index, bigFile, logo, srcFolder, 'not-a-file']), bigFile]);
  const [s1] = await src.query<{ id: string }>('insert into editor_sessions (user_id, project_id, open_files, active_file_id) values ($1, $2, $3, $4) returning id::text as id', [u0, p1, open([util]), index]);
  anomalies.unlinked_file?.push(String(s0?.id), String(s1?.id));

  return {
    users,
    projects,
    files,
    counts: {
      files: { imported: files.size, skipped: { folder: 2, deleted: 1, storage_only: 1, duplicate: 1, unknown_value: 1, orphan: 1 } },
      versions: { imported: 8, skipped: { owner_not_imported: 4, storage_only: 1, unknown_value: 1, orphan: 1 } },
    },
    sessions: [
      { project: p0, open: [index, bigFile], active: bigFile },
      { project: p1, open: [util], active: null },
    ],
    anomalies,
  };
}
