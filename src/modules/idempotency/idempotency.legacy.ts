import { canonicalJson, sha256Hex } from '../../lib/hash.js';

/**
 * Records made before migration 0017 were keyed by HTTP method and path: their request hash is
 * SHA-256 of `POST <path>\n<canonical body>`, and they have no operation. A request still replays
 * them — or is refused as a reuse of their key — by comparing the hash it would have had then.
 * Every operation that existed then names its old path (`Operation.legacyPath`); the routes pass
 * the request's own method and path.
 */
export function legacyRequestHash(method: string, path: string, body: unknown): string {
  return sha256Hex(`${method} ${path}\n${canonicalJson(body ?? null)}`);
}

/** The old hash of an operation's request: its old path with `:name` filled from the parameters (all POSTs). */
export function legacyHashOf(pathTemplate: string, params: Readonly<Record<string, string>>, body: unknown): string {
  const path = pathTemplate.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (_m, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`legacy path ${pathTemplate}: no parameter "${name}"`);
    return value;
  });
  return legacyRequestHash('POST', path, body);
}
