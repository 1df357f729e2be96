import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SecretBox } from '../src/lib/secret-box.js';
import { must } from '../src/lib/must.js';

describe('SecretBox (AES-256-GCM)', () => {
  const box = new SecretBox(randomBytes(32));

  it('round-trips and never contains the plaintext', () => {
    const sealed = box.seal('tly_supersecret', 'ctx');
    expect(sealed.startsWith(`v1.${box.keyId}.`)).toBe(true);
    expect(sealed).not.toContain('supersecret');
    expect(box.open(sealed, 'ctx')).toBe('tly_supersecret');
  });

  it('a fresh IV each time: the same secret seals differently', () => {
    expect(box.seal('same')).not.toBe(box.seal('same'));
  });

  it('refuses tampering, another context, and another key', () => {
    const sealed = box.seal('payload', 'ctx');
    const parts = sealed.split('.');
    const ct = Buffer.from(must(parts[4], 'parts[4]'), 'base64url');
    ct[0] = must(ct[0], 'ct[0]') ^ 1;
    parts[4] = ct.toString('base64url');
    expect(box.open(parts.join('.'), 'ctx')).toBeNull();
    expect(box.open(sealed, 'other')).toBeNull();
    expect(new SecretBox(randomBytes(32)).open(sealed, 'ctx')).toBeNull();
  });
});
