import { join } from 'node:path';
import type { StorageConfig } from '../../config/config.js';
import type { StorageDriver } from './storage.driver.js';
import { LocalDriver } from './storage.local-driver.js';
import { S3Driver } from './storage.s3-driver.js';

/** The configured driver (the server and `tally storage check` use the same); absent config = local disk under the data directory. */
export function createDriver(storage: StorageConfig | undefined, dataDir: string): StorageDriver {
  const s = storage ?? { driver: 'local' as const, root: join(dataDir, 'storage') };
  if (s.driver === 'local') return new LocalDriver(s.root);
  return new S3Driver({
    bucket: s.bucket,
    region: s.region,
    endpoint: s.endpoint,
    forcePathStyle: s.forcePathStyle,
    accessKeyId: s.accessKeyId,
    secretAccessKey: s.secretAccessKey,
  });
}
