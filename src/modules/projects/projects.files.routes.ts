import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { IdParam } from '../../core/schemas.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { FileContent, FileVersion, fileToApi, ProjectFile, type ProjectFilesService, SaveFileBody, versionToApi } from './projects.files.service.js';

const tags = ['projects'];
const read = { auth: 'any' as const, scope: 'projects:read' as const };
const write = { auth: 'any' as const, scope: 'projects:write' as const };
const P = Type.Object({ id: IdParam });
const F = Type.Object({ id: IdParam, file_id: IdParam });
const Saved = Type.Object({ file: ProjectFile, version: FileVersion });
const VersionNo = Type.Integer({ minimum: 1, maximum: 1_000_000 });

/** Project files and their versions (seed 002; docs/storage.md, "Project files"). */
export function registerProjectFileRoutes(app: FastifyInstance, deps: RouteDeps, files: ProjectFilesService): void {
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/projects/:id/files', summary: 'Save a file: a new version with its author (the file is created on its first save)', tags,
    ...write, params: P, body: SaveFileBody,
    response: { 201: Saved, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => {
      const s = await files.save(ctx.db, ctx.principal, params.id, body);
      return created({ file: fileToApi(s.file), version: versionToApi(s.version) });
    },
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/projects/:id/files', summary: "List a project's files in path order", tags, ...read, params: P,
    response: { 200: Type.Object({ data: Type.Array(ProjectFile), next_cursor: Type.Null() }), 404: ErrorResponse },
    handler: async (ctx, { params }) => ok({ data: (await files.list(ctx.db, ctx.principal, params.id)).map(fileToApi), next_cursor: null }),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/projects/:id/files/:file_id', summary: 'Read a file: its current version (or ?version=) with the content', tags, ...read,
    params: F, query: Type.Object({ version: Type.Optional(VersionNo) }, { additionalProperties: false }),
    response: { 200: FileContent, 404: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      const r = await files.read(ctx.db, ctx.principal, params.id, params.file_id, query.version);
      return ok({ file: fileToApi(r.file), version: versionToApi(r.version), content: r.content, content_base64: r.content_base64 });
    },
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/projects/:id/files/:file_id/versions', summary: "A file's versions, newest first", tags, ...read, params: F,
    response: { 200: Type.Object({ data: Type.Array(FileVersion), next_cursor: Type.Null() }), 404: ErrorResponse },
    handler: async (ctx, { params }) => ok({ data: (await files.versions(ctx.db, ctx.principal, params.id, params.file_id)).map(versionToApi), next_cursor: null }),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/projects/:id/files/:file_id/diff', summary: "What changed between two versions' metadata", tags, ...read,
    params: F, query: Type.Object({ from: VersionNo, to: VersionNo }, { additionalProperties: false }),
    response: {
      200: Type.Object({ from: FileVersion, to: FileVersion, same_content: Type.Boolean(), size_delta: Type.Integer(), changed: Type.Array(Type.String()) }),
      404: ErrorResponse,
    },
    handler: async (ctx, { params, query }) => ok(await files.diff(ctx.db, ctx.principal, params.id, params.file_id, query.from, query.to)),
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/projects/:id/files/:file_id/restore', summary: 'Restore an old version as a new one', tags, ...write,
    params: F, body: Type.Object({ version: VersionNo }, { additionalProperties: false }),
    response: { 201: Saved, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => {
      const s = await files.restore(ctx.db, ctx.principal, params.id, params.file_id, body.version);
      return created({ file: fileToApi(s.file), version: versionToApi(s.version) });
    },
  });
  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/projects/:id/files/:file_id', summary: 'Delete a file and its versions (stored bytes follow through the outbox)', tags, ...write,
    params: F, response: { 200: Type.Object({ id: Type.String(), deleted: Type.Literal(true) }), 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      await files.remove(ctx.db, ctx.principal, params.id, params.file_id);
      return ok({ id: params.file_id, deleted: true as const });
    },
  });
}
