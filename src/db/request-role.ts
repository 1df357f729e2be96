import { sql } from 'kysely';
import { claimsOf, type Principal } from '../core/principal.js';
import type { Db, Executor } from './database.js';

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
