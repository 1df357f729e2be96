import { type RunStatement, statement } from '../../db/statements.js';
import { errors } from '../../core/errors.js';
import type { UserPrincipal } from '../../core/principal.js';
import { sha256Hex } from '../../lib/hash.js';
import { apiKeyLiveText, type KeyTouched } from './api-keys.repository.js';
import { isScope } from './api-keys.scopes.js';
import type { KeyUses } from './api-keys.uses.js';

/** A key's gateway limits (api_keys, migration 0035); null is unlimited. Enforced by the gateway. */
export interface KeyLimits {
  models: readonly string[] | null;
  rpm: number | null;
  tpm: number | null;
  maxConcurrency: number | null;
  budget: number | null;
}

export function limitsOf(row: { models: string[] | null; rpm_limit: number | null; tpm_limit: number | string | null; max_concurrency: number | null; credit_budget: number | string | null }): KeyLimits {
  return {
    models: row.models,
    rpm: row.rpm_limit,
    tpm: row.tpm_limit === null ? null : Number(row.tpm_limit),
    maxConcurrency: row.max_concurrency,
    budget: row.credit_budget === null ? null : Number(row.credit_budget),
  };
}

/** A live API key: who calls with it (the principal), its workspace, and its gateway limits. */
export interface ResolvedKey {
  principal: UserPrincipal;
  workspaceId: string | null;
  limits: KeyLimits;
}

/**
 * The one lookup of a `tly_` key, shared by the HTTP Authenticator and the gateway's relay: one
 * query (the key, its user's state and its limits together), the use counted in memory
 * (api-keys.uses.ts). Refuses an unknown, revoked or expired key, or one whose user is disabled.
 */
export class KeyResolver {
  private readonly text: string;

  constructor(
    /** Runs the lookup: a named prepared statement on PostgreSQL's pool (src/db/statements.ts). */
    private readonly run: RunStatement,
    schema: string,
    /** Where each key's use is counted (written in batches); without it, uses are not counted. */
    private readonly uses: KeyUses | null = null,
  ) {
    this.text = apiKeyLiveText(schema);
  }

  async resolve(token: string): Promise<ResolvedKey> {
    const [key] = await this.run<KeyTouched>(statement('api_key_live', this.text, [sha256Hex(token)]));
    if (!key) throw errors.unauthenticated('API key is invalid, revoked or expired');
    this.uses?.record(key.id);
    return { principal: principalOf(key), workspaceId: key.workspace_id, limits: limitsOf(key) };
  }
}

function principalOf(key: KeyTouched): UserPrincipal {
  return {
    kind: 'user',
    userId: key.user_id,
    email: key.email,
    via: 'api_key',
    keyId: key.id,
    scopes: key.scopes.filter(isScope),
    sessionId: null,
  };
}
