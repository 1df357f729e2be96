import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/** What a signed link allows: one action on one path until `exp` (unix seconds). */
export interface SignedLink {
  action: 'download' | 'upload';
  bucket: string;
  path: string;
  exp: number;
  /** Who made it: a user id or `service`. An upload link acts as its signer. */
  signer: string;
  /** Download links: the object (id and SHA-256) signed for; a later version at the path is not served. */
  obj?: string;
  sha?: string;
  /** Upload links: a one-use id, and the link's own size and type limits. */
  id?: string;
  max?: number | null;
  type?: string | null;
}

/**
 * Signs links with HMAC-SHA256 under a key derived from the encryption key (HKDF, its own label,
 * so the link key is never the key that seals secrets). A token is `<payload>.<mac>`, both
 * base64url; anything else — a changed byte, another key — does not verify.
 */
export class LinkSigner {
  private readonly key: Buffer;

  constructor(encryptionKey: Buffer) {
    this.key = Buffer.from(hkdfSync('sha256', encryptionKey, Buffer.alloc(0), 'tally storage links v1', 32));
  }

  sign(link: SignedLink): string {
    const payload = Buffer.from(JSON.stringify(link), 'utf8').toString('base64url');
    return `${payload}.${this.mac(payload)}`;
  }

  verify(token: string): SignedLink | null {
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length > 8192) return null;
    const payload = token.slice(0, dot);
    const given = Buffer.from(token.slice(dot + 1), 'base64url');
    const expected = Buffer.from(this.mac(payload), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    try {
      const link = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as SignedLink;
      if (typeof link.bucket !== 'string' || typeof link.path !== 'string' || typeof link.exp !== 'number') return null;
      return link;
    } catch {
      return null;
    }
  }

  private mac(payload: string): string {
    return createHmac('sha256', this.key).update(payload).digest('base64url');
  }
}
