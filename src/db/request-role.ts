import { sql } from 'kysely';
import { claimsOf, type Principal } from '../core/principal.js';
import type { Db, Executor } from './database.js';

/**
 * Runs `fn` in one transaction whose role and claims are the caller's, the way PostgREST does it:
 * `set_config('role', 'authenticated', true)` and `request.jwt.claims`, both local to the
 * transaction, so row-level security sees exactly this request's user. Service requests keep the
 * owning role (RLS bypassed by design); anon requests run as `anon`.
 */
export async function inRequestTransaction<T>(db: Db, principal: Principal, fn: (trx: Executor) => Promise<T>, requestId?: string): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await setRequestRole(trx, principal, requestId);
    return fn(trx);
  });
}

/**
 * Also names the request for the audit log (docs/audit.md): `tally.actor` and `tally.request_id`,
 * local to the transaction, which the audit triggers read. For users and anon they ride on the
 * statement that sets the role (no extra round trip); a service write with a request id costs one.
 */
export async function setRequestRole(trx: Executor, principal: Principal, requestId?: string): Promise<void> {
  const audit = requestId === undefined ? null : { actor: JSON.stringify(auditActorOf(principal)), requestId };
  if (principal.kind === 'user') {
    if (audit) {
      await sql`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${claimsOf(principal)}, true),
        set_config('tally.actor', ${audit.actor}, true), set_config('tally.request_id', ${audit.requestId}, true)`.execute(trx);
      return;
    }
    await sql`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${claimsOf(principal)}, true)`.execute(trx);
  } else if (principal.kind === 'anon') {
    if (audit) {
      await sql`select set_config('role', 'anon', true), set_config('request.jwt.claims', '{"role":"anon"}', true),
        set_config('tally.actor', ${audit.actor}, true), set_config('tally.request_id', ${audit.requestId}, true)`.execute(trx);
      return;
    }
    await sql`select set_config('role', 'anon', true), set_config('request.jwt.claims', '{"role":"anon"}', true)`.execute(trx);
  } else if (audit) {
    await sql`select set_config('tally.actor', ${audit.actor}, true), set_config('tally.request_id', ${audit.requestId}, true)`.execute(trx);
  }
}

/**
 * Names Tally's own callers for the audit log, in a transaction the route wrapper did not open
 * (payment webhooks, the scheduler): `kind` is 'provider' or 'system', `id` says which; or an
 * anonymous caller whose route opens its own transactions (sign-up), with its request id.
 */
export async function setAuditActor(trx: Executor, actor: { kind: 'provider' | 'system'; id: string } | { kind: 'anon'; id: null }, requestId?: string): Promise<void> {
  await sql`select set_config('tally.actor', ${JSON.stringify(actor)}, true), set_config('tally.request_id', ${requestId ?? ''}, true)`.execute(trx);
}

/** Who a principal is, as the audit log records it. */
export function auditActorOf(principal: Principal): { kind: string; id: string | null; api_key_id: string | null } {
  if (principal.kind === 'user') return { kind: 'user', id: principal.userId, api_key_id: principal.keyId };
  return { kind: principal.kind, id: null, api_key_id: null };
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
