/**
 * Takes secrets out of text before it is stored in a log table. Two nets: the literal secrets this
 * process knows (the service key, the metrics token, the JWT secret, the callback and webhook
 * secrets it was configured with), and the shapes secrets come in whoever made them — API keys
 * (`tly_…`), JWTs, bearer tokens, webhook secrets (`whsec_…`), provider keys (`sk_live_…`),
 * `password=…`-style pairs, URLs with a user:password part. Used on error messages and stacks and
 * on request paths; request bodies, headers and query strings are never stored at all.
 */
const SHAPES: readonly RegExp[] = [
  /\btly_[A-Za-z0-9_-]{8,}/g,
  /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g,
  /\b(?:whsec|sk_live|sk_test|rk_live|rk_test|pk_live|pk_test|tsk|msk)_[A-Za-z0-9_+/=-]{8,}/g,
  /\b((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+/gi,
  /([a-z][a-z0-9+.-]*:\/\/)[^\s:/@]+:[^\s@/]+@/gi,
  /\b((?:password|passwd|secret|token|api[_-]?key|authorization|signature|credentials?)["']?\s*[:=]\s*["']?)[^\s"',;&}]+/gi,
];

export const REDACTED = '[redacted]';

export class Scrubber {
  private readonly literals: string[];

  constructor(secrets: readonly (string | undefined | null)[]) {
    // Longest first, so a secret that contains another is replaced whole.
    this.literals = [...new Set(secrets.filter((s): s is string => typeof s === 'string' && s.length >= 8))].sort((a, b) => b.length - a.length);
  }

  scrub(text: string): string {
    let out = text;
    for (const secret of this.literals) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    for (const shape of SHAPES) {
      out = out.replace(shape, (match, prefix: unknown) => (typeof prefix === 'string' && match.startsWith(prefix) && prefix !== match ? `${prefix}${REDACTED}` : REDACTED));
    }
    return out;
  }
}
