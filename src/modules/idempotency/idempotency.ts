import type { DomainError } from '../../core/errors.js';
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

/**
 * What an operation answered, in the domain's terms: a value (`created` when it made something), or a
 * refusal from the error catalogue with the id of the request that was refused. A replay is the
 * stored outcome of an earlier request with the same Idempotency-Key.
 */
export type Outcome<T = unknown> =
  | { readonly ok: true; readonly created: boolean; readonly value: T; readonly replayed?: boolean }
  | { readonly ok: false; readonly error: DomainError; readonly requestId: string; readonly replayed?: boolean };

export const created = <T>(value: T): Outcome<T> => ({ ok: true, created: true, value });
export const done = <T>(value: T): Outcome<T> => ({ ok: true, created: false, value });
export const refused = (error: DomainError, requestId: string): Outcome<never> => ({ ok: false, error, requestId });

/** The value of an outcome; a refusal is raised as its error (for callers that treat it as one). */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

/**
 * How an outcome is recorded under its key and read back. A record keeps the answer the caller
 * got, status included, and statuses are the HTTP layer's business: src/http/answers.ts provides
 * the one codec, and the composition root hands it to the writers that record inside their own
 * transactions (the ledger, usage).
 */
export interface AnswerCodec {
  encode(outcome: Outcome): StoredResponse;
  decode(stored: StoredResponse): Outcome;
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

/** The columns that say whose key it is and which request it answered. */
const recordOf = (scope: IdempotencyScope) => ({
  principal: scope.principal,
  key: scope.key,
  user_id: scope.userId,
  method: scope.method,
  path: scope.path,
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
    .values({ ...recordOf(scope), status_code: response.status, response_body: JSON.stringify(response.body ?? null) })
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
