import type { Executor } from '../../db/database.js';
import { API_KEY_PREFIX } from './api-keys.scopes.js';
import { assertSelfOrService } from '../../core/principal.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { sha256Hex } from '../../lib/hash.js';
import { newId } from '../../lib/ids.js';
import { randomToken } from '../../lib/random.js';
import { userFindById } from '../users/users.repository.js';
import { type ApiKeyRow, apiKeyFindById, apiKeyInsert, apiKeyListByUser, apiKeyRevoke } from './api-keys.repository.js';
import type { Scope } from './api-keys.scopes.js';

/** `tly_` + 48 base62 characters (~285 bits); the first 12 characters are the visible prefix. */
const KEY_BODY_LENGTH = 48;
const VISIBLE_PREFIX_LENGTH = 12;

export class ApiKeysService {
  constructor(private readonly now: () => Date) {}

  async create(
    db: Executor,
    principal: Principal,
    userId: string,
    input: { name: string; scopes?: Scope[]; expires_at?: string | null },
  ): Promise<{ row: ApiKeyRow; key: string }> {
    assertSelfOrService(principal, userId);
    const expiresAt = input.expires_at ? new Date(input.expires_at) : null;
    if (expiresAt && expiresAt.getTime() <= this.now().getTime()) {
      throw errors.invalidRequest('expires_at must be in the future', { field: 'expires_at' });
    }
    const scopes: Scope[] = input.scopes ?? ['*'];
    // A key can only mint keys no stronger than itself.
    if (principal.kind === 'user' && !principal.scopes.includes('*')) {
      const beyond = scopes.filter((s) => !principal.scopes.includes(s));
      if (beyond.length > 0) throw errors.forbidden(`This API key cannot grant scopes it lacks: ${beyond.join(', ')}`);
    }
    if (!(await userFindById(db, userId))) throw errors.notFound('User', userId);
    const key = `${API_KEY_PREFIX}${randomToken(KEY_BODY_LENGTH)}`;
    const row = await apiKeyInsert(db, {
      id: newId('apiKey'),
      user_id: userId,
      name: input.name,
      prefix: key.slice(0, VISIBLE_PREFIX_LENGTH),
      key_hash: sha256Hex(key),
      scopes,
      expires_at: expiresAt,
    });
    return { row, key };
  }

  async list(db: Executor, principal: Principal, userId: string, page: PageRequest) {
    assertSelfOrService(principal, userId);
    return apiKeyListByUser(db, userId, page);
  }

  /** Revoking is idempotent: revoking a revoked key returns it unchanged. */
  async revoke(db: Executor, principal: Principal, id: string): Promise<ApiKeyRow> {
    const key = await apiKeyFindById(db, id);
    if (!key) throw errors.notFound('API key', id);
    assertSelfOrService(principal, key.user_id);
    const revoked = await apiKeyRevoke(db, id);
    if (!revoked) throw errors.notFound('API key', id);
    return revoked;
  }
}
