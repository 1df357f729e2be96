import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { fileTypeFromBuffer, supportedMimeTypes } from 'file-type';
import type { DomainError } from '../../core/errors.js';

/** file-type needs at most this many bytes of a file's head to tell its type. */
export const SNIFF_BYTES = 4100;

/** `type/sub` without parameters, lower-cased; null when there is none or it is malformed. */
export function mediaType(value: string | undefined | null): string | null {
  const t = value?.split(';')[0]?.trim().toLowerCase();
  return t && /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/.test(t) ? t : null;
}

/** A bucket's allowed list: exact types and `type/*`; null = anything. */
export function typeAllowed(allowed: readonly string[] | null, type: string | null): boolean {
  if (allowed === null) return true;
  if (type === null) return false;
  return allowed.some((a) => a === type || (a.endsWith('/*') && type.startsWith(a.slice(0, -1))));
}

/** Whether file-type can recognise this type by content (so a claim of it can be checked). */
export const sniffable = (type: string): boolean => supportedMimeTypes.has(type as never);

export interface UploadResult {
  size: number;
  sha256: string;
  sniffed: string | null;
}

export interface GuardOptions {
  /** Most bytes the body may have; past it the stream fails with `tooLarge()`. */
  limit: number;
  tooLarge: () => DomainError;
  /** Called once with the head of the body (up to SNIFF_BYTES) and what file-type made of it. */
  checkType: (sniffed: string | null) => DomainError | null;
}

/**
 * The upload pipeline's guard: counts and hashes the body as it streams and holds back its first
 * SNIFF_BYTES until the content's real type is known and allowed, so a refused body (too large,
 * wrong type) fails the stream before a byte of it reaches the driver — or, for the size, as soon
 * as it passes the limit, and the driver then keeps nothing (StorageDriver.put).
 */
export function guardUpload(source: Readable, options: GuardOptions): { stream: Readable; result: () => UploadResult } {
  const hash = createHash('sha256');
  let size = 0;
  let sniffed: string | null = null;
  async function* run(): AsyncGenerator<Buffer> {
    let head: Buffer[] = [];
    let headBytes = 0;
    let checked = false;
    const check = async () => {
      const buf = Buffer.concat(head);
      sniffed = (await fileTypeFromBuffer(buf))?.mime ?? null;
      const refusal = options.checkType(sniffed);
      if (refusal) throw refusal;
      checked = true;
      head = [];
      return buf;
    };
    // A refusal must not destroy the request (that would reset the connection before the 413/415
    // is sent): stop reading, and let the server discard the rest of the body.
    for await (const raw of source.iterator({ destroyOnReturn: false })) {
      const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as Uint8Array);
      size += chunk.length;
      if (size > options.limit) throw options.tooLarge();
      hash.update(chunk);
      if (checked) {
        yield chunk;
        continue;
      }
      head.push(chunk);
      headBytes += chunk.length;
      if (headBytes >= SNIFF_BYTES) yield await check();
    }
    if (!checked) {
      const buf = await check();
      if (buf.length > 0) yield buf;
    }
  }
  return {
    stream: Readable.from(run(), { objectMode: false }),
    result: () => ({ size, sha256: hash.digest('hex'), sniffed }),
  };
}
