import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson, secretMatcher, sha256Hex } from '../src/lib/hash.js';

/**
 * The request hash is stored with every Idempotency-Key: a faster canonical JSON or digest must
 * give exactly the text and hex the earlier form gave, or keys recorded before would stop replaying.
 */
const previousCanonical = (value: unknown): string => {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(previousCanonical).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${previousCanonical(v)}`).join(',')}}`;
};

describe('lib/hash', () => {
  it('canonical JSON is the earlier form, key for key', () => {
    const samples: unknown[] = [
      null, 0, -1.5, 'x', true, [], {}, [1, 'a', null, [2, { b: 1, a: 2 }]],
      { user_id: 'u', amount: 1, reason: 'r', metadata: { z: 1, a: { y: [3, { d: undefined, c: 'é' }], b: null } } },
      { B: 1, a: 2, _: 3, '10': 4, '2': 5, 'ü': 6, 'Z': 7, skip: undefined, '"q"': 'a\nb' },
      [undefined, 1],
    ];
    for (const s of samples) expect(canonicalJson(s)).toBe(previousCanonical(s));
  });

  it('sha256Hex and the secret matcher agree with createHash', () => {
    expect(sha256Hex('credits.debit\n{}\n{"a":1}')).toBe(createHash('sha256').update('credits.debit\n{}\n{"a":1}').digest('hex'));
    const matches = secretMatcher('tsk_secret');
    expect(matches('tsk_secret')).toBe(true);
    expect(matches('tsk_secreT')).toBe(false);
    expect(matches('')).toBe(false);
  });
});
