import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { assertSelfOrService } from '../../core/principal.js';
import { errors } from '../../core/errors.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import type { SecretBox } from '../../lib/secret-box.js';
import { userFindById } from '../users/users.repository.js';
import type { IdentityRow, LinkIdentityBody } from './identities.js';
import {
  identityDelete,
  identityFindByProvider,
  identityList,
  identityTokens,
  identityUpsert,
} from './identities.repository.js';

/**
 * Linked logins (GitHub, Google, …). OAuth tokens are sealed with AES-256-GCM before they reach
 * the database, bound to (user, provider) so a ciphertext cannot be moved to another row.
 */
export class IdentitiesService {
  constructor(private readonly secrets: SecretBox) {}

  async link(db: Executor, userId: string, input: Static<typeof LinkIdentityBody>): Promise<IdentityRow> {
    if (!(await userFindById(db, userId))) throw errors.notFound('User', userId);
    const owner = await identityFindByProvider(db, input.provider, input.provider_user_id);
    if (owner && owner.user_id !== userId) {
      throw errors.conflict(`This ${input.provider} account is linked to another user`, { field: 'provider_user_id' });
    }
    const aad = `${userId}\n${input.provider}`;
    return identityUpsert(db, {
      id: newId('identity'),
      user_id: userId,
      provider: input.provider,
      provider_user_id: input.provider_user_id,
      email: input.email ?? null,
      access_token_enc: input.access_token ? this.secrets.seal(input.access_token, aad) : null,
      refresh_token_enc: input.refresh_token ? this.secrets.seal(input.refresh_token, aad) : null,
      token_expires_at: input.token_expires_at ? new Date(input.token_expires_at) : null,
      scopes: input.scopes ?? [],
      raw_profile: JSON.stringify(input.raw_profile ?? {}),
      metadata: JSON.stringify(input.metadata ?? {}),
    });
  }

  async list(db: Executor, principal: Principal, userId: string): Promise<IdentityRow[]> {
    assertSelfOrService(principal, userId);
    return identityList(db, userId);
  }

  async find(db: Executor, provider: string, providerUserId: string): Promise<IdentityRow> {
    const row = await identityFindByProvider(db, provider, providerUserId);
    if (!row) throw errors.notFound('Identity', `${provider}:${providerUserId}`);
    return row;
  }

  async unlink(db: Executor, principal: Principal, userId: string, provider: string): Promise<void> {
    assertSelfOrService(principal, userId);
    if (principal.kind !== 'service') throw errors.forbidden('Only the service can unlink a login');
    if (!(await identityDelete(db, userId, provider))) throw errors.notFound('Identity', provider);
  }

  /** The decrypted tokens, for server-side calls to the provider. */
  async tokens(db: Executor, userId: string, provider: string): Promise<{ accessToken: string | null; refreshToken: string | null }> {
    const row = await identityTokens(db, userId, provider);
    if (!row) throw errors.notFound('Identity', provider);
    const aad = `${userId}\n${provider}`;
    return {
      accessToken: row.access_token_enc ? this.secrets.open(row.access_token_enc, aad) : null,
      refreshToken: row.refresh_token_enc ? this.secrets.open(row.refresh_token_enc, aad) : null,
    };
  }
}
