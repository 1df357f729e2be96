import { sql } from 'kysely';
import type { Db, Executor } from '../db/database.js';
import { errors } from './errors.js';
import type { IdempotencyScope } from './idempotency.js';
import { claimsOf, type Principal, type UserPrincipal } from './principal.js';

/** What a route handler gets: who is calling, and the executor to run its queries on. */
export interface RequestContext {
  readonly principal: Principal;
  readonly requestId: string;
  /** The request's transaction (role and claims set), or the database for untransacted reads. */
  readonly db: Executor;
  /**
   * Set only for `transaction: 'handler'` routes: the request's Idempotency-Key, which the handler's
   * service records in its own transaction (the ledger records it with the money movement).
   */
  readonly idempotency?: IdempotencyScope | null;
}

/**
 * Runs `fn` in one transaction whose role and claims are the caller's, the way PostgREST does it:
 * `set_config('role', 'authenticated', true)` and `request.jwt.claims`, both local to the
 * transaction, so row-level security sees exactly this request's user. Service requests keep the
 * owning role (RLS bypassed by design); anon requests run as `anon`.
 */
export async function inRequestTransaction<T>(db: Db, principal: Principal, fn: (trx: Executor) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await setRequestRole(trx, principal);
    return fn(trx);
  });
}

export async function setRequestRole(trx: Executor, principal: Principal): Promise<void> {
  if (principal.kind === 'user') {
    await sql`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${claimsOf(principal)}, true)`.execute(trx);
  } else if (principal.kind === 'anon') {
    await sql`select set_config('role', 'anon', true), set_config('request.jwt.claims', '{"role":"anon"}', true)`.execute(trx);
  }
}

/**
 * Leaves the caller's role for the rest of the transaction, after the service layer has checked
 * the whole operation. Only for the few user actions that must move credits (subscribing oneself
 * to a free plan grants its allowance): end users hold no write grant on money tables, by design,
 * so those writes run as the owner — like a SECURITY DEFINER function, with its checks in code.
 */
export async function elevate(trx: Executor): Promise<void> {
  await sql`set local role none`.execute(trx);
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
