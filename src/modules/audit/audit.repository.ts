import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import { type RunStatement, statement } from '../../db/statements.js';
import type { PageRequest } from '../../core/paging.js';
import type { AuditFilter, AuditRow } from './audit.js';

const COLUMNS = ['id', 'seq', 'at', 'actor_kind', 'actor_id', 'api_key_id', 'action', 'target_table', 'target_id', 'before', 'after', 'request_id', 'hash'] as const;

/** Newest first by chain position; the cursor is (seq, id). Unsealed rows (only ever the caller's own, uncommitted) are not listed. */
export async function auditList(db: Executor, page: PageRequest, f: AuditFilter): Promise<(AuditRow & { cursor_us: number })[]> {
  let q = db.selectFrom('audit_log').select([...COLUMNS]).select(sql<number>`seq`.as('cursor_us')).where('seq', 'is not', null);
  if (f.actorKind) q = q.where('actor_kind', '=', f.actorKind);
  if (f.actorId) q = q.where('actor_id', '=', f.actorId);
  if (f.action) q = q.where('action', '=', f.action);
  if (f.targetTable) q = q.where('target_table', '=', f.targetTable);
  if (f.targetId) q = q.where('target_id', '=', f.targetId);
  if (f.requestId) q = q.where('request_id', '=', f.requestId);
  if (f.from) q = q.where('at', '>=', f.from);
  if (f.to) q = q.where('at', '<', f.to);
  if (page.after) q = q.where('seq', '<', page.after.us);
  const rows = await q.orderBy('seq', 'desc').limit(page.limit + 1).execute();
  return rows.map((r) => ({ ...r, cursor_us: Number(r.cursor_us) })) as (AuditRow & { cursor_us: number })[];
}

export interface ChainLink {
  seq: number | null;
  id: string;
  prev_hash: string | null;
  hash: string | null;
  digest: string | null;
}

/** One chunk of the chain after `afterSeq`, with each row's hash recomputed by the database. */
export async function auditChainChunk(db: Executor, schema: string, afterSeq: number, limit: number): Promise<ChainLink[]> {
  const t = sql.table(`${schema}.audit_log`);
  const digest = sql.raw(`${quote(schema)}.audit_log_digest(a)`);
  const { rows } = await sql<ChainLink>`select a.seq::int8 as seq, a.id, a.prev_hash, a.hash, ${digest} as digest
    from ${t} a where a.seq > ${afterSeq} order by a.seq limit ${limit}`.execute(db);
  return rows.map((r) => ({ ...r, seq: r.seq === null ? null : Number(r.seq) }));
}

/** Rows that committed without a seal: only possible with the sealing trigger disabled. */
export async function auditUnsealed(db: Executor, limit: number): Promise<{ id: string }[]> {
  return db.selectFrom('audit_log').select('id').where('seq', 'is', null).limit(limit).execute();
}

export async function auditHead(db: Executor): Promise<{ last_seq: number; last_hash: string } | undefined> {
  const row = await db.selectFrom('audit_chain').select(['last_seq', 'last_hash']).executeTakeFirst();
  return row ? { last_seq: Number(row.last_seq), last_hash: row.last_hash } : undefined;
}

export interface LedgerAuditRow {
  actor_kind: string | null;
  actor_id: string | null;
  action: string;
  target_id: string;
  after: Record<string, unknown>;
  request_id: string | null;
}

/**
 * The ledger's audit rows, one statement for a batch. Rows without an actor take the
 * transaction's (`audit_actor()`: the request that runs the ledger inside its own transaction).
 */
export async function auditLedgerInsert(run: RunStatement, schema: string, rows: readonly LedgerAuditRow[]): Promise<void> {
  const s = quote(schema);
  await run(statement('audit_ledger_insert', `
    insert into ${s}.audit_log (id, actor_kind, actor_id, api_key_id, action, target_table, target_id, after, request_id)
    select 'aud_' || replace(gen_random_uuid()::text, '-', ''),
           coalesce(e.actor_kind, x.a ->> 'kind'),
           case when e.actor_kind is null then x.a ->> 'id' else e.actor_id end,
           case when e.actor_kind is null then x.a ->> 'api_key_id' end,
           e.action, 'credit_ledger', e.target_id, e.after,
           coalesce(e.request_id, nullif(current_setting('tally.request_id', true), ''))
      from jsonb_to_recordset($1::jsonb) as e(actor_kind text, actor_id text, action text, target_id text, after jsonb, request_id text)
      cross join (select ${s}.audit_actor() as a) x`, [JSON.stringify(rows)]));
}

const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`;
