import type { Executor } from '../../db/database.js';
import { type IdempotencyScope, parseStored, sameRequest, type StoredResponse } from './idempotency.js';

/**
 * The single-request form: a key is claimed inside the request's transaction, which then records
 * the answer before it commits — a committed key always carries its final answer, and a concurrent
 * retry of the same key waits on the primary key until the first commits, then replays it.
 */
export type ClaimResult =
  | { kind: 'claimed' }
  | { kind: 'replay'; response: StoredResponse }
  | { kind: 'mismatch' };

/** The columns that say whose key it is and which request it answered (method and path: pre-0017 rows only). */
export const recordOf = (scope: IdempotencyScope) => ({
  principal: scope.principal,
  key: scope.key,
  user_id: scope.userId,
  operation: scope.operation,
  request_hash: scope.requestHash,
});

/** Claims the key inside the caller's transaction, or returns what the first request answered. */
export async function idempotencyClaim(db: Executor, scope: IdempotencyScope): Promise<ClaimResult> {
  const inserted = await db
    .insertInto('idempotency_keys')
    .values({ ...recordOf(scope), status_code: 0 })
    .onConflict((oc) => oc.columns(['principal', 'key']).doNothing())
    .returning('key')
    .executeTakeFirst();
  if (inserted) return { kind: 'claimed' };
  const existing = await db
    .selectFrom('idempotency_keys')
    .select(['operation', 'request_hash', 'status_code', 'response_body'])
    .where('principal', '=', scope.principal)
    .where('key', '=', scope.key)
    .executeTakeFirstOrThrow();
  if (!sameRequest({ operation: existing.operation, requestHash: existing.request_hash }, scope)) return { kind: 'mismatch' };
  return { kind: 'replay', response: { status: existing.status_code, body: parseStored(existing.response_body) } };
}

/** Records the response of a claimed key (same transaction as the claim). */
export async function idempotencyComplete(db: Executor, scope: IdempotencyScope, response: StoredResponse): Promise<void> {
  await db
    .updateTable('idempotency_keys')
    .set({ status_code: response.status, response_body: JSON.stringify(response.body ?? null) })
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
    .values({ ...recordOf(scope), status_code: response.status, response_body: JSON.stringify(response.body ?? null) })
    .onConflict((oc) => oc.columns(['principal', 'key']).doNothing())
    .execute();
}
