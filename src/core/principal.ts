import type { Scope } from '../modules/api-keys/api-keys.scopes.js';
import { errors } from './errors.js';

/** Who is calling. Resolved once per request from the Authorization header. */
export type Principal =
  | { readonly kind: 'service' }
  | {
      readonly kind: 'user';
      readonly userId: string;
      readonly email: string | null;
      readonly via: 'jwt' | 'api_key';
      /** For API keys: the key's id and scopes; JWT callers hold every scope. */
      readonly keyId: string | null;
      readonly scopes: readonly Scope[];
      readonly sessionId: string | null;
    }
  | { readonly kind: 'anon' };

export type UserPrincipal = Extract<Principal, { kind: 'user' }>;

export function hasScope(principal: Principal, scope: Scope): boolean {
  if (principal.kind !== 'user') return principal.kind === 'service';
  return principal.scopes.includes('*') || principal.scopes.includes(scope);
}

/** The claims a request sets with set_config('request.jwt.claims', …) for row-level security. */
export function claimsOf(principal: UserPrincipal): string {
  return JSON.stringify({
    sub: principal.userId,
    role: 'authenticated',
    email: principal.email,
    ...(principal.keyId ? { api_key_id: principal.keyId } : {}),
    ...(principal.sessionId ? { session_id: principal.sessionId } : {}),
  });
}

/** The idempotency namespace of a principal: keys never collide across callers. */
export function principalKey(principal: Principal): string {
  return principal.kind === 'user' ? `user:${principal.userId}` : principal.kind;
}

/** Service-layer access check: the service, or the user themself. RLS checks it again. */
export function assertSelfOrService(principal: Principal, userId: string): void {
  if (principal.kind === 'service') return;
  if (principal.kind === 'user' && principal.userId === userId) return;
  throw errors.forbidden('You can only act on your own account');
}

export function requireUser(principal: Principal): UserPrincipal {
  if (principal.kind !== 'user') throw errors.forbidden('This endpoint is for signed-in users');
  return principal;
}
