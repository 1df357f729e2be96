import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertKey, type StorageDriver } from './storage.driver.js';

/**
 * Objects as files under one root (default `TALLY_DATA_DIR/storage`, next to PGlite). A put
 * writes to a temporary file in `<root>/.tmp` and renames it into place only when the whole
 * stream arrived, so a refused or broken upload leaves nothing under its key.
 */
export class LocalDriver implements StorageDriver {
  readonly name = 'local' as const;
  private readonly tmp: string;

  constructor(private readonly root: string) {
    this.tmp = join(root, '.tmp');
  }

  private file(key: string): string {
    assertKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, body: Readable, _options: { contentType: string | null }): Promise<{ size: number }> {
    const target = this.file(key);
    await mkdir(this.tmp, { recursive: true });
    const temp = join(this.tmp, `${randomBytes(12).toString('hex')}.part`);
    let size = 0;
    body.on('data', (chunk: Buffer) => {
      size += chunk.length;
    });
    try {
      await pipeline(body, createWriteStream(temp, { flags: 'wx' }));
      await mkdir(dirname(target), { recursive: true });
      await rename(temp, target);
      return { size };
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  async get(key: string, range?: { start: number; end: number }): Promise<Readable | null> {
    const file = this.file(key);
    if (!(await this.head(key))) return null;
    return createReadStream(file, range ? { start: range.start, end: range.end } : {});
  }

  async head(key: string): Promise<{ size: number } | null> {
    try {
      const s = await stat(this.file(key));
      return s.isFile() ? { size: s.size } : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.file(key), { force: true });
  }

  async copy(from: string, to: string): Promise<void> {
    const target = this.file(to);
    await mkdir(dirname(target), { recursive: true });
    await copyFile(this.file(from), target);
  }

  async list(prefix: string, options: { after?: string; limit: number }): Promise<string[]> {
    const keys: string[] = [];
    await this.walk(this.root, keys);
    return keys
      .filter((k) => k.startsWith(prefix) && (options.after === undefined || k > options.after))
      .sort()
      .slice(0, options.limit);
  }

  private async walk(dir: string, into: string[]): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const full = join(dir, e.name);
      if (e.isDirectory()) {
        if (full !== this.tmp) await this.walk(full, into);
      } else if (e.isFile()) into.push(relative(this.root, full).split(sep).join('/'));
    }
  }
}
