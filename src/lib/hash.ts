import { createHash, timingSafeEqual } from 'node:crypto';

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/**
 * A constant-time test against one fixed secret, its digest worked out once (the service key is
 * checked on every service request).
 */
export function secretMatcher(secret: string): (candidate: string) => boolean {
  const expected = createHash('sha256').update(secret).digest();
  return (candidate) => timingSafeEqual(createHash('sha256').update(candidate).digest(), expected);
}

/** A stable JSON encoding (sorted keys) for hashing request bodies. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}
