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
import { memberRole } from '../workspaces/workspaces.repository.js';
import { type ApiKeyLimits, type ApiKeyRow, apiKeyFindById, apiKeyInsert, apiKeyListByUser, apiKeyRevoke, apiKeyUpdate } from './api-keys.repository.js';
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
    input: { name: string; scopes?: Scope[]; expires_at?: string | null; workspace_id?: string | null } & Partial<ApiKeyLimits>,
  ): Promise<{ row: ApiKeyRow; key: string }> {
    assertSelfOrService(principal, userId);
    let expiresAt = input.expires_at ? new Date(input.expires_at) : null;
    if (expiresAt && expiresAt.getTime() <= this.now().getTime()) {
      throw errors.invalidRequest('expires_at must be in the future', { field: 'expires_at' });
    }
    const scopes: Scope[] = input.scopes ?? ['*'];
    // A key can only mint keys no stronger than itself: no scope it lacks, no longer life, and a
    // key with gateway limits none at all (a fresh key would shed them).
    if (principal.kind === 'user' && principal.keyId) {
      if (!principal.scopes.includes('*')) {
        const beyond = scopes.filter((s) => !principal.scopes.includes(s));
        if (beyond.length > 0) throw errors.forbidden(`This API key cannot grant scopes it lacks: ${beyond.join(', ')}`);
      }
      const parent = await apiKeyFindById(db, principal.keyId);
      if (!parent) throw errors.unauthenticated('API key is invalid, revoked or expired');
      if (hasLimits(parent)) throw errors.forbidden('An API key with gateway limits or a credit budget cannot create API keys');
      if (parent.expires_at) {
        if (input.expires_at === undefined) expiresAt = parent.expires_at;
        else if (expiresAt === null || expiresAt.getTime() > parent.expires_at.getTime()) {
          throw errors.forbidden(`This API key expires at ${parent.expires_at.toISOString()}; a key it creates must expire no later`);
        }
      }
    }
    if (!(await userFindById(db, userId))) throw errors.notFound('User', userId);
    const workspaceId = input.workspace_id ?? null;
    // A workspace key spends the pool as its user (the member's role and cap apply at each spend).
    if (workspaceId !== null && !(await memberRole(db, workspaceId, userId))) throw errors.notFound('Workspace', workspaceId);
    const key = `${API_KEY_PREFIX}${randomToken(KEY_BODY_LENGTH)}`;
    const row = await apiKeyInsert(db, {
      id: newId('apiKey'),
      user_id: userId,
      workspace_id: workspaceId,
      name: input.name,
      prefix: key.slice(0, VISIBLE_PREFIX_LENGTH),
      key_hash: sha256Hex(key),
      scopes,
      expires_at: expiresAt,
      models: input.models ?? null,
      rpm_limit: input.rpm_limit ?? null,
      tpm_limit: input.tpm_limit ?? null,
      max_concurrency: input.max_concurrency ?? null,
      credit_budget: input.credit_budget ?? null,
    });
    return { row, key };
  }

  /** The service changes a key's name or limits (route: service only); a revoked key stays revoked. */
  async update(db: Executor, id: string, set: Partial<ApiKeyLimits> & { name?: string }): Promise<ApiKeyRow> {
    const row = await apiKeyUpdate(db, id, set);
    if (!row) throw errors.notFound('API key', id);
    return row;
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

/** Does a key carry any gateway limit or budget (and so may not mint keys that would shed them)? */
function hasLimits(k: ApiKeyLimits): boolean {
  return k.models !== null || k.rpm_limit !== null || k.tpm_limit !== null || k.max_concurrency !== null || k.credit_budget !== null;
}
