import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inRequestTransaction } from '../src/db/request-role.js';
import type { Principal } from '../src/core/principal.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { heldAndExpected } from './support/storage.js';

/**
 * Project files (seed 002): every save is a version with its author, small text inline and the
 * rest in storage; versions can be read, compared and restored; access follows the project's
 * roles (and RLS); deleting files or the project leaves no bytes behind once the outbox is swept.
 */
describe(`project files and versions (${TARGET})`, () => {
  let app: TestApp;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let viewer: Awaited<ReturnType<typeof signUp>>;
  let stranger: Awaited<ReturnType<typeof signUp>>;
  let projectId: string;
  const as = (userId: string): Principal => ({ kind: 'user', userId, email: null, via: 'jwt', keyId: null, scopes: ['*'], sessionId: null });

  beforeAll(async () => {
    app = await createTestApp();
    [owner, viewer, stranger] = [await signUp(app), await signUp(app), await signUp(app)];
    const ws = (await owner.api.post('/v1/workspaces', { name: 'Team' })).body.id;
    await owner.api.post(`/v1/workspaces/${ws}/members`, { user_id: viewer.user.id, role: 'viewer' });
    projectId = (await owner.api.post('/v1/projects', { name: 'IDE', workspace_id: ws })).body.id;
  });
  afterAll(async () => {
    await app?.close();
  });

  it('every save is a version with its author; small text is inline, large text and binary go to storage', async () => {
    const first = await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'src/app.ts', content: 'let a = 1;', language: 'typescript', message: 'init' });
    expect(first.status).toBe(201);
    expect(first.body.version).toMatchObject({ version: 1, stored: 'inline', author_id: owner.user.id, size: 10, language: 'typescript', message: 'init' });
    const fileId = first.body.file.id;
    const big = 'x'.repeat(20_000);
    const second = await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'src/app.ts', content: big });
    expect(second.body.version).toMatchObject({ version: 2, stored: 'storage', size: 20_000 });
    expect(second.body.file).toMatchObject({ id: fileId, current_version: 2, size: 20_000 });
    const current = await owner.api.get(`/v1/projects/${projectId}/files/${fileId}`);
    expect(current.body.content).toBe(big);
    const v1 = await owner.api.get(`/v1/projects/${projectId}/files/${fileId}?version=1`);
    expect(v1.body.content).toBe('let a = 1;');
    const bin = await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'assets/logo.bin', content_base64: Buffer.from([0, 1, 2, 255]).toString('base64') });
    expect(bin.body.version.stored).toBe('storage');
    const binRead = await owner.api.get(`/v1/projects/${projectId}/files/${bin.body.file.id}`);
    expect(Buffer.from(binRead.body.content_base64, 'base64')).toEqual(Buffer.from([0, 1, 2, 255]));
    const versions = await owner.api.get(`/v1/projects/${projectId}/files/${fileId}/versions`);
    expect(versions.body.data.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    const { held, expected } = await heldAndExpected(app);
    expect(held).toEqual(expected);
  });

  it('diff compares two versions’ metadata; restore makes a new version with the old content', async () => {
    const saved = await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'README.md', content: 'one' });
    const fileId = saved.body.file.id;
    await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'README.md', content: 'three', language: 'markdown' });
    const diff = await owner.api.get(`/v1/projects/${projectId}/files/${fileId}/diff?from=1&to=2`);
    expect(diff.body).toMatchObject({ same_content: false, size_delta: 2 });
    expect(diff.body.changed).toEqual(expect.arrayContaining(['size', 'sha256', 'language']));
    const restored = await owner.api.post(`/v1/projects/${projectId}/files/${fileId}/restore`, { version: 1 });
    expect(restored.status).toBe(201);
    expect(restored.body.version).toMatchObject({ version: 3, restored_from: 1, sha256: saved.body.version.sha256 });
    expect((await owner.api.get(`/v1/projects/${projectId}/files/${fileId}`)).body.content).toBe('one');
    // A stored version restores by copying its bytes, keeping its hash.
    const big = await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'big.txt', content: 'y'.repeat(17_000) });
    await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'big.txt', content: 'small' });
    const back = await owner.api.post(`/v1/projects/${projectId}/files/${big.body.file.id}/restore`, { version: 1 });
    expect(back.body.version).toMatchObject({ version: 3, stored: 'storage', sha256: big.body.version.sha256 });
    expect((await owner.api.get(`/v1/projects/${projectId}/files/${big.body.file.id}`)).body.content).toBe('y'.repeat(17_000));
  });

  it('viewers read but cannot save, restore or delete (403); strangers see nothing (404), in the service and under RLS', async () => {
    const saved = await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'src/x.ts', content: 'x' });
    const fileId = saved.body.file.id;
    expect((await viewer.api.get(`/v1/projects/${projectId}/files/${fileId}`)).status).toBe(200);
    expect((await viewer.api.post(`/v1/projects/${projectId}/files`, { path: 'src/x.ts', content: 'pwned' })).status).toBe(403);
    expect((await viewer.api.post(`/v1/projects/${projectId}/files/${fileId}/restore`, { version: 1 })).status).toBe(403);
    expect((await viewer.api.del(`/v1/projects/${projectId}/files/${fileId}`)).status).toBe(403);
    expect((await stranger.api.get(`/v1/projects/${projectId}/files`)).status).toBe(404);
    expect((await stranger.api.get(`/v1/projects/${projectId}/files/${fileId}`)).status).toBe(404);
    // The second lock: row-level security on its own.
    const seen = await inRequestTransaction(app.database.db, as(stranger.user.id), (trx) => trx.selectFrom('project_file_versions').select('id').where('file_id', '=', fileId).execute());
    expect(seen).toEqual([]);
    await expect(
      inRequestTransaction(app.database.db, as(viewer.user.id), (trx) =>
        trx.insertInto('project_file_versions').values({ id: 'pfv_evil', file_id: fileId, project_id: projectId, version: 99, content: 'x', size: 1, sha256: 'a'.repeat(64) }).execute(),
      ),
    ).rejects.toThrow();
  });

  it('deleting a file, or the whole project, leaves no stored bytes once the outbox is swept', async () => {
    const f = await owner.api.post(`/v1/projects/${projectId}/files`, { path: 'gone.txt', content: 'z'.repeat(30_000) });
    expect((await owner.api.del(`/v1/projects/${projectId}/files/${f.body.file.id}`)).status).toBe(200);
    await app.services.storage.sweep();
    let state = await heldAndExpected(app);
    expect(state.held).toEqual(state.expected);
    expect((await owner.api.del(`/v1/projects/${projectId}`)).status).toBe(200);
    await app.services.storage.sweep();
    state = await heldAndExpected(app);
    expect(state.held).toEqual(state.expected);
    expect(state.held.filter((k) => k.startsWith(`f/${projectId}/`))).toEqual([]);
  });
});
