import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
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
    const temp = join(this.tmp, `${randomBytes(12).toString('hex')}.part`);
    let size = 0;
    try {
      await this.ensureDir(this.tmp);
      // Counted as it flows into the file (a 'data' listener set before an await would start the
      // flow early and lose the first chunks).
      body.on('data', (chunk: Buffer) => {
        size += chunk.length;
      });
      await pipeline(body, createWriteStream(temp, { flags: 'wx' }));
      await this.ensureDir(dirname(target));
      try {
        await rename(temp, target);
      } catch (err) {
        // The folder was removed since it was made (by hand): made again, once.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.made.delete(dirname(target));
        await this.ensureDir(dirname(target));
        await rename(temp, target);
      }
      return { size };
    } catch (err) {
      // A temporary folder removed by hand is made again by the next put.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.made.delete(this.tmp);
      await rm(temp, { force: true });
      throw err;
    }
  }

  /**
   * Folders this driver made or found: a put makes each at most once per process instead of
   * asking for it on every upload (two system calls fewer on the upload path).
   */
  private readonly made = new Set<string>();

  private async ensureDir(dir: string): Promise<void> {
    if (this.made.has(dir)) return;
    await mkdir(dir, { recursive: true });
    if (this.made.size >= 10_000) this.made.clear();
    this.made.add(dir);
  }

  /** Opens the file (one system call, no stat first: a missing key is ENOENT) and streams from it. */
  async get(key: string, range?: { start: number; end: number }): Promise<Readable | null> {
    let handle;
    try {
      handle = await open(this.file(key), 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR') return null;
      throw err;
    }
    return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
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
        // Dot-directories under the root are Tally's own (temporary files, resumable uploads), not objects.
        if (!(dir === this.root && e.name.startsWith('.'))) await this.walk(full, into);
      } else if (e.isFile()) into.push(relative(this.root, full).split(sep).join('/'));
    }
  }
}
