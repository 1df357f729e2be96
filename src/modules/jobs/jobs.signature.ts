import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Provider callbacks are signed the way Stripe signs webhooks, bound to one job: header
 * `Tally-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<job id>.<raw body>">` (several
 * v1 entries are allowed, so a secret can be rolled). The job id makes a signature good for that
 * job only; the timestamp bounds replays to `toleranceSeconds`. Unambiguous: `t` is digits and a
 * job id (`job_<ulid>`) has no dot, so everything after the second dot is the body.
 * See docs/jobs.md, "Provider callbacks".
 */
export const SIGNATURE_HEADER = 'tally-signature';

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

function mac(secret: string, timestamp: number, jobId: string, rawBody: string | Buffer): Buffer {
  return createHmac('sha256', secret).update(`${timestamp}.${jobId}.`).update(rawBody).digest();
}

/** The header a provider sends with `rawBody` for job `jobId` (also what tests and SDKs use). */
export function signCallback(secret: string, jobId: string, rawBody: string | Buffer, timestamp: number): string {
  return `t=${timestamp},v1=${mac(secret, timestamp, jobId, rawBody).toString('hex')}`;
}

/** Checks the header against the exact bytes received, for this job, before anything reads them. */
export function verifyCallback(
  secret: string,
  header: string | undefined,
  jobId: string,
  rawBody: string | Buffer,
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
  const expected = mac(secret, timestamp, jobId, rawBody);
  const match = candidates.some((c) => timingSafeEqual(Buffer.from(c, 'hex'), expected));
  return match ? { ok: true } : { ok: false, reason: 'Signature does not match' };
}
