import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { StorageConfig } from '../../config/config.js';
import type { StorageDriver } from './storage.driver.js';
import { LocalDriver } from './storage.local-driver.js';
import type { S3DriverOptions } from './storage.s3-driver.js';

/** The configured driver (the server and `tally storage check` use the same); absent config = local disk under the data directory. */
export function createDriver(storage: StorageConfig | undefined, dataDir: string): StorageDriver {
  const s = storage ?? { driver: 'local' as const, root: join(dataDir, 'storage') };
  if (s.driver === 'local') return new LocalDriver(s.root);
  return new LazyS3Driver({
    bucket: s.bucket,
    region: s.region,
    endpoint: s.endpoint,
    forcePathStyle: s.forcePathStyle,
    accessKeyId: s.accessKeyId,
    secretAccessKey: s.secretAccessKey,
  });
}

/**
 * The S3 driver, its SDK imported on first use: `@aws-sdk/client-s3` alone takes ~0.3 s to load,
 * which every start (and every CLI command) paid even on local disk (issue 17, the warm start).
 */
class LazyS3Driver implements StorageDriver {
  readonly name = 's3' as const;
  private inner: Promise<StorageDriver> | null = null;

  constructor(private readonly options: S3DriverOptions) {}

  private driver(): Promise<StorageDriver> {
    this.inner ??= import('./storage.s3-driver.js').then((m) => new m.S3Driver(this.options));
    return this.inner;
  }

  async put(key: string, body: Readable, options: { contentType: string | null }) {
    return (await this.driver()).put(key, body, options);
  }
  async get(key: string, range?: { start: number; end: number }) {
    return (await this.driver()).get(key, range);
  }
  async head(key: string) {
    return (await this.driver()).head(key);
  }
  async delete(key: string) {
    return (await this.driver()).delete(key);
  }
  async copy(from: string, to: string) {
    return (await this.driver()).copy(from, to);
  }
  async list(prefix: string, options: { after?: string; limit: number }) {
    return (await this.driver()).list(prefix, options);
  }
  async presignGet(key: string, expiresInSeconds: number) {
    const d = await this.driver();
    return d.presignGet ? d.presignGet(key, expiresInSeconds) : null;
  }
}
