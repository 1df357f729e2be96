import { jsonArrayFrom } from 'kysely/helpers/postgres';
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

/** A key as it is now, if it is still live (not revoked, not expired by the database's clock, its user active). */
export interface LiveKeyNow {
  id: string;
  user_id: string;
  workspace_id: string | null;
  scopes: string[];
  models: string[] | null;
  rpm_limit: number | null;
  tpm_limit: number | string | null;
  max_concurrency: number | null;
  credit_budget: number | string | null;
}

/**
 * These keys as they are now, the live ones only, read in the transaction that takes their holds:
 * the relay authenticated them from the in-process key cache (api-keys.resolver.ts), which may lag
 * a revoke, a disabled user or a narrowed key by a missed or late notice (bus down, a process that
 * died between its commit and its NOTIFY, SQL by hand). Money moves only for a key live here.
 */
export async function keysLiveNow(db: Executor, keyIds: readonly string[]): Promise<Map<string, LiveKeyNow>> {
  if (keyIds.length === 0) return new Map();
  const rows = await liveKeys(db, keyIds).execute();
  return new Map(rows.map((r) => [r.id, r]));
}

function liveKeys(db: Executor, keyIds: readonly string[]) {
  return db
    .selectFrom('api_keys')
    .innerJoin('users', 'users.id', 'api_keys.user_id')
    .where('api_keys.id', 'in', [...new Set(keyIds)])
    .where('api_keys.revoked_at', 'is', null)
    .where((eb) => eb.or([eb('api_keys.expires_at', 'is', null), eb('api_keys.expires_at', '>', sql<Date>`now()`)]))
    .where('users.is_active', '=', true)
    .select([
      'api_keys.id', 'api_keys.user_id', 'api_keys.workspace_id', 'api_keys.scopes',
      'api_keys.models', 'api_keys.rpm_limit', 'api_keys.tpm_limit', 'api_keys.max_concurrency', 'api_keys.credit_budget',
    ]);
}

/**
 * `keysLiveNow` in the statement that bounds the batch's lock waits (`lock_timeout`, set for the
 * transaction): a batch's first statement anyway, so the keys' check costs no round trip of its own.
 */
export async function keysLiveNowWithLockWait(db: Executor, keyIds: readonly string[], lockTimeout: string): Promise<Map<string, LiveKeyNow>> {
  const row = await db
    .selectNoFrom(() => [sql<string>`set_config('lock_timeout', ${lockTimeout}, true)`.as('lock_timeout'), jsonArrayFrom(liveKeys(db, keyIds)).as('keys')])
    .executeTakeFirstOrThrow();
  return new Map((row.keys as LiveKeyNow[]).map((r) => [r.id, r]));
}
