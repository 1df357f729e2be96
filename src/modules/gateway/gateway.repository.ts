import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { PageRequest } from '../../core/paging.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import type { RequestRow, Tokens, UpstreamRow } from './gateway.js';

/** Upstream columns that may leave the repository: never the sealed credentials. */
const UPSTREAM_COLUMNS = [
  'id', 'type', 'name', 'base_url', 'credentials_hint', 'models', 'priority', 'weight', 'is_active', 'state', 'success_count',
  'error_count', 'consecutive_failures', 'cooldown_until', 'last_error', 'last_error_at', 'last_success_at', 'created_at', 'updated_at',
] as const;

const REQUEST_COLUMNS = [
  'id', 'user_id', 'workspace_id', 'api_key_id', 'endpoint', 'model', 'stream', 'status', 'http_status', 'upstream_id', 'attempts',
  'hold_id', 'held', 'input_tokens', 'cached_input_tokens', 'cache_write_tokens', 'output_tokens', 'reasoning_tokens', 'cost_micros', 'uncharged_micros',
  'charged', 'usage_source', 'latency_ms', 'ttft_ms', 'error', 'created_at', 'settled_at',
] as const;

export interface UpstreamInsert {
  id: string;
  type: string;
  name: string;
  base_url: string;
  credentials_enc: string;
  key_id: string;
  credentials_hint: string;
  models: string[];
  priority: number;
  weight: number;
  is_active: boolean;
}

export async function upstreamInsert(db: Executor, row: UpstreamInsert): Promise<UpstreamRow> {
  return db.insertInto('gateway_upstreams').values(row).returning([...UPSTREAM_COLUMNS]).executeTakeFirstOrThrow();
}

export async function upstreamFind(db: Executor, id: string): Promise<UpstreamRow | undefined> {
  return db.selectFrom('gateway_upstreams').select([...UPSTREAM_COLUMNS]).where('id', '=', id).executeTakeFirst();
}

export async function upstreamList(db: Executor, page: PageRequest) {
  let q = db.selectFrom('gateway_upstreams').select([...UPSTREAM_COLUMNS]).select(cursorColumn('gateway_upstreams').as('cursor_us'));
  if (page.after) q = q.where(cursorBefore('gateway_upstreams', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

/** Every active upstream with its sealed credentials, for the router (the only reader of ciphertext). */
export async function upstreamsRoutable(db: Executor): Promise<(UpstreamRow & { credentials_enc: string })[]> {
  return db.selectFrom('gateway_upstreams').select([...UPSTREAM_COLUMNS, 'credentials_enc']).where('is_active', '=', true).execute();
}

export async function upstreamUpdate(
  db: Executor,
  id: string,
  set: Partial<Omit<UpstreamInsert, 'id' | 'type'>> & { state?: string; consecutive_failures?: number; cooldown_until?: Date | null; last_error?: string | null },
): Promise<UpstreamRow | undefined> {
  if (Object.keys(set).length === 0) return upstreamFind(db, id);
  return db.updateTable('gateway_upstreams').set(set).where('id', '=', id).returning([...UPSTREAM_COLUMNS]).executeTakeFirst();
}

export async function upstreamDelete(db: Executor, id: string): Promise<boolean> {
  const res = await db.deleteFrom('gateway_upstreams').where('id', '=', id).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

/** Records an attempt's outcome on the upstream's counters and circuit (one statement). */
export async function upstreamRecordOutcome(
  db: Executor,
  id: string,
  outcome: { ok: true; at: Date } | { ok: false; at: Date; error: string; state: string; consecutiveFailures: number; cooldownUntil: Date | null },
): Promise<void> {
  if (outcome.ok) {
    await db
      .updateTable('gateway_upstreams')
      .set({ success_count: sql`success_count + 1`, consecutive_failures: 0, last_success_at: outcome.at, state: sql`case when state = 'disabled' then state else 'closed' end`, cooldown_until: null })
      .where('id', '=', id)
      .execute();
    return;
  }
  await db
    .updateTable('gateway_upstreams')
    .set({
      error_count: sql`error_count + 1`,
      consecutive_failures: outcome.consecutiveFailures,
      last_error: outcome.error.slice(0, 1000),
      last_error_at: outcome.at,
      state: outcome.state,
      cooldown_until: outcome.cooldownUntil,
    })
    .where('id', '=', id)
    .execute();
}

/** A request this upstream refused (403): counted and said, its circuit untouched. */
export async function upstreamRecordRefusal(db: Executor, id: string, at: Date, error: string): Promise<void> {
  await db
    .updateTable('gateway_upstreams')
    .set({ error_count: sql`error_count + 1`, last_error: error.slice(0, 1000), last_error_at: at })
    .where('id', '=', id)
    .execute();
}

export interface RequestInsert {
  id: string;
  user_id: string;
  workspace_id: string | null;
  api_key_id: string | null;
  idempotency_key: string | null;
  request_hash: string | null;
  endpoint: string;
  model: string;
  stream: boolean;
  hold_id: string | null;
  held: number;
  input_tokens: number;
  window_start: Date | null;
  reserved_tokens: number;
  lease_until: Date;
}

export async function requestInsert(db: Executor, row: RequestInsert): Promise<void> {
  await db.insertInto('gateway_requests').values(row).execute();
}

/** Many request records in one statement (the relay's batched opens). */
export async function requestInsertMany(db: Executor, rows: readonly RequestInsert[]): Promise<void> {
  if (rows.length > 0) await db.insertInto('gateway_requests').values([...rows]).execute();
}

export async function requestFind(db: Executor, id: string): Promise<RequestRow | undefined> {
  return db.selectFrom('gateway_requests').select([...REQUEST_COLUMNS]).where('id', '=', id).executeTakeFirst();
}

/** A user's request under an Idempotency-Key, with the stored answer of a completed JSON request. */
export async function requestFindByKey(db: Executor, userId: string, key: string) {
  return db
    .selectFrom('gateway_requests')
    .select([...REQUEST_COLUMNS, 'response', 'request_hash'])
    .where('user_id', '=', userId)
    .where('idempotency_key', '=', key)
    .executeTakeFirst();
}

/** Locks request rows for their one settlement (with what they counted against their key's minute), in id order. */
export async function requestLockMany(db: Executor, ids: readonly string[]) {
  if (ids.length === 0) return [];
  return db
    .selectFrom('gateway_requests')
    .select([...REQUEST_COLUMNS, 'window_start', 'reserved_tokens'])
    .where('id', 'in', [...ids])
    .orderBy('id')
    .forUpdate()
    .execute();
}

export interface RequestSettle {
  status: string;
  http_status: number | null;
  upstream_id: string | null;
  attempts: number;
  tokens: Tokens;
  cost_micros: number;
  uncharged_micros: number;
  charged: number;
  usage_source: string;
  latency_ms: number | null;
  ttft_ms: number | null;
  error: string | null;
  response: string | null;
  /** The carry the cost joined: '' for the account's own, the member's id in a workspace pool. */
  carry_member_id: string;
  settled_at: Date;
}

/** Makes settled records final in one statement (the rows are locked by the caller). */
export async function requestSettleMany(db: Executor, schema: string, settled: readonly { id: string; s: RequestSettle }[]): Promise<void> {
  if (settled.length === 0) return;
  const rows = settled.map(({ id, s }) => ({
    id,
    status: s.status,
    http_status: s.http_status,
    upstream_id: s.upstream_id,
    attempts: s.attempts,
    input_tokens: s.tokens.input,
    cached_input_tokens: s.tokens.cachedInput,
    cache_write_tokens: s.tokens.cacheWrite,
    output_tokens: s.tokens.output,
    reasoning_tokens: s.tokens.reasoning,
    cost_micros: s.cost_micros,
    uncharged_micros: s.uncharged_micros,
    charged: s.charged,
    usage_source: s.usage_source,
    latency_ms: s.latency_ms,
    ttft_ms: s.ttft_ms,
    error: s.error === null ? null : wellFormed(s.error),
    response: s.response === null ? null : wellFormed(s.response),
    carry_member_id: s.carry_member_id,
    settled_at: s.settled_at.toISOString(),
  }));
  await sql`
    update ${sql.table(`${schema}.gateway_requests`)} r set
      status = v.status, http_status = v.http_status, upstream_id = v.upstream_id, attempts = v.attempts,
      input_tokens = v.input_tokens, cached_input_tokens = v.cached_input_tokens, cache_write_tokens = v.cache_write_tokens,
      output_tokens = v.output_tokens, reasoning_tokens = v.reasoning_tokens, cost_micros = v.cost_micros,
      uncharged_micros = v.uncharged_micros, charged = v.charged, usage_source = v.usage_source,
      latency_ms = v.latency_ms, ttft_ms = v.ttft_ms, error = v.error, response = v.response,
      carry_member_id = v.carry_member_id, settled_at = v.settled_at
    from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as v(
      id text, status text, http_status int4, upstream_id text, attempts int4,
      input_tokens int8, cached_input_tokens int8, cache_write_tokens int8, output_tokens int8, reasoning_tokens int8,
      cost_micros int8, uncharged_micros int8, charged int8, usage_source text, latency_ms int4, ttft_ms int4,
      error text, response text, carry_member_id text, settled_at timestamptz)
    where r.id = v.id`.execute(db);
}

/**
 * Lone surrogates as U+FFFD — what a text parameter becomes on its way to the database anyway
 * (UTF-8 encoding replaces them) — since JSON text may not carry them and jsonb refuses the whole
 * batch for one (attacker review F6).
 */
function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/**
 * Pending requests whose process stopped renewing their lease (it ended mid-request): the reaper's
 * work. A row from before leases (0035) falls back to its age.
 */
export async function requestsStale(db: Executor, now: Date, before: Date, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom('gateway_requests')
    .select('id')
    .where('status', '=', 'pending')
    .where((eb) => eb.or([eb('lease_until', '<', now), eb.and([eb('lease_until', 'is', null), eb('created_at', '<', before)])]))
    .orderBy('created_at')
    .limit(limit)
    .execute();
  return rows.map((r) => r.id);
}

/** A live process keeps its in-flight requests from the reaper (one statement for all of them). */
export async function requestsRenew(db: Executor, ids: readonly string[], until: Date): Promise<void> {
  if (ids.length === 0) return;
  await db.updateTable('gateway_requests').set({ lease_until: until }).where('id', 'in', ids).where('status', '=', 'pending').execute();
}

export async function requestList(db: Executor, page: PageRequest, filter: { userId?: string; model?: string; status?: string; requestId?: string }) {
  let q = db.selectFrom('gateway_requests').select([...REQUEST_COLUMNS]).select(cursorColumn('gateway_requests').as('cursor_us'));
  if (filter.requestId) q = q.where('id', '=', filter.requestId);
  if (filter.userId) q = q.where('user_id', '=', filter.userId);
  if (filter.model) q = q.where('model', '=', filter.model);
  if (filter.status) q = q.where('status', '=', filter.status);
  if (page.after) q = q.where(cursorBefore('gateway_requests', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

/**
 * Adds settlements' exact costs to one carry's running total (one statement) and answers the new
 * total: the caller splits the whole credits that crossed among them in order, so the credits
 * captured for a carry stay floor(total / 1e6). A carry is an account's own (member '') or, in a
 * workspace pool, one member's: each member's fraction is theirs, never captured on another
 * member's request (review R9). Concurrent settlements of one carry serialize on its row.
 */
export async function carryAddTotal(db: Executor, carry: { accountId: string; memberId: string }, micros: number): Promise<number> {
  const row = await db
    .insertInto('gateway_carries')
    .values({ account_id: carry.accountId, member_id: carry.memberId, total_micros: micros })
    .onConflict((oc) => oc.columns(['account_id', 'member_id']).doUpdateSet({ total_micros: sql`gateway_carries.total_micros + ${micros}::int8` }))
    .returning('total_micros')
    .executeTakeFirstOrThrow();
  return Number(row.total_micros);
}

/** The models with gateway prices (cost models `llm:<model>`, active). */
export async function pricedModels(db: Executor): Promise<{ metric: string; created_at: Date }[]> {
  return db.selectFrom('cost_models').select(['metric', 'created_at']).where('metric', 'like', 'llm:%').where('is_active', '=', true).orderBy('metric').execute();
}
