import { errors } from '../../core/errors.js';
import {
  type AnswerCodec,
  type IdempotencyScope,
  type Outcome,
  parseStored,
  refused,
  sameRequest,
  scopeKey,
  type StoredRequest,
  type StoredResponse,
} from './idempotency.js';

/**
 * The batched form: many requests (each with its key, or none) answered and recorded by one
 * transaction, the records written by the same statement as their effects (the ledger's batches,
 * src/modules/credits/credits.batch-sql.ts). The rules are the single form's:
 *
 * - the first request of a key in a batch leads; a later one with the same key replays its answer,
 *   or is refused (409) when it is another request;
 * - a key already recorded replays its answer to the same request, 409 to another;
 * - a key recorded by another transaction after the batch loaded makes the write insert fewer
 *   records than it carries: the caller raises `KeyRecordedMeanwhile` and runs again, which replays.
 */
export class BatchKeys {
  /** One scope per distinct key: the leaders'. */
  readonly scopes: IdempotencyScope[] = [];
  private readonly leaderOf = new Map<string, number>();
  private readonly followers: { index: number; leader: number; same: boolean }[] = [];

  constructor(scopes: readonly (IdempotencyScope | null)[]) {
    const byIndex: (IdempotencyScope | null)[] = [...scopes];
    byIndex.forEach((scope, i) => {
      if (!scope) return;
      const k = scopeKey(scope);
      const leader = this.leaderOf.get(k);
      if (leader === undefined) {
        this.leaderOf.set(k, i);
        this.scopes.push(scope);
      } else {
        const first = byIndex[leader];
        this.followers.push({ index: i, leader, same: first?.operation === scope.operation && first.requestHash === scope.requestHash });
      }
    });
  }

  /** Whether the request at `index` runs (no key, or the first of its key in the batch). */
  leads(index: number, scope: IdempotencyScope | null): boolean {
    return !scope || this.leaderOf.get(scopeKey(scope)) === index;
  }

  /** The batch's keys (`scopeKey` form). */
  keys(): Set<string> {
    return new Set(this.leaderOf.keys());
  }

  /** Answers the followers from their leaders' answers (after the leaders were answered). */
  answerFollowers(results: (Outcome | undefined)[], requestIdOf: (index: number) => string): void {
    for (const f of this.followers) {
      const leader = results[f.leader];
      if (!leader) throw new Error('idempotency: a batch leader was not answered');
      results[f.index] = f.same ? { ...leader, replayed: true } : refused(errors.idempotencyKeyReused(), requestIdOf(f.index));
    }
  }
}

/** A key's stored record: the request it answered and its outcome. */
export interface Replay {
  stored: StoredRequest;
  outcome: Outcome;
}

/** An outcome to record under its key, in the batch's write. */
export interface Recorded {
  scope: IdempotencyScope;
  outcome: Outcome;
}

/** The answer a key already has: its stored one (replayed), 409 for another request, or null (not recorded). */
export function replayOf(scope: IdempotencyScope | null, replays: ReadonlyMap<string, Replay>, requestId: string): Outcome | null {
  const stored = scope ? replays.get(scopeKey(scope)) : undefined;
  if (!scope || !stored) return null;
  return sameRequest(stored.stored, scope) ? { ...stored.outcome, replayed: true } : refused(errors.idempotencyKeyReused(), requestId);
}

/**
 * The stored records of a batch's keys: `principals` and `keys` are two text[] parameters. `extra`:
 * more select-list columns over `k` (the ledger reads the row a compact answer names).
 */
export function replaysQuery(table: string, principals: string, keys: string, extra = ''): string {
  return `select k.principal, k.key, k.operation, k.request_hash, k.status_code, k.response_body${extra ? `, ${extra}` : ''}
          from unnest(${principals}::text[], ${keys}::text[]) as u(principal, key)
          join ${table} k on k.principal = u.principal and k.key = u.key`;
}

/** The parameters of `replaysQuery`. */
export const replaysParams = (scopes: readonly IdempotencyScope[]): [string[], string[]] => [scopes.map((s) => s.principal), scopes.map((s) => s.key)];

/** A row of `replaysQuery` (the stored record's columns; callers' `extra` columns come on top). */
export interface StoredKeyRow {
  principal: string;
  key: string;
  operation: string | null;
  request_hash: string;
  status_code: number;
  response_body: string | null;
}

/** The rows of `replaysQuery`, by key; `bodyOf` reads a stored answer's body (default: its JSON). */
export function replayMap<R extends StoredKeyRow>(
  rows: readonly R[],
  codec: AnswerCodec,
  bodyOf: (row: R) => unknown = (k) => parseStored(k.response_body),
): Map<string, Replay> {
  const replays = new Map<string, Replay>();
  for (const k of rows) {
    const outcome = codec.decode({ status: Number(k.status_code), body: bodyOf(k) });
    const stored = { operation: k.operation ?? null, requestHash: k.request_hash };
    replays.set(scopeKey({ principal: k.principal, key: k.key }), { stored, outcome });
  }
  return replays;
}

/**
 * The CTE that records a batch's keys (`p` a jsonb parameter of `recordRows`). It returns one row
 * per record inserted: fewer than were sent means a key was recorded meanwhile.
 */
export function recordsCte(name: string, table: string, p: string): string {
  return `${name} as (
        insert into ${table} (principal, key, user_id, operation, request_hash, status_code, response_body)
        select * from jsonb_to_recordset(${p}::jsonb) as x(principal text, key text, user_id text, operation text,
          request_hash text, status_code int4, body text)
        on conflict (principal, key) do nothing
        returning 1)`;
}

/** `bodyText`: the text to store for an answer (default: its JSON; the ledger stores movements compact). */
export function recordRows(
  done: readonly Recorded[],
  codec: AnswerCodec,
  bodyText: (answer: StoredResponse) => string = (a) => JSON.stringify(a.body ?? null),
): Record<string, unknown>[] {
  return done.map((d) => {
    const answer = codec.encode(d.outcome);
    return {
      principal: d.scope.principal, key: d.scope.key, user_id: d.scope.userId, operation: d.scope.operation,
      request_hash: d.scope.requestHash, status_code: answer.status, body: bodyText(answer),
    };
  });
}
