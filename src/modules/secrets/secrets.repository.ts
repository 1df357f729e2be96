import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import { setRequestRole } from '../../db/request-role.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';

/** Columns end users may read: everything but the ciphertext. */
const ENV_COLUMNS = ['id', 'project_id', 'key', 'key_id', 'value_hint', 'scope', 'environment', 'var_type', 'is_secret', 'description', 'created_by', 'created_at', 'updated_at'] as const;
const TOKEN_COLUMNS = ['id', 'user_id', 'workspace_id', 'created_by', 'provider', 'name', 'key_id', 'token_hint', 'config', 'is_active', 'last_used_at', 'created_at', 'updated_at'] as const;

export async function envVarInsert(db: Executor, row: { id: string; project_id: string; key: string; value_enc: string; key_id: string; value_hint: string | null; scope?: string; environment?: string; var_type?: string; is_secret?: boolean; description?: string; created_by: string | null }) {
  return db.insertInto('env_vars').values(row).returning([...ENV_COLUMNS]).executeTakeFirstOrThrow();
}

export async function envVarFind(db: Executor, projectId: string, id: string) {
  return db.selectFrom('env_vars').select([...ENV_COLUMNS]).where('id', '=', id).where('project_id', '=', projectId).executeTakeFirst();
}

export async function envVarList(db: Executor, projectId: string, page: PageRequest) {
  let q = db.selectFrom('env_vars').select([...ENV_COLUMNS]).select(cursorColumn('env_vars').as('cursor_us')).where('project_id', '=', projectId);
  if (page.after) q = q.where(cursorBefore('env_vars', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

export async function envVarDelete(db: Executor, projectId: string, id: string): Promise<boolean> {
  const res = await db.deleteFrom('env_vars').where('id', '=', id).where('project_id', '=', projectId).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

export async function serviceTokenInsert(db: Executor, row: { id: string; user_id: string | null; workspace_id: string | null; created_by: string | null; provider: string; name: string; token_enc: string; key_id: string; token_hint: string | null; config: Record<string, unknown> }) {
  return db.insertInto('service_tokens').values({ ...row, config: JSON.stringify(row.config) }).returning([...TOKEN_COLUMNS]).executeTakeFirstOrThrow();
}

export async function serviceTokenFind(db: Executor, id: string) {
  return db.selectFrom('service_tokens').select([...TOKEN_COLUMNS]).where('id', '=', id).executeTakeFirst();
}

export async function serviceTokenList(db: Executor, page: PageRequest, filter: { memberId?: string; userId?: string; workspaceId?: string }) {
  let q = db.selectFrom('service_tokens').select([...TOKEN_COLUMNS]).select(cursorColumn('service_tokens').as('cursor_us'));
  if (filter.memberId) {
    const m = filter.memberId;
    q = q.where((eb) => eb.or([eb('user_id', '=', m), eb('workspace_id', 'in', eb.selectFrom('workspace_members').select('workspace_id').where('user_id', '=', m))]));
  }
  if (filter.userId) q = q.where('user_id', '=', filter.userId);
  if (filter.workspaceId) q = q.where('workspace_id', '=', filter.workspaceId);
  if (page.after) q = q.where(cursorBefore('service_tokens', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

export async function serviceTokenDelete(db: Executor, id: string): Promise<boolean> {
  const res = await db.deleteFrom('service_tokens').where('id', '=', id).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

/**
 * Reads a ciphertext after the service layer (and RLS, which let the caller see the row) allowed
 * the reveal. End users hold no grant on ciphertext columns, so this one read runs as the owning
 * role — `set local role none` for the statement — and the request's role is restored at once.
 */
export async function sealedValueRead(db: Executor, principal: Principal, table: 'env_vars' | 'service_tokens', id: string): Promise<string | null> {
  if (principal.kind !== 'service') await sql`select set_config('role', 'none', true)`.execute(db);
  try {
    if (table === 'env_vars') {
      return (await db.selectFrom('env_vars').select('value_enc').where('id', '=', id).executeTakeFirst())?.value_enc ?? null;
    }
    return (await db.selectFrom('service_tokens').select('token_enc').where('id', '=', id).executeTakeFirst())?.token_enc ?? null;
  } finally {
    if (principal.kind !== 'service') await setRequestRole(db, principal);
  }
}

export async function revealAudit(db: Executor, row: { id: string; actor: string; actor_user_id: string | null; target_type: 'env_var' | 'service_token'; target_id: string; project_id: string | null; request_id: string }) {
  await db.insertInto('secret_reveals').values(row).execute();
}

export async function connectionUpsert(db: Executor, row: { id: string; project_id: string; provider: string; status?: string; service_data?: Record<string, unknown>; service_token_id?: string | null; last_sync_at?: string | null }) {
  const values = { ...row, ...(row.service_data !== undefined ? { service_data: JSON.stringify(row.service_data) } : {}) };
  const { id: _id, project_id: _p, provider: _pr, ...update } = values;
  return db
    .insertInto('service_connections')
    .values(values as never)
    .onConflict((oc) => (Object.keys(update).length ? oc.columns(['project_id', 'provider']).doUpdateSet(update as never) : oc.columns(['project_id', 'provider']).doUpdateSet({ status: sql`service_connections.status` })))
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function connectionList(db: Executor, projectId: string, page: PageRequest) {
  let q = db.selectFrom('service_connections').selectAll().select(cursorColumn('service_connections').as('cursor_us')).where('project_id', '=', projectId);
  if (page.after) q = q.where(cursorBefore('service_connections', page.after));
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute();
}

export async function connectionDelete(db: Executor, projectId: string, provider: string): Promise<boolean> {
  const res = await db.deleteFrom('service_connections').where('project_id', '=', projectId).where('provider', '=', provider).executeTakeFirst();
  return res.numDeletedRows > 0n;
}
