import type { Readable } from 'node:stream';

/**
 * Where object bytes live. Tally's rows say what an object is; a driver only keeps bytes under
 * keys Tally makes (`o/<bucket>/<object id>`, never a caller's path). Local disk and S3 implement
 * the same contract (test/storage.drivers.test.ts runs one suite on both).
 */
export interface StorageDriver {
  readonly name: 'local' | 's3';
  /**
   * Stores the whole stream under `key`, or nothing: a stream that fails (too large, wrong type,
   * a client gone) leaves no key behind. Overwrites an existing key.
   */
  put(key: string, body: Readable, options: { contentType: string | null }): Promise<{ size: number }>;
  /** The bytes of `key` from `start` to `end` inclusive (all when no range); null when there is no such key. */
  get(key: string, range?: { start: number; end: number }): Promise<Readable | null>;
  head(key: string): Promise<{ size: number } | null>;
  /** Deleting a key that is not there succeeds (the outbox may retry a delete that already happened). */
  delete(key: string): Promise<void>;
  copy(from: string, to: string): Promise<void>;
  /** Keys under `prefix` in key order, after `after` (exclusive), at most `limit`. */
  list(prefix: string, options: { after?: string; limit: number }): Promise<string[]>;
  /** A URL the backend itself serves for a while, where it can (S3); null otherwise. */
  presignGet?(key: string, expiresInSeconds: number): Promise<string | null>;
}

/** Keys Tally makes: lowercase, slash-separated, no dot segments (a driver may trust them). */
export const STORAGE_KEY = /^[a-z0-9][a-z0-9_-]*(\/[a-z0-9][a-z0-9_.-]*)*$/;

export function assertKey(key: string): void {
  if (!STORAGE_KEY.test(key) || key.length > 300) throw new Error(`invalid storage key: ${key}`);
}
