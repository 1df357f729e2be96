import { type RunStatement, statement } from '../../db/statements.js';
import { errors } from '../../core/errors.js';
import type { UserPrincipal } from '../../core/principal.js';
import { sha256Hex } from '../../lib/hash.js';
import type { Invalidations } from '../../lib/invalidations.js';
import { SnapshotCache } from '../../lib/snapshot-cache.js';
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

/** How long a resolved key may be served from memory, and how many are kept. */
export interface KeyCacheSettings {
  ttlMs: number;
  maxEntries: number;
}

export const DEFAULT_KEY_CACHE: KeyCacheSettings = { ttlMs: 10_000, maxEntries: 50_000 };

/** A key that is not live: thrown out of the cache's load, so a miss is never kept. */
class NotLive extends Error {}

/**
 * The one lookup of a `tly_` key, shared by the HTTP Authenticator and the gateway's relay: one
 * query (the key, its user's state and its limits together), the use counted in memory
 * (api-keys.uses.ts). Refuses an unknown, revoked or expired key, or one whose user is disabled.
 *
 * A live key is then kept in process (a `SnapshotCache`, the same rules as POST /v1/check's:
 * docs/auth.md, "API key cache"), because every request with a key paid this round trip before
 * doing anything: every write route of any Tally process says "anything changed" once it settles
 * (revoking or editing a key, disabling a user are write routes), which empties it here at once and
 * in other processes through LISTEN/NOTIFY; while those notices may be missed it is not used; a
 * key changed by hand in SQL is seen within `ttlMs`. Expiry is checked on every use. Unknown keys
 * are never kept (a stranger spraying keys cannot fill it).
 */
export class KeyResolver {
  private readonly text: string;
  private readonly cache: SnapshotCache<KeyTouched> | null = null;
  private readonly now: () => number = () => Date.now();

  constructor(
    /** Runs the lookup: a named prepared statement on PostgreSQL's pool (src/db/statements.ts). */
    private readonly run: RunStatement,
    schema: string,
    /** Where each key's use is counted (written in batches); without it, uses are not counted. */
    private readonly uses: KeyUses | null = null,
    keep: { settings: KeyCacheSettings; invalidations: Invalidations; clock: () => Date } | null = null,
  ) {
    this.text = apiKeyLiveText(schema);
    if (!keep) return;
    const now = () => keep.clock().getTime();
    const cache = new SnapshotCache<KeyTouched>(keep.settings.ttlMs, keep.settings.maxEntries, now, () => keep.invalidations.trusted);
    keep.invalidations.onAny(() => cache.clear());
    this.cache = cache;
    this.now = now;
  }

  async resolve(token: string): Promise<ResolvedKey> {
    const key = await this.live(sha256Hex(token));
    if (!key) throw errors.unauthenticated('API key is invalid, revoked or expired');
    this.uses?.record(key.id);
    return { principal: principalOf(key), workspaceId: key.workspace_id, limits: limitsOf(key) };
  }

  /** The lookup itself: a named prepared statement (src/db/statements.ts). */
  private async find(hash: string): Promise<KeyTouched | undefined> {
    const [key] = await this.run<KeyTouched>(statement('api_key_live', this.text, [hash]));
    return key;
  }

  private async live(hash: string): Promise<KeyTouched | undefined> {
    if (!this.cache?.enabled) return this.find(hash);
    try {
      const key = await this.cache.get('keys', hash, async () => {
        const found = await this.find(hash);
        if (!found) throw new NotLive();
        return found;
      });
      // Kept while live; its expiry still applies to every use.
      return key.expires_at !== null && key.expires_at.getTime() <= this.now() ? undefined : key;
    } catch (err) {
      if (err instanceof NotLive) return undefined;
      throw err;
    }
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
