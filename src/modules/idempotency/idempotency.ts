import type { DomainError } from '../../core/errors.js';
import { canonicalJson, sha256Hex } from '../../lib/hash.js';
import { legacyHashOf } from './idempotency.legacy.js';

/**
 * One idempotency capability, keyed by operation (docs/architecture.md, "Idempotency"). A key is
 * scoped to its principal; its record names the operation it answered and the hash of the request
 * (operation, parameters, body), and keeps the answer. The HTTP routes, the in-process SDK, the
 * ledger, usage, payments and jobs all build their scopes here — nobody invents a URL to share one.
 *
 * Two forms: one request at a time (idempotency.repository.ts: claim, complete, record a refusal)
 * and a batch of requests written in one statement (idempotency.batch.ts: the ledger's).
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

/**
 * An operation keys can be recorded under. `legacyPath` is the path its keys were recorded under
 * before migration 0017 (`:name` filled from the parameters), so those records still replay; null
 * for an operation that is newer than that.
 */
export interface Operation {
  readonly name: string;
  readonly legacyPath: string | null;
}

export const operation = (name: string, legacyPath: string | null = null): Operation => ({ name, legacyPath });

export interface IdempotencyScope {
  /** Whose key it is (`service`, `user:<id>`, `payments`, `job:<id>`): keys never collide across callers. */
  principal: string;
  key: string;
  /** Row-level security: the end user whose request it is, if any. */
  userId: string | null;
  /** The operation's name, recorded with the key. */
  operation: string;
  /** The request: operation, parameters and body (canonical JSON). The same key with another → 409. */
  requestHash: string;
  /** The same request as a record made before 0017 would have hashed it; null when none could have. */
  legacyHash: string | null;
}

export type Params = Readonly<Record<string, string>>;

/** The hash of a request: its operation, its parameters (a hold's id) and its body, by meaning. */
export function requestHash(operationName: string, params: Params, body: unknown): string {
  return sha256Hex(`${operationName}\n${canonicalJson(params)}\n${canonicalJson(body ?? null)}`);
}

/**
 * The scope of a request to an operation, from wherever it comes (a route, the SDK, a webhook, a
 * job): the same principal, key, operation, parameters and body are the same request.
 */
export function scopeOf(
  op: Operation,
  who: { principal: string; userId?: string | null },
  key: string,
  input: { params?: Params; body: unknown },
): IdempotencyScope {
  const params = input.params ?? {};
  return {
    principal: who.principal,
    key,
    userId: who.userId ?? null,
    operation: op.name,
    requestHash: requestHash(op.name, params, input.body),
    legacyHash: op.legacyPath === null ? null : legacyHashOf(op.legacyPath, params, input.body),
  };
}

/** A stored record of a key: the operation it answered (null: recorded before 0017) and its request. */
export interface StoredRequest {
  operation: string | null;
  requestHash: string;
}

/** Whether a stored record answered this very request (else the key is being reused: 409). */
export function sameRequest(stored: StoredRequest, scope: IdempotencyScope): boolean {
  if (stored.operation === null) return scope.legacyHash !== null && stored.requestHash === scope.legacyHash;
  return stored.operation === scope.operation && stored.requestHash === scope.requestHash;
}

export const scopeKey = (s: { principal: string; key: string }): string => `${s.principal}\n${s.key}`;

/** A stored answer is JSON text (see 0001_foundation.sql). */
export function parseStored(text: string | null): unknown {
  return text === null ? null : (JSON.parse(text) as unknown);
}

/**
 * Thrown by a batch write when one of its Idempotency-Keys was recorded by another transaction
 * after this one loaded (the same key sent concurrently for another account or user). The write's
 * transaction rolls back; running the operation again loads that committed record and replays it,
 * or answers 409 `idempotency_key_reused` when the requests differ.
 */
export class KeyRecordedMeanwhile extends Error {
  constructor() {
    super('an Idempotency-Key of this batch was recorded by another transaction meanwhile');
    this.name = 'KeyRecordedMeanwhile';
  }
}
