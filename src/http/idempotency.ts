import { sql } from 'kysely';
import type { Executor } from '../db/database.js';
import { canonicalJson, sha256Hex } from '../lib/hash.js';

/**
 * Idempotency records. The record and the request's own writes commit in one transaction, so a
 * committed key always carries its final response and a concurrent retry of the same key waits on
 * the primary key until the first commits, then replays it: money never moves twice.
 */
export interface StoredResponse {
  status: number;
  body: unknown;
}

export type ClaimResult =
  | { kind: 'claimed' }
  | { kind: 'replay'; response: StoredResponse }
  | { kind: 'mismatch' };

export interface IdempotencyScope {
  principal: string;
  key: string;
  userId: string | null;
  method: string;
  path: string;
  requestHash: string;
}

export function requestHash(method: string, path: string, body: unknown): string {
  return sha256Hex(`${method} ${path}\n${canonicalJson(body ?? null)}`);
}

/** Claims the key inside the caller's transaction, or returns what the first request answered. */
export async function idempotencyClaim(db: Executor, scope: IdempotencyScope): Promise<ClaimResult> {
  const inserted = await db
    .insertInto('idempotency_keys')
    .values({
      principal: scope.principal,
      key: scope.key,
      user_id: scope.userId,
      method: scope.method,
      path: scope.path,
      request_hash: scope.requestHash,
      status_code: 0,
    })
    .onConflict((oc) => oc.columns(['principal', 'key']).doNothing())
    .returning('key')
    .executeTakeFirst();
  if (inserted) return { kind: 'claimed' };
  const existing = await db
    .selectFrom('idempotency_keys')
    .select(['request_hash', 'status_code', 'response_body'])
    .where('principal', '=', scope.principal)
    .where('key', '=', scope.key)
    .executeTakeFirstOrThrow();
  if (existing.request_hash !== scope.requestHash) return { kind: 'mismatch' };
  return { kind: 'replay', response: { status: existing.status_code, body: existing.response_body } };
}

/** Records the response of a claimed key (same transaction as the claim). */
export async function idempotencyComplete(db: Executor, scope: IdempotencyScope, response: StoredResponse): Promise<void> {
  await db
    .updateTable('idempotency_keys')
    .set({ status_code: response.status, response_body: sql`${JSON.stringify(response.body ?? null)}::jsonb` })
    .where('principal', '=', scope.principal)
    .where('key', '=', scope.key)
    .execute();
}

/**
 * Records a 4xx answer after its transaction rolled back, so retrying the same request gets the
 * same answer. Loses quietly to a concurrent success with the same key.
 */
export async function idempotencyRecordFailure(db: Executor, scope: IdempotencyScope, response: StoredResponse): Promise<void> {
  await db
    .insertInto('idempotency_keys')
    .values({
      principal: scope.principal,
      key: scope.key,
      user_id: scope.userId,
      method: scope.method,
      path: scope.path,
      request_hash: scope.requestHash,
      status_code: response.status,
      response_body: sql`${JSON.stringify(response.body ?? null)}::jsonb`,
    })
    .onConflict((oc) => oc.columns(['principal', 'key']).doNothing())
    .execute();
}

/**
 * The batch form of claim: one statement claims every key of a ledger batch, a second reads back
 * the ones that were already taken. Same semantics as idempotencyClaim, per key.
 */
export async function idempotencyClaimMany(
  db: Executor,
  table: ReturnType<typeof sql.table>,
  scopes: IdempotencyScope[],
): Promise<Map<string, ClaimResult>> {
  const out = new Map<string, ClaimResult>();
  if (scopes.length === 0) return out;
  const claimed = await sql<{ principal: string; key: string }>`
    insert into ${table} (principal, key, user_id, method, path, request_hash, status_code)
    select * from unnest(${scopes.map((s) => s.principal)}::text[], ${scopes.map((s) => s.key)}::text[],
      ${scopes.map((s) => s.userId)}::text[], ${scopes.map((s) => s.method)}::text[], ${scopes.map((s) => s.path)}::text[],
      ${scopes.map((s) => s.requestHash)}::text[], ${scopes.map(() => 0)}::int4[])
    on conflict (principal, key) do nothing
    returning principal, key`.execute(db);
  const taken = new Set(claimed.rows.map((r) => `${r.principal}\n${r.key}`));
  const others = scopes.filter((s) => !taken.has(scopeKey(s)));
  for (const s of scopes) if (taken.has(scopeKey(s))) out.set(scopeKey(s), { kind: 'claimed' });
  if (others.length > 0) {
    const rows = await sql<{ principal: string; key: string; request_hash: string; status_code: number; response_body: unknown }>`
      select principal, key, request_hash, status_code, response_body from ${table}
      where (principal, key) in (select * from unnest(${others.map((s) => s.principal)}::text[], ${others.map((s) => s.key)}::text[]))`.execute(db);
    const byKey = new Map(rows.rows.map((r) => [`${r.principal}\n${r.key}`, r]));
    for (const s of others) {
      const row = byKey.get(scopeKey(s));
      if (!row || row.request_hash !== s.requestHash) out.set(scopeKey(s), { kind: 'mismatch' });
      else out.set(scopeKey(s), { kind: 'replay', response: { status: row.status_code, body: row.response_body } });
    }
  }
  return out;
}

/** Records the responses of claimed keys, in one statement. */
export async function idempotencyCompleteMany(
  db: Executor,
  table: ReturnType<typeof sql.table>,
  done: { scope: IdempotencyScope; response: StoredResponse }[],
): Promise<void> {
  if (done.length === 0) return;
  await sql`update ${table} k set status_code = v.status_code, response_body = v.body::jsonb
    from unnest(${done.map((d) => d.scope.principal)}::text[], ${done.map((d) => d.scope.key)}::text[],
                ${done.map((d) => d.response.status)}::int4[], ${done.map((d) => JSON.stringify(d.response.body ?? null))}::text[])
      as v(principal, key, status_code, body)
    where k.principal = v.principal and k.key = v.key`.execute(db);
}

export const scopeKey = (s: IdempotencyScope): string => `${s.principal}\n${s.key}`;
