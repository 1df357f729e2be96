import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';

/** A key's limits and spend, locked: every counted request of one key passes here one at a time. */
export async function keyLockForLimits(db: Executor, keyId: string) {
  return db
    .selectFrom('api_keys')
    .select(['models', 'rpm_limit', 'tpm_limit', 'max_concurrency', 'credit_budget', 'credits_used', 'gateway_spent_micros'])
    .where('id', '=', keyId)
    .forUpdate()
    .executeTakeFirst();
}

/** Requests of a key still in flight (pending) and the credits they hold. */
export async function keyInFlight(db: Executor, keyId: string): Promise<{ requests: number; held: number }> {
  const row = await db
    .selectFrom('gateway_requests')
    .select([sql<number>`count(*)::int4`.as('requests'), sql<number>`coalesce(sum(held), 0)::int8`.as('held')])
    .where('api_key_id', '=', keyId)
    .where('status', '=', 'pending')
    .executeTakeFirstOrThrow();
  return { requests: Number(row.requests), held: Number(row.held) };
}

/** The key's counters for the previous and the current minute (absent minutes are zero). */
export async function keyWindows(db: Executor, keyId: string, previous: Date, current: Date) {
  return db
    .selectFrom('gateway_key_windows')
    .select(['window_start', 'requests', 'tokens'])
    .where('api_key_id', '=', keyId)
    .where('window_start', 'in', [previous, current])
    .execute();
}

/** Counts one request and its token reservation in the key's minute. */
export async function keyWindowAdd(db: Executor, keyId: string, start: Date, tokens: number): Promise<void> {
  await db
    .insertInto('gateway_key_windows')
    .values({ api_key_id: keyId, window_start: start, requests: 1, tokens })
    .onConflict((oc) =>
      oc.columns(['api_key_id', 'window_start']).doUpdateSet({
        requests: sql`gateway_key_windows.requests + 1`,
        tokens: sql`gateway_key_windows.tokens + ${tokens}::int8`,
      }),
    )
    .execute();
}

/** Replaces a request's reservation by the tokens it really used, in the minute it was counted in. */
export async function keyWindowTrueUp(db: Executor, keyId: string, start: Date, delta: number): Promise<void> {
  if (delta === 0) return;
  await db
    .updateTable('gateway_key_windows')
    .set({ tokens: sql`greatest(0, gateway_key_windows.tokens + ${delta}::int8)` })
    .where('api_key_id', '=', keyId)
    .where('window_start', '=', start)
    .execute();
}

/**
 * Adds a settled request's exact cost to its key's own spend (the budget's counter): the key carries
 * its own fraction, and credits_used is its whole credits (attacker review #12: it used to count the
 * account's credit crossings, which another key's requests could take).
 */
export async function keySpent(db: Executor, keyId: string, micros: number): Promise<void> {
  if (micros <= 0) return;
  await db
    .updateTable('api_keys')
    .set({
      gateway_spent_micros: sql`gateway_spent_micros + ${micros}::int8`,
      credits_used: sql`(gateway_spent_micros + ${micros}::int8) / 1000000`,
    })
    .where('id', '=', keyId)
    .execute();
}

/** Minutes no limit looks at any more (the scheduler's sweep). */
export async function keyWindowsPrune(db: Executor, before: Date): Promise<number> {
  const res = await db.deleteFrom('gateway_key_windows').where('window_start', '<', before).executeTakeFirst();
  return Number(res.numDeletedRows);
}
