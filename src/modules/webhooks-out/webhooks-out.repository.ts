import type { PageRequest } from '../../core/paging.js';
import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type RunStatement, statement } from '../../db/statements.js';
import type { DeliveryRow, EndpointRow } from './webhooks-out.js';

/** SQL for outgoing webhooks: the service's own tables (RLS on, no end-user grant). */

export async function endpointInsert(db: Executor, row: Omit<EndpointRow, 'created_at' | 'updated_at' | 'previous_secret_enc' | 'previous_secret_expires_at' | 'is_active' | 'disabled_reason' | 'failing_since'>): Promise<EndpointRow> {
  return (await db.insertInto('webhook_endpoints').values(row).returningAll().executeTakeFirstOrThrow()) as EndpointRow;
}

export async function endpointFind(db: Executor, id: string, lock = false): Promise<EndpointRow | undefined> {
  const q = db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id);
  return (await (lock ? q.forUpdate() : q).executeTakeFirst()) as EndpointRow | undefined;
}

export async function endpointList(db: Executor, page: PageRequest, workspaceId?: string) {
  let q = db.selectFrom('webhook_endpoints').selectAll().select(cursorColumn('webhook_endpoints').as('cursor_us'));
  if (workspaceId) q = q.where('workspace_id', '=', workspaceId);
  if (page.after) q = q.where(cursorBefore('webhook_endpoints', page.after));
  return (await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute()) as (EndpointRow & { cursor_us: number })[];
}

export type EndpointPatch = Partial<Pick<EndpointRow, 'url' | 'description' | 'event_types' | 'is_active' | 'disabled_reason' | 'failing_since' | 'secret_enc' | 'previous_secret_enc' | 'previous_secret_expires_at' | 'key_id'>>;

export async function endpointUpdate(db: Executor, id: string, patch: EndpointPatch): Promise<EndpointRow | undefined> {
  return (await db.updateTable('webhook_endpoints').set(patch).where('id', '=', id).returningAll().executeTakeFirst()) as EndpointRow | undefined;
}

export async function endpointDelete(db: Executor, id: string): Promise<boolean> {
  const r = await db.deleteFrom('webhook_endpoints').where('id', '=', id).executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

export async function messageInsert(db: Executor, row: { id: string; type: string; user_id: string | null; workspace_id: string | null; payload: unknown }): Promise<void> {
  await db.insertInto('webhook_messages').values({ ...row, payload: JSON.stringify(row.payload) }).execute();
}

export async function deliveryInsert(db: Executor, row: { id: string; message_id: string; endpoint_id: string }): Promise<void> {
  await db.insertInto('webhook_deliveries').values(row).execute();
}

/** A delivery with what it sends and where. */
export async function deliveryLoad(db: Executor, id: string) {
  return db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('webhook_messages as m', 'm.id', 'd.message_id')
    .selectAll('d')
    .select(['m.type', 'm.payload', 'm.created_at as message_created_at'])
    .where('d.id', '=', id)
    .executeTakeFirst() as Promise<(DeliveryRow & { type: string; payload: unknown; message_created_at: Date }) | undefined>;
}

export async function deliveryList(db: Executor, endpointId: string, page: PageRequest, status?: string) {
  let q = db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('webhook_messages as m', 'm.id', 'd.message_id')
    .selectAll('d')
    .select(['m.type', 'm.payload', cursorColumn('d').as('cursor_us')])
    .where('d.endpoint_id', '=', endpointId);
  if (status) q = q.where('d.status', '=', status);
  if (page.after) q = q.where(cursorBefore('d', page.after));
  return (await q.orderBy('d.created_at', 'desc').orderBy('d.id', 'desc').limit(page.limit + 1).execute()) as (DeliveryRow & { type: string; payload: unknown; cursor_us: number })[];
}

export interface AttemptRecord {
  status: 'pending' | 'succeeded' | 'failed' | 'canceled';
  statusCode: number | null;
  error: string | null;
  response: string | null;
  at: Date;
}

export async function deliveryRecordAttempt(db: Executor, id: string, a: AttemptRecord): Promise<void> {
  await db
    .updateTable('webhook_deliveries')
    .set((eb) => ({
      status: a.status,
      attempts: eb('attempts', '+', 1),
      last_status_code: a.statusCode,
      last_error: a.error?.slice(0, 2000) ?? null,
      last_response: a.response?.slice(0, 2000) ?? null,
      last_attempt_at: a.at,
      ...(a.status === 'succeeded' ? { delivered_at: a.at } : {}),
    }))
    .where('id', '=', id)
    .execute();
}

export async function deliverySetStatus(db: Executor, id: string, status: 'pending' | 'canceled'): Promise<void> {
  await db.updateTable('webhook_deliveries').set({ status }).where('id', '=', id).execute();
}

/** For `tally secrets rotate`: endpoints whose secrets another key sealed. */
export async function endpointsSealedNotUnder(db: Executor, keyId: string) {
  return db.selectFrom('webhook_endpoints').select(['id', 'secret_enc', 'previous_secret_enc']).where('key_id', '<>', keyId).execute();
}

const outboxTexts = new Map<string, string>();

/**
 * The outbox write, one statement for any number of events: each event is matched to the active
 * endpoints that want it (its type or `*`; endpoints of its workspace or of none), and for each
 * match a message, a delivery and its queue job are inserted. An event no endpoint wants writes
 * nothing. Ids of deliveries and jobs derive from (message, endpoint), unique by construction, so
 * the whole write needs no read first. Answers how many deliveries were made.
 */
function outboxText(schema: string): string {
  let text = outboxTexts.get(schema);
  if (text) return text;
  const t = (name: string) => `"${schema}"."${name}"`;
  text = `with ev as (
      select * from jsonb_to_recordset($1::jsonb) as x(id text, type text, user_id text, workspace_id text, payload jsonb)
    ), targets as (
      select ev.id as message_id, e.id as endpoint_id, 'whdl_' || substr(ev.id, 7) || substr(e.id, 6) as delivery_id
      from ev join ${t('webhook_endpoints')} e
        on e.is_active and (ev.type = any(e.event_types) or '*' = any(e.event_types))
       and (e.workspace_id is null or e.workspace_id = ev.workspace_id)
    ), messages as (
      insert into ${t('webhook_messages')} (id, type, user_id, workspace_id, payload)
      select id, type, user_id, workspace_id, payload from ev where id in (select message_id from targets)
    ), deliveries as (
      insert into ${t('webhook_deliveries')} (id, message_id, endpoint_id) select delivery_id, message_id, endpoint_id from targets
    ), jobs as (
      insert into ${t('background_jobs')} (id, type, input, run_at, max_attempts, dedupe_key)
      select 'bgj_' || substr(delivery_id, 6), $2, jsonb_build_object('delivery_id', delivery_id), $3::timestamptz, $4::int,
        'webhook:' || delivery_id || ':0'
      from targets
    )
    select count(*)::int as deliveries from targets`;
  outboxTexts.set(schema, text);
  return text;
}

export interface OutboxRow {
  id: string;
  type: string;
  user_id: string | null;
  workspace_id: string | null;
  payload: unknown;
}

export async function outboxWrite(run: RunStatement, schema: string, rows: OutboxRow[], job: { type: string; runAt: Date; maxAttempts: number }): Promise<number> {
  const [res] = await run<{ deliveries: number }>(statement('webhooks_outbox', outboxText(schema), [JSON.stringify(rows), job.type, job.runAt, job.maxAttempts]));
  return res?.deliveries ?? 0;
}
