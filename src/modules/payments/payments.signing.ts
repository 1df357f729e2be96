import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Headers, Verification } from './payments.provider.js';

/** HMAC-SHA256 of the exact bytes, hex. */
export function hmacHex(secret: string, data: Buffer | string): string {
  return createHmac('sha256', secret).update(data).digest('hex');
}

/** Constant-time comparison of two hex strings (unequal lengths are simply unequal). */
export function hexEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** One header value (Fastify gives arrays for repeated headers; the first counts). */
export function header(headers: Headers, name: string): string | null {
  const v = headers[name.toLowerCase()];
  const first = Array.isArray(v) ? v[0] : v;
  return first && first.length > 0 ? first : null;
}

/**
 * The scheme Creem and Lemon Squeezy share: one header holding the hex HMAC-SHA256 of the raw body
 * under the webhook secret. A verified body that is not JSON is still verified (payload undefined):
 * the caller answers it as malformed, not as forged.
 */
export function verifyBodyHmac(raw: Buffer, signature: string | null, secret: string, headerName: string): Verification {
  if (!signature) return { ok: false, reason: `missing ${headerName} header` };
  if (!hexEqual(hmacHex(secret, raw), signature.trim().toLowerCase())) return { ok: false, reason: `${headerName} does not match` };
  try {
    return { ok: true, payload: JSON.parse(raw.toString('utf8')) as unknown };
  } catch {
    return { ok: true, payload: undefined };
  }
}
