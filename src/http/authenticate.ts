import type { Executor } from '../db/database.js';
import { secretMatcher } from '../lib/hash.js';
import type { KeyResolver } from '../modules/api-keys/api-keys.resolver.js';
import { API_KEY_PREFIX } from '../modules/api-keys/api-keys.scopes.js';
import { userAuthState } from '../modules/users/users.repository.js';
import type { TokenService } from '../modules/auth/auth.tokens.js';
import { errors } from '../core/errors.js';
import type { Principal } from '../core/principal.js';

/**
 * Resolves the Authorization header to a principal. Expected outcomes are values: a missing
 * header is `anon`; a present but wrong token is an `unauthenticated` error (never silently anon).
 */
export class Authenticator {
  private readonly isServiceKey: (token: string) => boolean;

  constructor(
    private readonly db: Executor,
    serviceKey: string,
    private readonly tokens: TokenService,
    /** The API-key lookup the gateway shares (one query; the use counted apart). */
    private readonly keys: KeyResolver,
  ) {
    this.isServiceKey = secretMatcher(serviceKey);
  }

  /**
   * `beforeLookup` runs before any database lookup or token verification, never for the service
   * key (matched in memory first): the stranger throttle's check, kept off the service's hot path.
   */
  async authenticate(header: string | undefined, beforeLookup?: () => Promise<void>): Promise<Principal> {
    if (header === undefined || header === '') return { kind: 'anon' };
    const match = /^Bearer\s+(\S{1,4096})\s*$/i.exec(header);
    const token = match?.[1];
    if (!token) throw errors.unauthenticated('Authorization must be "Bearer <token>"');

    if (token.startsWith(API_KEY_PREFIX)) {
      if (beforeLookup) await beforeLookup();
      return (await this.keys.resolve(token)).principal;
    }
    if (this.isServiceKey(token)) return { kind: 'service' };
    if (beforeLookup) await beforeLookup();

    const verified = await this.tokens.verify(token);
    if (!verified.ok) {
      throw errors.unauthenticated(verified.reason === 'expired' ? 'Token has expired' : 'Token is invalid');
    }
    const { claims } = verified;
    // Supabase issues service_role and anon JWTs signed with the same secret.
    if (claims.role === 'service_role') return { kind: 'service' };
    if (claims.role === 'anon') return { kind: 'anon' };
    if (claims.role !== 'authenticated') throw errors.unauthenticated(`Token role "${claims.role}" is not accepted`);
    // A disabled account or a logged-out session stops working at once, not when the token expires.
    const state = await userAuthState(this.db, claims.sub, claims.sessionId);
    if (state && !state.is_active) throw errors.unauthenticated('This account is disabled');
    if (state?.session_revoked) throw errors.unauthenticated('This session has ended; log in again');
    return {
      kind: 'user',
      userId: claims.sub,
      email: claims.email,
      via: 'jwt',
      keyId: null,
      scopes: ['*'],
      sessionId: claims.sessionId,
    };
  }
}
