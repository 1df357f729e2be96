import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StorageDriver } from '../src/modules/storage/storage.driver.js';
import { LocalDriver } from '../src/modules/storage/storage.local-driver.js';
import { S3Driver } from '../src/modules/storage/storage.s3-driver.js';
import { createDriver } from '../src/modules/storage/storage.drivers.js';

/**
 * One contract, two drivers: local disk and S3 (against s3rver, an in-process S3 on 127.0.0.1).
 * A put stores all or nothing; ranges, head, copy, list (paged past `after`) and idempotent
 * deletes behave the same on both.
 */
const dirs: string[] = [];
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), 'tally-driver-'));
  dirs.push(d);
  return d;
};
let s3: S3rver;
let s3Port = 0;

beforeAll(async () => {
  s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: temp(), configureBuckets: [{ name: 'tally-test' }] });
  s3Port = (await s3.run()).port;
});
afterAll(async () => {
  await s3?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const drivers: Array<[string, () => StorageDriver]> = [
  ['local', () => new LocalDriver(temp())],
  [
    's3',
    () =>
      new S3Driver({
        bucket: 'tally-test',
        region: 'us-east-1',
        endpoint: `http://127.0.0.1:${s3Port}`,
        forcePathStyle: true,
        accessKeyId: 'S3RVER',
        secretAccessKey: 'S3RVER',
        spoolDir: temp(),
      }),
  ],
  [
    // As a deployment configures it: createDriver's S3 driver loads the SDK on first use.
    's3-configured',
    () =>
      createDriver(
        {
          driver: 's3',
          bucket: 'tally-test',
          region: 'us-east-1',
          endpoint: `http://127.0.0.1:${s3Port}`,
          forcePathStyle: true,
          accessKeyId: 'S3RVER',
          secretAccessKey: 'S3RVER',
        },
        temp(),
      ),
  ],
];

describe.each(drivers)('storage driver contract (%s)', (name, make) => {
  let driver: StorageDriver;
  const prefix = `o/${name}-${Date.now()}`;
  beforeAll(() => {
    driver = make();
  });

  it('puts a stream and reads it back whole and by range; head gives the size', async () => {
    const key = `${prefix}/a`;
    expect(await driver.put(key, Readable.from([Buffer.from('hello '), Buffer.from('world')]), { contentType: 'text/plain' })).toEqual({ size: 11 });
    expect(await text(must(await driver.get(key)))).toBe('hello world');
    expect(await text(must(await driver.get(key, { start: 6, end: 10 })))).toBe('world');
    expect(await driver.head(key)).toEqual({ size: 11 });
  });

  it('a stream that fails half-way leaves nothing under its key', async () => {
    const key = `${prefix}/broken`;
    async function* failing() {
      yield Buffer.from('partial bytes');
      throw new Error('client went away');
    }
    await expect(driver.put(key, Readable.from(failing()), { contentType: null })).rejects.toThrow('client went away');
    expect(await driver.head(key)).toBeNull();
    expect(await driver.get(key)).toBeNull();
    expect(await driver.list(`${prefix}/broken`, { limit: 10 })).toEqual([]);
  });

  it('copies, lists in key order past `after`, and deletes idempotently', async () => {
    await driver.put(`${prefix}/l/1`, Readable.from([Buffer.from('1')]), { contentType: null });
    await driver.put(`${prefix}/l/2`, Readable.from([Buffer.from('2')]), { contentType: null });
    await driver.copy(`${prefix}/l/2`, `${prefix}/l/3`);
    expect(await text(must(await driver.get(`${prefix}/l/3`)))).toBe('2');
    expect(await driver.list(`${prefix}/l/`, { limit: 10 })).toEqual([`${prefix}/l/1`, `${prefix}/l/2`, `${prefix}/l/3`]);
    expect(await driver.list(`${prefix}/l/`, { after: `${prefix}/l/1`, limit: 1 })).toEqual([`${prefix}/l/2`]);
    await driver.delete(`${prefix}/l/2`);
    await driver.delete(`${prefix}/l/2`);
    expect(await driver.head(`${prefix}/l/2`)).toBeNull();
    expect(await driver.list(`${prefix}/l/`, { limit: 10 })).toEqual([`${prefix}/l/1`, `${prefix}/l/3`]);
  });

  it('refuses keys Tally would never make (no traversal into the root)', async () => {
    await expect(driver.put('../escape', Readable.from([Buffer.from('x')]), { contentType: null })).rejects.toThrow('invalid storage key');
    await expect(driver.head('o/../../etc/passwd')).rejects.toThrow('invalid storage key');
  });
});

function must<T>(v: T | null): T {
  if (v === null) throw new Error('expected a value');
  return v;
}
