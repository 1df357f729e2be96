import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/**
 * What Tally signs when it creates a checkout (docs/payments.md, "Checkouts"): who buys, what,
 * at which price, until when, and the nonce — the checkout's own id, so one signed checkout buys
 * once. The webhook that follows verifies the signature before it trusts any of it.
 *
 * The MAC is HMAC-SHA256 over a canonical text of the fields, keyed with HKDF-SHA256 of
 * TALLY_ENCRYPTION_KEY (info "tally checkout v1": a key of its own, apart from checkout references'),
 * so no new secret is needed; retired encryption keys still verify checkouts signed before a rotation.
 */
export interface SignedFields {
  /** The nonce: Tally's checkout id (`chk_…`). */
  checkoutId: string;
  userId: string;
  /** `package:<id>` or `plan:<id>:<monthly|yearly>`. */
  item: string;
  /** Minor units, net of tax. */
  amount: number;
  currency: string;
  /** Whole seconds. */
  expiresAt: Date;
}

/**
 * The metadata keys a checkout carries (Stripe metadata, Lemon Squeezy custom data, Creem
 * metadata). PayPal's `custom_id` holds at most 127 characters, so it carries the compact form
 * (`tc1~<checkout id>~<expiry, base 36>~<mac>`) and the webhook reads the other fields from the
 * checkout row, under the same MAC.
 */
export const KEYS = {
  checkout: 'tally_checkout',
  user: 'tally_user',
  item: 'tally_item',
  price: 'tally_price',
  expires: 'tally_expires',
  sig: 'tally_sig',
} as const;

const INFO = 'tally checkout v1';
const COMPACT = 'tc1';

export function checkoutKey(master: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), INFO, 32));
}

const unix = (d: Date) => Math.floor(d.getTime() / 1000);
const canonical = (f: SignedFields) => [INFO, f.checkoutId, f.userId, f.item, String(f.amount), f.currency, String(unix(f.expiresAt))].join('\n');
const macOf = (key: Buffer, f: SignedFields) => createHmac('sha256', key).update(canonical(f)).digest('base64url');

/** The signed metadata for the providers that take a metadata object. */
export function signedMetadata(key: Buffer, f: SignedFields): Record<string, string> {
  return {
    [KEYS.checkout]: f.checkoutId,
    [KEYS.user]: f.userId,
    [KEYS.item]: f.item,
    [KEYS.price]: `${f.amount} ${f.currency}`,
    [KEYS.expires]: String(unix(f.expiresAt)),
    [KEYS.sig]: macOf(key, f),
  };
}

/** PayPal's `custom_id`: the nonce, the expiry and the MAC over every field (≤ 127 characters). */
export function compactToken(key: Buffer, f: SignedFields): string {
  return [COMPACT, f.checkoutId, unix(f.expiresAt).toString(36), macOf(key, f)].join('~');
}

export const isCompactToken = (s: string): boolean => s.startsWith(`${COMPACT}~`);

/** A compact token as metadata keys (`tally_checkout`, `tally_expires`, `tally_sig`); null if malformed. */
export function parseCompactToken(s: string): Record<string, string> | null {
  const parts = s.split('~');
  const [prefix, checkoutId = '', exp = '', sig = ''] = parts;
  if (parts.length !== 4 || prefix !== COMPACT || !checkoutId || !/^[0-9a-z]{1,12}$/.test(exp) || !sig) return null;
  return { [KEYS.checkout]: checkoutId, [KEYS.expires]: String(parseInt(exp, 36)), [KEYS.sig]: sig };
}

/**
 * The signed fields a metadata map states, where it states them; `fallback` fills the ones it
 * leaves out (PayPal's compact token: from the checkout row). Null when a stated field is malformed.
 */
export function fieldsOf(metadata: Record<string, string>, fallback: SignedFields | null): SignedFields | null {
  const checkoutId = metadata[KEYS.checkout] ?? fallback?.checkoutId;
  const userId = metadata[KEYS.user] ?? fallback?.userId;
  const item = metadata[KEYS.item] ?? fallback?.item;
  const price = metadata[KEYS.price];
  const m = price === undefined ? null : /^(\d{1,15}) ([a-z]{3})$/.exec(price);
  if (price !== undefined && !m) return null;
  const amount = m ? Number(m[1]) : fallback?.amount;
  const currency = m ? m[2] : fallback?.currency;
  const exp = metadata[KEYS.expires];
  if (exp !== undefined && !/^\d{1,12}$/.test(exp)) return null;
  const expiresAt = exp !== undefined ? new Date(Number(exp) * 1000) : fallback?.expiresAt;
  if (!checkoutId || !userId || !item || amount === undefined || !currency || !expiresAt) return null;
  return { checkoutId, userId, item, amount, currency, expiresAt };
}

/** Whether the metadata states every signed field itself (no checkout row needed to verify it). */
export const isComplete = (metadata: Record<string, string>): boolean => [KEYS.checkout, KEYS.user, KEYS.item, KEYS.price, KEYS.expires].every((k) => metadata[k] !== undefined);

/** Whether `sig` is Tally's MAC over `f` under one of `keys` (constant time; every key tried). */
export function verifyFields(keys: readonly Buffer[], f: SignedFields, sig: string): boolean {
  const given = Buffer.from(sig, 'utf8');
  let valid = false;
  for (const key of keys) {
    const expected = Buffer.from(macOf(key, f), 'utf8');
    if (expected.length === given.length && timingSafeEqual(expected, given)) valid = true;
  }
  return valid;
}

/** The item text of a package or a plan at an interval. */
export const itemOf = (c: { package_id: string | null; plan_id: string | null; billing_interval: string | null }): string =>
  c.package_id ? `package:${c.package_id}` : `plan:${String(c.plan_id)}:${String(c.billing_interval)}`;
