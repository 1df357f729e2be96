import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';
import type { IdentityRow } from './identities.js';

/** Public columns only: the token ciphertexts stay in the database (and in `identityTokens`). */
const columns = [
  'id',
  'user_id',
  'provider',
  'provider_user_id',
  'email',
  'has_access_token',
  'has_refresh_token',
  'token_expires_at',
  'scopes',
  'linked_at',
  'updated_at',
] as const;

export interface IdentityUpsert {
  id: string;
  user_id: string;
  provider: string;
  provider_user_id: string;
  email: string | null;
  access_token_enc: string | null;
  refresh_token_enc: string | null;
  token_expires_at: Date | null;
  scopes: string[];
  raw_profile: string;
  metadata: string;
}

/** Links (or re-links, refreshing tokens) a provider account to a user: one row per (user, provider). */
export async function identityUpsert(db: Executor, row: IdentityUpsert): Promise<IdentityRow> {
  return (await db
    .insertInto('user_identities')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['user_id', 'provider']).doUpdateSet((eb) => ({
        provider_user_id: eb.ref('excluded.provider_user_id'),
        email: eb.ref('excluded.email'),
        access_token_enc: sql`coalesce(excluded.access_token_enc, user_identities.access_token_enc)`,
        refresh_token_enc: sql`coalesce(excluded.refresh_token_enc, user_identities.refresh_token_enc)`,
        token_expires_at: eb.ref('excluded.token_expires_at'),
        scopes: eb.ref('excluded.scopes'),
        raw_profile: eb.ref('excluded.raw_profile'),
        metadata: eb.ref('excluded.metadata'),
      })),
    )
    .returning(columns)
    .executeTakeFirstOrThrow()) as IdentityRow;
}

export async function identityList(db: Executor, userId: string): Promise<IdentityRow[]> {
  return (await db.selectFrom('user_identities').select(columns).where('user_id', '=', userId).orderBy('provider').execute()) as IdentityRow[];
}

export async function identityFindByProvider(db: Executor, provider: string, providerUserId: string): Promise<IdentityRow | undefined> {
  return (await db
    .selectFrom('user_identities')
    .select(columns)
    .where('provider', '=', provider)
    .where('provider_user_id', '=', providerUserId)
    .executeTakeFirst()) as IdentityRow | undefined;
}

export async function identityDelete(db: Executor, userId: string, provider: string): Promise<boolean> {
  const res = await db.deleteFrom('user_identities').where('user_id', '=', userId).where('provider', '=', provider).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

/** The sealed tokens, for the server's own use (calling the provider); never for a response. */
export async function identityTokens(db: Executor, userId: string, provider: string) {
  return db
    .selectFrom('user_identities')
    .select(['access_token_enc', 'refresh_token_enc'])
    .where('user_id', '=', userId)
    .where('provider', '=', provider)
    .executeTakeFirst();
}
