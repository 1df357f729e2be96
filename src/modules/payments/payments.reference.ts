import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/**
 * Checkout references: the only way a payment's metadata may choose the user (and, optionally, the
 * package or plan) it is for. Tally signs them (`POST /v1/checkout-references`, service only); the
 * app puts the string in the checkout (Stripe metadata `tally_ref` or `client_reference_id`,
 * Lemon Squeezy `checkout[custom][tally_ref]`, Creem metadata `tally_ref`, PayPal `custom_id`).
 *
 * Format (≤ 127 characters for usual ids, PayPal's custom_id limit; `~` appears in no id):
 *
 *     tr1~<user id>~<p<package id> | l<plan id> | empty>~<expiry, unix seconds, base 36>~<mac>
 *
 * mac = the first 16 bytes of HMAC-SHA256(key, everything before the last `~`), base64url. The key
 * is derived from TALLY_ENCRYPTION_KEY with HKDF-SHA256 (info "tally checkout reference v1"), so
 * no new secret is needed; retired encryption keys still verify references signed before a rotation.
 */
export interface CheckoutReference {
  userId: string;
  packageId: string | null;
  planId: string | null;
  expiresAt: Date;
}

const PREFIX = 'tr1';
const INFO = 'tally checkout reference v1';

export function referenceKey(master: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), INFO, 32));
}

const mac = (key: Buffer, body: string) => createHmac('sha256', key).update(body).digest().subarray(0, 16).toString('base64url');

export function signReference(key: Buffer, ref: CheckoutReference): string {
  const item = ref.packageId ? `p${ref.packageId}` : ref.planId ? `l${ref.planId}` : '';
  const body = [PREFIX, ref.userId, item, Math.floor(ref.expiresAt.getTime() / 1000).toString(36)].join('~');
  return `${body}~${mac(key, body)}`;
}

/** Whether a string looks like a reference at all (a bare PayPal custom_id, say). */
export const isReference = (s: string): boolean => s.startsWith(`${PREFIX}~`);

/**
 * The reference if its signature verifies under one of `keys` and it has not expired; otherwise
 * null with the reason (a forged, tampered or stale reference is treated as absent, never as an error).
 */
export function verifyReference(keys: readonly Buffer[], value: string, now: Date): { ref: CheckoutReference | null; reason: string | null } {
  const parts = value.split('~');
  if (parts.length !== 5 || parts[0] !== PREFIX) return { ref: null, reason: 'not a checkout reference' };
  const [, userId = '', item = '', exp = '', sig = ''] = parts;
  const body = parts.slice(0, 4).join('~');
  const given = Buffer.from(sig, 'utf8');
  let valid = false;
  for (const key of keys) {
    const expected = Buffer.from(mac(key, body), 'utf8');
    if (expected.length === given.length && timingSafeEqual(expected, given)) valid = true;
  }
  if (!valid || userId.length === 0 || !/^[0-9a-z]{1,12}$/.test(exp)) return { ref: null, reason: 'checkout reference signature does not verify' };
  const expiresAt = new Date(parseInt(exp, 36) * 1000);
  if (expiresAt.getTime() <= now.getTime()) return { ref: null, reason: `checkout reference expired at ${expiresAt.toISOString()}` };
  return {
    ref: {
      userId,
      packageId: item.startsWith('p') && item.length > 1 ? item.slice(1) : null,
      planId: item.startsWith('l') && item.length > 1 ? item.slice(1) : null,
      expiresAt,
    },
    reason: null,
  };
}
