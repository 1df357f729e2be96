import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { type Static, Type } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { Principal } from '../../core/principal.js';
import { iso, isoOrNull } from '../../core/schemas.js';
import { newId } from '../../lib/ids.js';
import type { StorageDriver } from '../storage/storage.driver.js';
import { pathSegments } from '../storage/storage.js';
import { canWrite } from './projects.js';
import type { ProjectsService } from './projects.service.js';

/** Text up to this size is kept in the row; anything larger, or binary, goes to storage. */
export const INLINE_MAX_BYTES = 16_384;

/** Where a version's bytes live in the storage driver (its row's `storage_key`). */
export const versionStorageKey = (projectId: string, versionId: string): string => `f/${projectId}/${versionId}`;

/**
 * How a text version is kept: inline when it is at most INLINE_MAX_BYTES of UTF-8, else its bytes in
 * storage under versionStorageKey (written with `putVersionBytes` after the row). One rule for a
 * save and for `tally import` (docs/import.md, cloud-ide files).
 */
export function placeTextVersion(projectId: string, versionId: string, text: string) {
  const bytes = Buffer.from(text, 'utf8');
  const inline = bytes.length <= INLINE_MAX_BYTES ? text : null;
  return { bytes, inline, storageKey: inline === null ? versionStorageKey(projectId, versionId) : null, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** A version's bytes into the driver, under the key its row names. */
export async function putVersionBytes(driver: StorageDriver, key: string, bytes: Buffer, contentType: string | null): Promise<void> {
  await driver.put(key, Readable.from([bytes]), { contentType });
}

const Str = (max: number, min = 1) => Type.String({ minLength: min, maxLength: max });

export const SaveFileBody = Type.Object(
  {
    path: Str(1024),
    /** Text content (UTF-8). */
    content: Type.Optional(Type.String({ maxLength: 10_000_000 })),
    /** Binary content, base64. Exactly one of content / content_base64. */
    content_base64: Type.Optional(Type.String({ maxLength: 14_000_000, pattern: '^[A-Za-z0-9+/]*={0,2}$' })),
    content_type: Type.Optional(Str(255, 3)),
    language: Type.Optional(Str(64)),
    message: Type.Optional(Str(1000)),
  },
  { additionalProperties: false },
);

export const FileVersion = Type.Object(
  {
    id: Type.String(), file_id: Type.String(), version: Type.Integer(), size: Type.Integer(), sha256: Type.String(),
    stored: Type.Union([Type.Literal('inline'), Type.Literal('storage')]),
    content_type: Type.Union([Type.String(), Type.Null()]), language: Type.Union([Type.String(), Type.Null()]),
    author_id: Type.Union([Type.String(), Type.Null()]), message: Type.Union([Type.String(), Type.Null()]),
    restored_from: Type.Union([Type.Integer(), Type.Null()]), created_at: Type.String({ format: 'date-time' }),
  },
  { title: 'ProjectFileVersion' },
);

export const ProjectFile = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), path: Type.String(), language: Type.Union([Type.String(), Type.Null()]),
    current_version: Type.Integer(), size: Type.Integer(), sha256: Type.Union([Type.String(), Type.Null()]),
    created_by: Type.Union([Type.String(), Type.Null()]), created_at: Type.String({ format: 'date-time' }), updated_at: Type.String({ format: 'date-time' }),
  },
  { title: 'ProjectFile' },
);

/** A version with its content: text as `content`, anything else as `content_base64`. */
export const FileContent = Type.Object({
  file: ProjectFile,
  version: FileVersion,
  content: Type.Union([Type.String(), Type.Null()]),
  content_base64: Type.Union([Type.String(), Type.Null()]),
});

type FileRow = {
  id: string; project_id: string; path: string; language: string | null; current_version: number; size: number | string;
  sha256: string | null; created_by: string | null; created_at: Date | string; updated_at: Date | string;
};
type VersionRow = {
  id: string; file_id: string; project_id: string; version: number; content: string | null; storage_key: string | null;
  size: number | string; sha256: string; content_type: string | null; language: string | null; author_id: string | null;
  message: string | null; restored_from: number | null; created_at: Date | string;
};

export const fileToApi = (f: FileRow) => ({
  id: f.id, project_id: f.project_id, path: f.path, language: f.language, current_version: f.current_version, size: Number(f.size),
  sha256: f.sha256, created_by: f.created_by, created_at: iso(f.created_at), updated_at: iso(f.updated_at),
});
export const versionToApi = (v: VersionRow) => ({
  id: v.id, file_id: v.file_id, version: v.version, size: Number(v.size), sha256: v.sha256, stored: v.content !== null ? ('inline' as const) : ('storage' as const),
  content_type: v.content_type, language: v.language, author_id: v.author_id, message: v.message, restored_from: v.restored_from,
  created_at: isoOrNull(v.created_at) ?? '',
});

const VERSION_COLUMNS = ['id', 'file_id', 'project_id', 'version', 'content', 'storage_key', 'size', 'sha256', 'content_type', 'language', 'author_id', 'message', 'restored_from', 'created_at'] as const;

/**
 * Project files (seed 002): a path in a project with every save kept as a version (content inline
 * when it is small text, else in storage through the configured driver). Access follows the
 * project: members read, writers save/restore/delete; RLS checks the same.
 */
export class ProjectFilesService {
  constructor(
    private readonly projects: ProjectsService,
    private readonly driver: StorageDriver,
  ) {}

  private async writable(db: Executor, principal: Principal, projectId: string) {
    const a = await this.projects.access(db, principal, projectId);
    if (!canWrite(a.role)) throw errors.forbidden('Viewers can read this project but not change it');
    return a;
  }

  /**
   * Saves a new version (creating the file on its first save). The version row is written first and
   * the bytes after it, inside the request's transaction: a failed write rolls the row back.
   */
  async save(db: Executor, principal: Principal, projectId: string, body: Static<typeof SaveFileBody>) {
    await this.writable(db, principal, projectId);
    if (!pathSegments(body.path)) throw errors.invalidRequest('path must be non-empty segments without "." or ".."', { field: 'body.path' });
    if ((body.content === undefined) === (body.content_base64 === undefined)) {
      throw errors.invalidRequest('Send exactly one of content (text) or content_base64 (binary)', { field: 'body.content' });
    }
    const bytes = body.content !== undefined ? Buffer.from(body.content, 'utf8') : Buffer.from(body.content_base64 ?? '', 'base64');
    const inline = body.content !== undefined && bytes.length <= INLINE_MAX_BYTES ? body.content : null;
    const author = principal.kind === 'user' ? principal.userId : null;
    let file = (await db.selectFrom('project_files').selectAll().where('project_id', '=', projectId).where('path', '=', body.path).forUpdate().executeTakeFirst()) as FileRow | undefined;
    if (!file) {
      file = (await db
        .insertInto('project_files')
        .values({ id: newId('projectFile'), project_id: projectId, path: body.path, language: body.language ?? null, created_by: author })
        .returningAll()
        .executeTakeFirstOrThrow()) as FileRow;
    }
    return this.addVersion(db, file, {
      bytes,
      inline,
      contentType: body.content_type ?? (body.content !== undefined ? 'text/plain' : 'application/octet-stream'),
      language: body.language ?? file.language,
      author,
      message: body.message ?? null,
      restoredFrom: null,
    });
  }

  private async addVersion(
    db: Executor,
    file: FileRow,
    v: { bytes: Buffer; inline: string | null; contentType: string | null; language: string | null; author: string | null; message: string | null; restoredFrom: number | null; copyFrom?: string; sha256?: string },
  ) {
    const version = file.current_version + 1;
    const id = newId('projectFileVersion');
    const key = v.inline === null ? versionStorageKey(file.project_id, id) : null;
    // A copied version keeps the original's hash (same bytes; `bytes` is then only a placeholder of its size).
    const sha256 = v.sha256 ?? createHash('sha256').update(v.bytes).digest('hex');
    const row = (await db
      .insertInto('project_file_versions')
      .values({
        id, file_id: file.id, project_id: file.project_id, version, content: v.inline, storage_key: key, size: v.bytes.length, sha256,
        content_type: v.contentType, language: v.language, author_id: v.author, message: v.message, restored_from: v.restoredFrom,
      })
      .returning(VERSION_COLUMNS)
      .executeTakeFirstOrThrow()) as VersionRow;
    const updated = (await db
      .updateTable('project_files')
      .set({ current_version: version, size: v.bytes.length, sha256, language: v.language })
      .where('id', '=', file.id)
      .returningAll()
      .executeTakeFirstOrThrow()) as FileRow;
    if (key !== null) {
      if (v.copyFrom) await this.driver.copy(v.copyFrom, key);
      else await putVersionBytes(this.driver, key, v.bytes, v.contentType);
    }
    return { file: updated, version: row };
  }

  async list(db: Executor, principal: Principal, projectId: string) {
    await this.projects.access(db, principal, projectId);
    return (await db.selectFrom('project_files').selectAll().where('project_id', '=', projectId).orderBy('path').limit(1000).execute()) as FileRow[];
  }

  private async fileOf(db: Executor, principal: Principal, projectId: string, fileId: string, write: boolean): Promise<FileRow> {
    if (write) await this.writable(db, principal, projectId);
    else await this.projects.access(db, principal, projectId);
    const file = (await db.selectFrom('project_files').selectAll().where('id', '=', fileId).where('project_id', '=', projectId).executeTakeFirst()) as FileRow | undefined;
    if (!file) throw errors.notFound('File', fileId);
    return file;
  }

  private async versionOf(db: Executor, file: FileRow, version: number): Promise<VersionRow> {
    const row = (await db.selectFrom('project_file_versions').select(VERSION_COLUMNS).where('file_id', '=', file.id).where('version', '=', version).executeTakeFirst()) as VersionRow | undefined;
    if (!row) throw errors.notFound('Version', `${file.id}@${version}`);
    return row;
  }

  /** A version (the current one by default) with its content. */
  async read(db: Executor, principal: Principal, projectId: string, fileId: string, version?: number) {
    const file = await this.fileOf(db, principal, projectId, fileId, false);
    if (file.current_version === 0) throw errors.notFound('Version', `${file.id}@current`);
    const row = await this.versionOf(db, file, version ?? file.current_version);
    if (row.content !== null) return { file, version: row, content: row.content, content_base64: null };
    const stream = await this.driver.get(row.storage_key ?? '');
    if (!stream) throw errors.unavailable("This version's bytes are missing from storage; run `tally storage check`", { reason: 'storage_missing' });
    const bytes = await buffer(stream);
    const text = (row.content_type ?? '').startsWith('text/') ? bytes.toString('utf8') : null;
    return { file, version: row, content: text, content_base64: text === null ? bytes.toString('base64') : null };
  }

  async versions(db: Executor, principal: Principal, projectId: string, fileId: string) {
    const file = await this.fileOf(db, principal, projectId, fileId, false);
    return (await db.selectFrom('project_file_versions').select(VERSION_COLUMNS).where('file_id', '=', file.id).orderBy('version', 'desc').limit(1000).execute()) as VersionRow[];
  }

  /** What changed between two versions' metadata (size, hash, type, language, author). */
  async diff(db: Executor, principal: Principal, projectId: string, fileId: string, from: number, to: number) {
    const file = await this.fileOf(db, principal, projectId, fileId, false);
    const [a, b] = [await this.versionOf(db, file, from), await this.versionOf(db, file, to)];
    const fields = ['size', 'sha256', 'content_type', 'language', 'author_id'] as const;
    const changed = fields.filter((f) => String(a[f]) !== String(b[f]));
    return { from: versionToApi(a), to: versionToApi(b), same_content: a.sha256 === b.sha256, size_delta: Number(b.size) - Number(a.size), changed: [...changed] };
  }

  /** Restores an old version as a new one (history is never rewritten). */
  async restore(db: Executor, principal: Principal, projectId: string, fileId: string, version: number) {
    const file = await this.fileOf(db, principal, projectId, fileId, true);
    const old = await this.versionOf(db, file, version);
    const bytes = old.content !== null ? Buffer.from(old.content, 'utf8') : Buffer.alloc(Number(old.size));
    const saved = await this.addVersion(db, file, {
      bytes,
      inline: old.content,
      contentType: old.content_type,
      language: old.language,
      author: principal.kind === 'user' ? principal.userId : null,
      message: `restore of version ${version}`,
      restoredFrom: version,
      ...(old.storage_key ? { copyFrom: old.storage_key, sha256: old.sha256 } : {}),
    });
    return saved;
  }

  /** Deletes the file and its versions; their stored bytes go through the delete outbox (trigger). */
  async remove(db: Executor, principal: Principal, projectId: string, fileId: string): Promise<void> {
    const file = await this.fileOf(db, principal, projectId, fileId, true);
    await db.deleteFrom('project_files').where('id', '=', file.id).execute();
  }
}
