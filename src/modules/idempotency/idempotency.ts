import type { Executor } from '../../db/database.js';
import { canonicalJson, sha256Hex } from '../../lib/hash.js';

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
    .values({
      principal: scope.principal,
      key: scope.key,
      user_id: scope.userId,
      method: scope.method,
      path: scope.path,
      request_hash: scope.requestHash,
      status_code: response.status,
      response_body: JSON.stringify(response.body ?? null),
    })
    .onConflict((oc) => oc.columns(['principal', 'key']).doNothing())
    .execute();
}

export const scopeKey = (s: IdempotencyScope): string => `${s.principal}\n${s.key}`;

/** A stored answer is JSON text (see 0001_foundation.sql). */
export function parseStored(text: string | null): unknown {
  return text === null ? null : (JSON.parse(text) as unknown);
}

/**
 * Thrown by a batch write when one of its Idempotency-Keys was recorded by another transaction
 * after this one loaded (the same key sent concurrently for another account or user). The write's
 * transaction rolls back; running the operation again loads that committed record and replays it,
 * or answers 409 `idempotency_key_reused` when the bodies differ.
 */
export class KeyRecordedMeanwhile extends Error {
  constructor() {
    super('an Idempotency-Key of this batch was recorded by another transaction meanwhile');
    this.name = 'KeyRecordedMeanwhile';
  }
}
