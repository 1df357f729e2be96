import { sql } from 'kysely';
import { placeTextVersion, putVersionBytes } from '../projects/projects.files.service.js';
import { pathSegments } from '../storage/storage.js';
import type { Anomaly, BatchContext, TableStep } from './import.js';
import { importMapInsert, type MapRow } from './import.repository.js';
import { date, freshRows, int, json, ownerOf, ownersOf, str, Tally } from './import.rows.js';
import type { SourceDb } from './import.source.js';
import { fits } from './import.steps.js';

/**
 * Seed 002's `files` and `file_versions` (docs/import.md, cloud-ide: files) into Tally's
 * `project_files` / `project_file_versions`. 002 keeps a tree (folders are rows, `parent_id` links
 * them); Tally keeps paths, and a folder is implied by the paths under it, as in git. So a file
 * arrives at its own `path` in its own project (keeping its id, which 002's editor sessions name),
 * a folder row is counted and not written, and every version arrives with its number, author, message
 * and time — inline or in storage by the projects module's own rule (`placeTextVersion`).
 */
type T = (n: string) => string;
type Row = Record<string, unknown>;

/** 002's path as Tally's: a path from the project's root (`/src/a.ts`) loses its one leading slash. */
const tallyPath = (col: string) => `(case when ${col} like '/%' then substr(${col}, 2) else ${col} end)`;
/** A row that is a file and not in 002's trash: the rows Tally can hold. */
const live = (a: string) => `(${a}.type = 'file' and not coalesce(${a}.is_deleted, false))`;
/**
 * The live file that keeps a Tally path several of a project's files arrive at (`/a` and `a`): the
 * most recently updated, then the lowest id. Two index lookups a file (002's unique (project, path)).
 */
const pathWinner = (t: T, f: string) => {
  const p = tallyPath(`${f}.path`);
  return `(select w.id::text from ${t('files')} w where w.project_id = ${f}.project_id and w.path in (${p}, '/' || ${p}) and ${tallyPath('w.path')} = ${p}
    and ${live('w')} order by w.updated_at desc nulls last, w.id limit 1)`;
};
/** A file whose current content is only in Supabase Storage (002's note 2): no `content`, a `storage_path`. */
const currentInStorage = (f: string) => `(${f}.storage_path is not null and ${f}.content is null)`;
/**
 * A version whose bytes are only in Storage: its file keeps a `storage_path` and the version's
 * `content` (NOT NULL in 002) is empty while its `size_bytes` does not say 0. Empty is taken as
 * empty only when the size says so: the import does not guess.
 */
const versionInStorage = (v: string, f: string) => `(${f}.storage_path is not null and ${v}.content = '' and ${v}.size_bytes is distinct from 0)`;
/** The versions Tally takes as they are (the same checks as `fileVersions.write`). */
const importable = (v: string, f: string) => `(${v}.version_number >= 1 and coalesce(char_length(${v}.change_message), 0) <= 1000 and not ${versionInStorage(v, f)})`;
const latestOf = (t: T, f: string, what: string) =>
  `(select ${what} from ${t('file_versions')} v where v.file_id = ${f}.id and ${importable('v', f)} order by v.version_number desc limit 1)`;

const MESSAGE_CURRENT = "cloud-ide: the file's content at import, newer than its last saved version";
const STORE_CONCURRENCY = 4;

interface VersionRow {
  id: string;
  file_id: string;
  project_id: string;
  version: number;
  content: string | null;
  storage_key: string | null;
  size: number;
  sha256: string;
  content_type: string;
  language: string | null;
  author_id: string | null;
  message: string | null;
  created_at: Date;
}

/**
 * Writes versions in one statement (the batch as one JSON parameter), then their stored bytes —
 * only for rows this statement inserted, after them, as the projects module does: a version Tally
 * already has (its id, or its number for the file) is answered back as not inserted.
 */
async function insertVersions(ctx: BatchContext, rows: (VersionRow & { bytes: Buffer })[]): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const payload = JSON.stringify(rows.map(({ bytes: _bytes, ...r }) => r));
  const inserted = await ctx.trx
    .insertInto('project_file_versions')
    .columns(['id', 'file_id', 'project_id', 'version', 'content', 'storage_key', 'size', 'sha256', 'content_type', 'language', 'author_id', 'message', 'created_at'])
    .expression(
      sql`select id, file_id, project_id, version, content, storage_key, size, sha256, content_type, language, author_id, message, created_at
        from jsonb_to_recordset(${payload}::jsonb) as r(id text, file_id text, project_id text, version int4, content text, storage_key text, size int8,
          sha256 text, content_type text, language text, author_id text, message text, created_at timestamptz)`,
    )
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .execute();
  const ids = new Set(inserted.map((r) => r.id));
  const stored = rows.filter((r) => r.storage_key !== null && ids.has(r.id));
  for (let i = 0; i < stored.length; i += STORE_CONCURRENCY) {
    await Promise.all(stored.slice(i, i + STORE_CONCURRENCY).map((r) => putVersionBytes(ctx.storage, r.storage_key as string, r.bytes, r.content_type)));
  }
  return ids;
}

/** A version row with its content placed by the projects module's rule (inline, or bytes for storage). */
function version(v: Omit<VersionRow, 'content' | 'storage_key' | 'size' | 'sha256'>, text: string): VersionRow & { bytes: Buffer } {
  const placed = placeTextVersion(v.project_id, v.id, text);
  return { ...v, content: placed.inline, storage_key: placed.storageKey, size: placed.size, sha256: placed.sha256, bytes: placed.bytes };
}

const unknown = (ctx: BatchContext, tally: Tally, table: string, id: string, rule: string, details: Record<string, unknown>) => {
  tally.skip('unknown_value');
  ctx.anomaly({ kind: 'unknown_value', table, source_id: id, rule, details });
};

/** A user of the source as imported, or null (authorship is kept when the user arrived). */
const userOf = (users: Map<string, MapRow>, id: unknown) => (id === null || id === undefined ? null : (users.get(String(id))?.target_id ?? null));

const files: TableStep = {
  table: 'files',
  key: 'id',
  columns: (t) => {
    const f = t('files');
    return `id::text as id, project_id::text as project_id, path, type, is_deleted, language, mime_type, storage_path, ${currentInStorage(f)} as storage_only,
      created_by::text as created_by, updated_by::text as updated_by, created_at, updated_at,
      exists (select 1 from ${t('projects')} p where p.id = ${f}.project_id) as owner_exists,
      ${pathWinner(t, f)} as path_winner,
      (select max(x.version_number) from ${t('file_versions')} x where x.file_id = ${f}.id) as max_version,
      ${latestOf(t, f, "json_build_object('n', v.version_number, 'size', octet_length(v.content), 'sha256', encode(sha256(convert_to(v.content, 'UTF8')), 'hex'))")} as latest,
      case when ${f}.content is not null and ${latestOf(t, f, 'v.content')} is distinct from ${f}.content then ${f}.content end as content`;
  },
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'files', rows, 'id', tally);
    const projects = await ownersOf(ctx, 'projects', fresh, 'project_id');
    const users = new Map([...(await ownersOf(ctx, 'users', fresh, 'created_by')), ...(await ownersOf(ctx, 'users', fresh, 'updated_by'))]);
    const made: { file: Row; facts: Record<string, unknown>; current: VersionRow & { bytes: Buffer } | null }[] = [];
    for (const r of fresh) {
      const id = String(r.id);
      const project = ownerOf(projects, r, 'project_id', tally);
      if (!project) continue;
      // Tally has no folder rows: a folder is the paths under it. 002's trash has no place in Tally either.
      if (r.type === 'folder') {
        tally.skip('folder');
        continue;
      }
      if (r.is_deleted === true) {
        tally.skip('deleted');
        continue;
      }
      // The scan reported these (storage_only, duplicate_path): skipped here without a second report.
      if (r.storage_only === true) {
        tally.skip('storage_only');
        continue;
      }
      if (str(r.path_winner) !== id) {
        tally.skip('duplicate');
        continue;
      }
      const path = String(r.path).startsWith('/') ? String(r.path).slice(1) : String(r.path);
      const contentType = str(r.mime_type) ?? 'text/plain';
      if (!pathSegments(path) || !fits(r.language, 64) || !fits(contentType, 255, 3)) {
        unknown(ctx, tally, 'files', id, 'A file whose path (non-empty segments, no "." or "..", no control characters or backslashes, at most 1,024 characters), language or MIME type Tally cannot take as they are is not imported (nor its versions)', { path: r.path, mime_type: r.mime_type });
        continue;
      }
      const latest = json(r.latest) as { n: number; size: number | string; sha256: string } | null;
      const content = str(r.content);
      if (content === null && latest === null && r.max_version !== null) {
        unknown(ctx, tally, 'files', id, 'A file whose content is only in versions Tally cannot take is not imported', { path: r.path, max_version: r.max_version });
        continue;
      }
      const projectId = project.target_id;
      const language = str(r.language);
      let current: (VersionRow & { bytes: Buffer }) | null = null;
      // 002's current content is the file's `content`. When no saved version holds it (edited since, or
      // never versioned), it becomes one more version after the source's last: nothing the user saw is lost.
      if (content !== null || latest === null) {
        const n = Math.max(int(r.max_version) ?? 0, 0) + 1;
        const updated = date(r.updated_at) ?? date(r.created_at) ?? ctx.now;
        current = version({ id: `${id}.v${n}`, file_id: id, project_id: projectId, version: n, content_type: contentType, language, author_id: userOf(users, r.updated_by ?? r.created_by), message: MESSAGE_CURRENT, created_at: updated }, content ?? '');
      }
      made.push({
        file: {
          id,
          project_id: projectId,
          path,
          language,
          current_version: current?.version ?? latest?.n,
          size: current?.size ?? Number(latest?.size),
          sha256: current?.sha256 ?? latest?.sha256,
          created_by: userOf(users, r.created_by),
          created_at: date(r.created_at) ?? ctx.now,
          updated_at: date(r.updated_at) ?? date(r.created_at) ?? ctx.now,
        },
        facts: { project_id: projectId, content_type: contentType, language },
        current,
      });
    }
    const inserted = await insertFiles(ctx, made.map((m) => m.file));
    const maps = [];
    for (const m of made) {
      const id = String(m.file.id);
      if (!inserted.has(id)) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'files', source_id: id, rule: 'Tally already has a file with this id, or this path in the project: it and its versions are not imported', details: { path: m.file.path } });
        continue;
      }
      maps.push({ table: 'files', sourceId: id, targetTable: 'project_files', targetId: id, facts: m.facts });
      tally.imported++;
    }
    const currents = made.flatMap((m) => (m.current && inserted.has(String(m.file.id)) ? [m.current] : []));
    // A file this batch created has no versions yet: its own current version cannot meet one.
    if ((await insertVersions(ctx, currents)).size !== currents.length) throw new Error('import: a new file already had its current version');
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

async function insertFiles(ctx: BatchContext, rows: Row[]): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const inserted = await ctx.trx
    .insertInto('project_files')
    .columns(['id', 'project_id', 'path', 'language', 'current_version', 'size', 'sha256', 'created_by', 'created_at', 'updated_at'])
    .expression(
      sql`select id, project_id, path, language, current_version, size, sha256, created_by, created_at, updated_at
        from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as r(id text, project_id text, path text, language text, current_version int4, size int8,
          sha256 text, created_by text, created_at timestamptz, updated_at timestamptz)`,
    )
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .execute();
  return new Set(inserted.map((r) => r.id));
}

const fileVersions: TableStep = {
  table: 'file_versions',
  key: 'id',
  columns: (t) => {
    const v = t('file_versions');
    return `id::text as id, file_id::text as file_id, version_number, content, changed_by::text as changed_by, change_message, created_at,
      exists (select 1 from ${t('files')} f where f.id = ${v}.file_id) as owner_exists,
      exists (select 1 from ${t('files')} f where f.id = ${v}.file_id and ${versionInStorage(v, 'f')}) as storage_only`;
  },
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'file_versions', rows, 'id', tally);
    const fileMap = await ownersOf(ctx, 'files', fresh, 'file_id');
    const authors = await ownersOf(ctx, 'users', fresh, 'changed_by');
    const made: (VersionRow & { bytes: Buffer })[] = [];
    for (const r of fresh) {
      const id = String(r.id);
      const file = ownerOf(fileMap, r, 'file_id', tally);
      if (!file) continue;
      // The scan reported it (storage_only): its bytes are where Tally cannot read them.
      if (r.storage_only === true) {
        tally.skip('storage_only');
        continue;
      }
      const n = int(r.version_number);
      if (n === null || n < 1 || !fits(r.change_message, 1000)) {
        unknown(ctx, tally, 'file_versions', id, 'A version whose number is below 1 or whose message exceeds 1,000 characters is not imported (the import does not renumber or cut)', { version_number: r.version_number });
        continue;
      }
      made.push(
        version({ id, file_id: file.target_id, project_id: String(file.facts.project_id), version: n, content_type: String(file.facts.content_type), language: str(file.facts.language), author_id: userOf(authors, r.changed_by), message: str(r.change_message), created_at: date(r.created_at) ?? ctx.now }, String(r.content)),
      );
    }
    const inserted = await insertVersions(ctx, made);
    const maps = [];
    for (const v of made) {
      if (!inserted.has(v.id)) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'file_versions', source_id: v.id, rule: 'Tally already has this version (its id, or its number for the file): not imported', details: { version: v.version } });
        continue;
      }
      maps.push({ table: 'file_versions', sourceId: v.id, targetTable: 'project_file_versions', targetId: v.id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

/** After projects, before the editor sessions that name files. */
export const fileSteps: TableStep[] = [files, fileVersions];

/** The files' anomalies, found before anything is written (so `--strict` refuses with nothing imported). */
export async function scanFiles(src: SourceDb, limit: number): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const out: Anomaly[] = [];
  const orphans = await src.rows<{ table: string; id: string; column: string; parent: string }>(
    `(select 'files' as table, c.id::text as id, 'project_id' as column, c.project_id::text as parent from ${t('files')} c left join ${t('projects')} p on p.id = c.project_id where p.id is null order by c.id limit $1)
     union all
     (select 'file_versions', c.id::text, 'file_id', c.file_id::text from ${t('file_versions')} c left join ${t('files')} p on p.id = c.file_id where p.id is null order by c.id limit $1)`,
    [limit],
  );
  for (const r of orphans) out.push({ kind: 'orphan', table: r.table, source_id: r.id, rule: 'A file whose project, or a version whose file, is not in the source belongs nowhere in Tally: it is not imported', details: { [r.column]: r.parent } });
  const duplicates = await src.rows<{ id: string; project_id: string; path: string; winner: string }>(
    `select f.id::text as id, f.project_id::text as project_id, f.path, ${pathWinner(t, 'f')} as winner from ${t('files')} f
      where ${live('f')} and f.id::text <> ${pathWinner(t, 'f')} order by f.id limit $1`,
    [limit],
  );
  for (const r of duplicates) out.push({ kind: 'duplicate_path', table: 'files', source_id: r.id, rule: "Several live files of a project arrive at one Tally path (a leading '/' dropped): the most recently updated (then the lowest id) is imported, this one is not (nor its versions)", details: { project_id: r.project_id, path: r.path, imported: r.winner } });
  const foreign = await src.rows<{ id: string; project_id: string; parent_id: string; parent_project_id: string }>(
    `select c.id::text as id, c.project_id::text as project_id, c.parent_id::text as parent_id, p.project_id::text as parent_project_id
      from ${t('files')} c join ${t('files')} p on p.id = c.parent_id where p.project_id <> c.project_id and ${live('c')} order by c.id limit $1`,
    [limit],
  );
  for (const r of foreign) out.push({ kind: 'foreign_parent', table: 'files', source_id: r.id, rule: "A file whose parent folder is in another project is imported in its own project at its own path (002's access followed the file's project_id; the parent link is the tree's index, which Tally does not keep)", details: { project_id: r.project_id, parent_id: r.parent_id, parent_project_id: r.parent_project_id } });
  const stored = await src.rows<{ table: string; id: string; file_id: string; path: string; storage_path: string; version_number: number | null }>(
    `(select 'files' as table, f.id::text as id, f.id::text as file_id, f.path, f.storage_path, null::int as version_number from ${t('files')} f
       where ${live('f')} and ${currentInStorage('f')} order by f.id limit $1)
     union all
     (select 'file_versions', v.id::text, f.id::text, f.path, f.storage_path, v.version_number from ${t('file_versions')} v join ${t('files')} f on f.id = v.file_id
       where ${live('f')} and not ${currentInStorage('f')} and ${versionInStorage('v', 'f')} order by v.id limit $1)`,
    [limit],
  );
  for (const r of stored) {
    const rule =
      r.table === 'files'
        ? "A file whose current content is only in Supabase Storage (no content, a storage_path) is not imported, nor its versions: Tally cannot read those bytes and will not show an older version as current. Save it again through the API (POST /v1/projects/:id/files)"
        : 'A version whose content is only in Supabase Storage (empty content, a size that is not 0, its file has a storage_path) is not imported: its number stays a gap in the history';
    out.push({ kind: 'storage_only', table: r.table, source_id: r.id, rule, details: { file_id: r.file_id, path: r.path, storage_path: r.storage_path, ...(r.version_number === null ? {} : { version_number: r.version_number }) } });
  }
  return out;
}
