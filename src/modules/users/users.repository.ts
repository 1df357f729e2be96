import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';
import type { UserRow } from './users.js';

/** Every column but password_hash: the hash is read only by userFindCredentials. */
const USER_COLUMNS = [
  'users.id',
  'users.email',
  'users.is_email_verified',
  'users.email_verified_at',
  'users.name',
  'users.username',
  'users.avatar_url',
  'users.bio',
  'users.github_username',
  'users.twitter_username',
  'users.website_url',
  'users.time_zone',
  'users.provider',
  'users.provider_user_id',
  'users.role',
  'users.level',
  'users.is_active',
  'users.preferences',
  'users.metadata',
  'users.last_login_at',
  'users.created_at',
  'users.updated_at',
] as const;

export interface UserInsert {
  id: string;
  email: string | null;
  name?: string | null;
  username?: string | null;
  avatar_url?: string | null;
  bio?: string | null;
  github_username?: string | null;
  twitter_username?: string | null;
  website_url?: string | null;
  time_zone?: string | null;
  preferences?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  is_email_verified?: boolean;
  provider?: string;
  provider_user_id?: string | null;
  level?: number;
  password_hash?: string | null;
}

export type UserPatch = Partial<Omit<UserInsert, 'id' | 'password_hash'>> & { role?: string; is_active?: boolean };

const json = (v: Record<string, unknown> | undefined) => (v === undefined ? undefined : JSON.stringify(v));

export async function userInsert(db: Executor, row: UserInsert): Promise<UserRow> {
  return db
    .insertInto('users')
    .values({
      ...row,
      preferences: json(row.preferences),
      metadata: json(row.metadata),
      email_verified_at: row.is_email_verified ? sql<Date>`now()` : null,
    })
    .returning(USER_COLUMNS)
    .executeTakeFirstOrThrow();
}

export async function userFindById(db: Executor, id: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').select(USER_COLUMNS).where('id', '=', id).executeTakeFirst();
}

export async function userFindConflict(db: Executor, id: string | undefined, email: string | null) {
  return db
    .selectFrom('users')
    .select(['id', 'email'])
    .where((eb) => {
      const ors = [];
      if (id) ors.push(eb('id', '=', id));
      if (email) ors.push(eb(sql`lower(email)`, '=', email.toLowerCase()));
      return eb.or(ors);
    })
    .executeTakeFirst();
}

export async function userFindCredentials(db: Executor, email: string) {
  return db
    .selectFrom('users')
    .select(['id', 'email', 'password_hash', 'is_active'])
    .where(sql`lower(email)`, '=', email.toLowerCase())
    .executeTakeFirst();
}

export async function userUpdate(db: Executor, id: string, patch: UserPatch): Promise<UserRow | undefined> {
  const { preferences, metadata, ...rest } = patch;
  return db
    .updateTable('users')
    .set({
      ...rest,
      ...(preferences !== undefined ? { preferences: JSON.stringify(preferences) } : {}),
      ...(metadata !== undefined ? { metadata: JSON.stringify(metadata) } : {}),
      // Re-vouching for the address keeps its first stamp; vouching for a new address stamps it anew
      // (a fresh clock_timestamp(): the users trigger clears the flag of a changed address unless
      // the same statement sets a new email_verified_at — migration 0010).
      ...(patch.is_email_verified === true
        ? { email_verified_at: patch.email !== undefined ? sql`case when lower(users.email) = lower(${patch.email}) then coalesce(users.email_verified_at, now()) else clock_timestamp() end` : sql`coalesce(users.email_verified_at, now())` }
        : {}),
      ...(patch.is_email_verified === false ? { email_verified_at: null } : {}),
    })
    .where('id', '=', id)
    .returning(USER_COLUMNS)
    .executeTakeFirst();
}

/**
 * What token authentication needs to know about a user: active or not, and whether the token's
 * session was revoked. Undefined when the user is unknown to Tally (a Supabase user not yet created).
 * Also records the session's activity, at most once a minute (one small write, not one per request).
 */
export async function userAuthState(db: Executor, userId: string, sessionId: string | null) {
  if (sessionId) {
    await db
      .updateTable('user_sessions')
      .set({ last_activity_at: sql`now()` })
      .where('id', '=', sessionId)
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .where('last_activity_at', '<', sql<Date>`now() - interval '1 minute'`)
      .execute();
  }
  return db
    .selectFrom('users')
    .leftJoin('user_sessions', (join) =>
      join.onRef('user_sessions.user_id', '=', 'users.id').on('user_sessions.id', '=', sessionId ?? ''),
    )
    .select(['users.is_active', (eb) => eb('user_sessions.revoked_at', 'is not', null).as('session_revoked')])
    .where('users.id', '=', userId)
    .executeTakeFirst();
}

/** Locks a user's row for an e-mail verification (issue or redeem): what the address is, now. */
/** The account with this address (case-insensitively), locked; its credentials included. */
export async function userLockByEmail(db: Executor, email: string) {
  return db
    .selectFrom('users')
    .select(['id', 'email', 'password_hash', 'is_active', 'is_email_verified'])
    .where(sql`lower(email)`, '=', email.toLowerCase())
    .forUpdate()
    .executeTakeFirst();
}

export async function userLockEmail(db: Executor, id: string) {
  return db.selectFrom('users').select(['id', 'email', 'is_email_verified']).where('id', '=', id).forUpdate().executeTakeFirst();
}

/** Marks the user's address verified — only if it is still `email` (case-insensitively). */
export async function userMarkEmailVerified(db: Executor, id: string, email: string) {
  return db
    .updateTable('users')
    .set({ is_email_verified: true, email_verified_at: sql`coalesce(users.email_verified_at, now())` })
    .where('id', '=', id)
    .where(sql`lower(email)`, '=', email.toLowerCase())
    .returning(['email', 'email_verified_at'])
    .executeTakeFirst();
}

export async function userTouchLogin(db: Executor, id: string): Promise<void> {
  await db.updateTable('users').set({ last_login_at: sql`now()` }).where('id', '=', id).execute();
}

/**
 * One page of users, each with its account's balance and held credits (0 before the first money
 * movement opens the account) in the same query: credit_accounts.user_id is unique, so the left
 * join adds at most one row per user (docs/dashboard.md: the users list needs no per-row read).
 */
export async function userList(db: Executor, page: PageRequest, filter: { email?: string; q?: string }) {
  let q = db
    .selectFrom('users')
    .leftJoin('credit_accounts', 'credit_accounts.user_id', 'users.id')
    .select(USER_COLUMNS)
    .select((eb) => [
      eb.fn.coalesce('credit_accounts.balance', sql<number>`0`).as('balance'),
      eb.fn.coalesce('credit_accounts.held', sql<number>`0`).as('held'),
    ])
    .select(cursorColumn('users').as('cursor_us'));
  if (filter.email) q = q.where(sql`lower(users.email)`, '=', filter.email.toLowerCase());
  if (filter.q) {
    const like = `%${filter.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    q = q.where((eb) => eb.or([eb('users.email', 'ilike', like), eb('users.name', 'ilike', like), eb('users.id', 'ilike', like)]));
  }
  if (page.after) q = q.where(cursorBefore('users', page.after));
  return q.orderBy('users.created_at', 'desc').orderBy('users.id', 'desc').limit(page.limit + 1).execute();
}
