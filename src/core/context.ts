import type { Executor } from '../db/database.js';
import type { IdempotencyScope } from '../modules/idempotency/idempotency.js';
import type { Principal } from './principal.js';

/** What a route handler gets: who is calling, and the executor to run its queries on. */
export interface RequestContext {
  readonly principal: Principal;
  readonly requestId: string;
  /** The request's transaction (role and claims set), or the database for untransacted reads. */
  readonly db: Executor;
  /**
   * Set only for `idempotency: 'operation'` routes: the request's Idempotency-Key, which the
   * operation records in its own transaction (the ledger records it with the money movement).
   */
  readonly idempotency?: IdempotencyScope | null;
}
