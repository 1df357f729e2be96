import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Provider callbacks are signed the way Stripe signs webhooks: header
 * `Tally-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` (several v1 entries
 * are allowed, so a secret can be rolled). The timestamp bounds replays to `toleranceSeconds`.
 */
export const SIGNATURE_HEADER = 'tally-signature';

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

export function signCallback(secret: string, rawBody: string, timestamp: number): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest('hex')}`;
}

export function verifyCallback(
  secret: string,
  header: string | undefined,
  rawBody: string,
  now: Date,
  toleranceSeconds: number,
): SignatureCheck {
  if (!header) return { ok: false, reason: `Missing ${SIGNATURE_HEADER} header` };
  let timestamp: number | null = null;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const [k, v] = part.trim().split('=', 2);
    if (k === 't' && v && /^\d{1,12}$/.test(v)) timestamp = Number(v);
    else if (k === 'v1' && v && /^[0-9a-f]{64}$/.test(v)) candidates.push(v);
  }
  if (timestamp === null || candidates.length === 0) return { ok: false, reason: `Malformed ${SIGNATURE_HEADER} header` };
  if (Math.abs(now.getTime() / 1000 - timestamp) > toleranceSeconds) {
    return { ok: false, reason: 'Signature timestamp is outside the tolerance' };
  }
  const expected = createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest();
  const match = candidates.some((c) => timingSafeEqual(Buffer.from(c, 'hex'), expected));
  return match ? { ok: true } : { ok: false, reason: 'Signature does not match' };
}
