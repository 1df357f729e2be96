import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM for secrets at rest. A sealed value is `v1.<keyId>.<iv>.<tag>.<ciphertext>`
 * (base64url parts); the key id (first 8 hex chars of SHA-256 of the key) says which key sealed
 * it, so a rotation can find what still needs re-encrypting. New values are always sealed with
 * the current key; retired keys (`TALLY_ENCRYPTION_KEYS_OLD`) only open what they sealed, until
 * `tally secrets rotate` has re-sealed everything under the current one.
 */
export class SecretBox {
  readonly keyId: string;
  private readonly keys = new Map<string, Buffer>();

  constructor(
    private readonly key: Buffer,
    oldKeys: readonly Buffer[] = [],
  ) {
    if (key.length !== 32) throw new Error('SecretBox needs a 32-byte key');
    this.keyId = keyIdOf(key);
    for (const old of oldKeys) {
      if (old.length !== 32) throw new Error('SecretBox needs 32-byte keys');
      this.keys.set(keyIdOf(old), old);
    }
    this.keys.set(this.keyId, key);
  }

  seal(plaintext: string, associatedData = ''): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(associatedData));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return ['v1', this.keyId, iv.toString('base64url'), tag.toString('base64url'), ct.toString('base64url')].join('.');
  }

  /** Returns null when the value was sealed under a key this box does not hold, or was tampered with. */
  open(sealed: string, associatedData = ''): string | null {
    const [version, keyId, iv, tag, ct] = sealed.split('.');
    const key = keyId === undefined ? undefined : this.keys.get(keyId);
    if (version !== 'v1' || !key || !iv || !tag || ct === undefined) return null;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAAD(Buffer.from(associatedData));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      return null;
    }
  }

  /** The key id a sealed value names (null if it is not an envelope). */
  static keyIdOf(sealed: string): string | null {
    const [version, keyId] = sealed.split('.');
    return version === 'v1' && keyId ? keyId : null;
  }

  /**
   * Re-seals a value under the current key. Null when it is already current (nothing to do) —
   * throws when no key this box holds can open it, so a rotation never silently drops a secret.
   */
  reseal(sealed: string, associatedData = ''): string | null {
    if (SecretBox.keyIdOf(sealed) === this.keyId) return null;
    const plain = this.open(sealed, associatedData);
    if (plain === null) throw new Error(`cannot open a value sealed with key ${SecretBox.keyIdOf(sealed) ?? '(none)'}`);
    return this.seal(plain, associatedData);
  }
}

function keyIdOf(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}
