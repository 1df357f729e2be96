import { Readable } from 'node:stream';
import type { TestApp } from './harness.js';
import type { Json, Res } from './client.js';

/** The head of a real 1×1 PNG: enough for file-type to recognise image/png. */
export const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d4948445200000001000000010806000000' + '1f15c4890000000d49444154789c6300010000050001' + '0d0a2db40000000049454e44ae426082',
  'hex',
);

/** Sends raw bytes (a Buffer, or a stream without Content-Length) the way a client uploads. */
export async function rawPut(
  app: TestApp,
  url: string,
  body: Buffer | Readable,
  opts: { token?: string | null; type?: string; headers?: Record<string, string> } = {},
): Promise<Res<Json>> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.type) headers['content-type'] = opts.type;
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  const res = await app.server.inject({ method: 'PUT', url, headers, payload: body });
  return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : null, headers: res.headers };
}

/** A raw read: status, headers and the bytes. */
export async function rawGet(app: TestApp, url: string, opts: { token?: string | null; headers?: Record<string, string>; method?: 'GET' | 'HEAD' } = {}) {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  const res = await app.server.inject({ method: opts.method ?? 'GET', url, headers });
  return { status: res.statusCode, headers: res.headers, bytes: res.rawPayload };
}

/** A body of `size` bytes streamed in chunks, with no Content-Length (chunked). */
export function streamOf(size: number, chunk = 16_384): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) return this.push(null);
      const n = Math.min(chunk, size - sent);
      sent += n;
      this.push(Buffer.alloc(n, 0x61));
    },
  });
}

/** What the driver holds, and what the rows say it should: equal when nothing is orphaned or missing. */
export async function heldAndExpected(app: TestApp): Promise<{ held: string[]; expected: string[] }> {
  const held = await app.services.storage.driver.list('', { limit: 100_000 });
  const objects = await app.database.db.selectFrom('storage_objects').select('storage_key').execute();
  const versions = await app.database.db.selectFrom('project_file_versions').select('storage_key').where('storage_key', 'is not', null).execute();
  return { held: held.sort(), expected: [...objects.map((o) => o.storage_key), ...versions.map((v) => String(v.storage_key))].sort() };
}
