import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';

/** Columns that may leave the repository: never key_hash. */
const PUBLIC_COLUMNS = [
  'api_keys.id',
  'api_keys.user_id',
  'api_keys.workspace_id',
  'api_keys.name',
  'api_keys.prefix',
  'api_keys.scopes',
  'api_keys.credit_budget',
  'api_keys.credits_used',
  'api_keys.models',
  'api_keys.rpm_limit',
  'api_keys.tpm_limit',
  'api_keys.max_concurrency',
  'api_keys.expires_at',
  'api_keys.last_used_at',
  'api_keys.request_count',
  'api_keys.revoked_at',
  'api_keys.created_at',
] as const;

export interface ApiKeyRow {
  id: string;
  user_id: string;
  workspace_id: string | null;
  name: string;
  prefix: string;
  scopes: string[];
  credit_budget: number | null;
  credits_used: number;
  models: string[] | null;
  rpm_limit: number | null;
  tpm_limit: number | null;
  max_concurrency: number | null;
  expires_at: Date | null;
  last_used_at: Date | null;
  request_count: number;
  revoked_at: Date | null;
  created_at: Date;
}

/** A key's gateway limits (migration 0035); null is unlimited. */
export interface ApiKeyLimits {
  models: string[] | null;
  rpm_limit: number | null;
  tpm_limit: number | null;
  max_concurrency: number | null;
  credit_budget: number | null;
}

export async function apiKeyInsert(
  db: Executor,
  row: { id: string; user_id: string; workspace_id?: string | null; name: string; prefix: string; key_hash: string; scopes: string[]; expires_at: Date | null } & Partial<ApiKeyLimits>,
): Promise<ApiKeyRow> {
  return db.insertInto('api_keys').values(row).returning(PUBLIC_COLUMNS).executeTakeFirstOrThrow();
}

/** The service's changes to a key: its name and limits (an end user never raises them: 0001, 0035). */
export async function apiKeyUpdate(db: Executor, id: string, set: Partial<ApiKeyLimits> & { name?: string }): Promise<ApiKeyRow | undefined> {
  if (Object.keys(set).length === 0) return apiKeyFindById(db, id);
  return db.updateTable('api_keys').set(set).where('id', '=', id).returning(PUBLIC_COLUMNS).executeTakeFirst();
}

/** A live key as authentication sees it: who, which scopes, until when, and its gateway limits. */
export interface KeyTouched {
  id: string;
  user_id: string;
  workspace_id: string | null;
  scopes: string[];
  email: string | null;
  expires_at: Date | null;
  models: string[] | null;
  rpm_limit: number | null;
  tpm_limit: number | null;
  max_concurrency: number | null;
  credit_budget: number | null;
}

/**
 * The live key with hash $1 (not revoked, not expired, its user active); its use is counted apart
 * (api-keys.uses.ts). Runs as the owner, before the request's role is set: authenticating is what
 * decides that role. Fixed text, run as a named prepared statement (src/db/statements.ts): every
 * request with a key sends it, so it is parsed and planned once per connection, and built by no
 * query builder per call.
 */
export function apiKeyLiveText(schema: string): string {
  const t = (name: string) => `"${schema}"."${name}"`;
  return `select k.id, k.user_id, k.workspace_id, k.scopes, u.email, k.expires_at, k.models, k.rpm_limit, k.tpm_limit,
      k.max_concurrency, k.credit_budget
    from ${t('api_keys')} k join ${t('users')} u on u.id = k.user_id
    where k.key_hash = $1 and k.revoked_at is null and (k.expires_at is null or k.expires_at > now()) and u.is_active = true`;
}

export async function apiKeyFindById(db: Executor, id: string): Promise<ApiKeyRow | undefined> {
  return db.selectFrom('api_keys').select(PUBLIC_COLUMNS).where('id', '=', id).executeTakeFirst();
}

export async function apiKeyRevoke(db: Executor, id: string): Promise<ApiKeyRow | undefined> {
  return db
    .updateTable('api_keys')
    .set({ revoked_at: sql`coalesce(api_keys.revoked_at, now())` })
    .where('id', '=', id)
    .returning(PUBLIC_COLUMNS)
    .executeTakeFirst();
}

export async function apiKeyListByUser(db: Executor, userId: string, page: PageRequest) {
  let q = db
    .selectFrom('api_keys')
    .select(PUBLIC_COLUMNS)
    .select(cursorColumn('api_keys').as('cursor_us'))
    .where('user_id', '=', userId);
  if (page.after) q = q.where(cursorBefore('api_keys', page.after));
  return q.orderBy('api_keys.created_at', 'desc').orderBy('api_keys.id', 'desc').limit(page.limit + 1).execute();
}
