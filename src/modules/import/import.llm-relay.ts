import { newId } from '../../lib/ids.js';
import { isScope } from '../api-keys/api-keys.scopes.js';
import { credentialsAad, hintOf } from '../gateway/gateway.js';
import { type Anomaly, HISTORY_BATCH_SCALE, type Shape, type TableStep } from './import.js';
import { importedUpstreamsInactive, importMapInsert } from './import.repository.js';
import { date, freshRows, int, keepHistory, ownerOf, ownersOf, str, Tally } from './import.rows.js';
import type { SourceDb } from './import.source.js';
import { usersWithEmptyAccounts } from './import.users.js';

/**
 * Seed 004, `llm-relay` (docs/import.md): a Prisma relay on PostgreSQL — `users`, `api_keys`
 * (hashed), `upstream_accounts` (provider credentials) and `usage_records`. It has no credit
 * balance: users arrive with an empty account; keys keep their hash when it is Tally's scheme
 * (SHA-256, hex); upstream credentials are sealed on the way in, as the gateway seals them; the
 * usage records are kept as read-only history.
 */
const SHAPE = 'llm-relay';
export const SHA256_HEX = /^[0-9a-f]{64}$/;

const users = usersWithEmptyAccounts(SHAPE, 'id::text as id, email, username, password_hash, role, is_active, created_at', (r, now) => {
  const hash = str(r.password_hash);
  // Tally verifies argon2 hashes; any other scheme cannot be checked, so the user sets a new password.
  const kept = hash?.startsWith('$argon2') ? hash : null;
  return {
    id: String(r.id),
    email: str(r.email),
    username: str(r.username)?.slice(0, 64) ?? null,
    password_hash: kept,
    role: str(r.role) === 'admin' ? 'admin' : 'user',
    is_active: r.is_active !== false,
    metadata: JSON.stringify({ imported_from: SHAPE, ...(hash && !kept ? { password_reset_required: true } : {}) }),
    created_at: date(r.created_at) ?? now,
  };
});

/** 004 (and 001) permissions → Tally scopes: none (the relay's default) or `*` is full access; others must be Tally's own. */
export function scopesOf(permissions: unknown): string[] | null {
  const list = Array.isArray(permissions) ? permissions.map(String) : [];
  if (list.length === 0 || list.includes('*')) return ['*'];
  return list.every(isScope) ? list : null;
}

const apiKeys: TableStep = {
  table: 'api_keys',
  key: 'id',
  columns: (t) => `id::text as id, user_id::text as user_id, name, key_hash, permissions, is_active, expires_at, last_used_at, request_count::text as request_count, created_at, updated_at,
    exists (select 1 from ${t('users')} u where u.id = ${t('api_keys')}.user_id) as owner_exists`,
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'api_keys', rows, 'id', tally);
    const owners = await ownersOf(ctx, 'users', fresh, 'user_id');
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const owner = ownerOf(owners, r, 'user_id', tally);
      if (!owner) continue;
      const hash = str(r.key_hash)?.toLowerCase() ?? '';
      if (!SHA256_HEX.test(hash)) {
        // The scan reported it (key_rotation): the key cannot be looked up by Tally; its owner mints a new one.
        tally.skip('rotation');
        continue;
      }
      const scopes = scopesOf(r.permissions);
      if (scopes === null) {
        ctx.anomaly({ kind: 'key_rotation', table: 'api_keys', source_id: sid, rule: 'Permissions Tally cannot express: the key is imported revoked (never wider than it was); its owner mints a new one', details: { permissions: r.permissions } });
      }
      const revoked = r.is_active === false || scopes === null;
      const row = await ctx.trx
        .insertInto('api_keys')
        .values({
          id: newId('apiKey'),
          user_id: owner.target_id,
          name: (str(r.name) || 'imported').slice(0, 255),
          // The visible part of the key was never stored by the relay.
          prefix: 'imported',
          key_hash: hash,
          scopes: scopes ?? [],
          expires_at: date(r.expires_at),
          last_used_at: date(r.last_used_at),
          request_count: int(r.request_count) ?? 0,
          revoked_at: revoked ? (date(r.updated_at) ?? ctx.now) : null,
          created_at: date(r.created_at) ?? ctx.now,
        })
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) {
        tally.skip('conflict');
        ctx.anomaly({ kind: 'target_conflict', table: 'api_keys', source_id: sid, rule: 'Tally already has a key with this hash: not imported twice', details: {} });
        continue;
      }
      maps.push({ table: 'api_keys', sourceId: sid, targetTable: 'api_keys', targetId: row.id, facts: { user_id: owner.target_id } });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

const UPSTREAM_TYPES: Record<string, { type: 'openai' | 'anthropic'; baseUrl: string }> = {
  openai: { type: 'openai', baseUrl: 'https://api.openai.com' },
  anthropic: { type: 'anthropic', baseUrl: 'https://api.anthropic.com' },
  claude: { type: 'anthropic', baseUrl: 'https://api.anthropic.com' },
};

/** The API key inside a relay's credentials JSON (`api_key`, `apiKey`, `key`, or the value itself). */
function keyIn(credentials: unknown): string | null {
  if (typeof credentials === 'string') return credentials;
  if (credentials && typeof credentials === 'object') {
    const c = credentials as Record<string, unknown>;
    for (const k of ['api_key', 'apiKey', 'key']) if (typeof c[k] === 'string' && c[k]) return c[k] as string;
  }
  return null;
}

const upstreams: TableStep = {
  table: 'upstream_accounts',
  key: 'id',
  columns: () => 'id::text as id, type, email, credentials, is_active, priority, weight, success_count::text as success_count, error_count::text as error_count, created_at',
  async write(ctx, rows) {
    const tally = new Tally();
    const fresh = await freshRows(ctx, 'upstream_accounts', rows, 'id', tally);
    const maps = [];
    for (const r of fresh) {
      const sid = String(r.id);
      const kind = UPSTREAM_TYPES[String(r.type ?? '').toLowerCase()];
      if (!kind) {
        tally.skip('unknown_value');
        ctx.anomaly({ kind: 'unknown_value', table: 'upstream_accounts', source_id: sid, rule: "An upstream type Tally's gateway does not speak (openai, anthropic) is not imported", details: { type: r.type } });
        continue;
      }
      const id = newId('upstream');
      const key = keyIn(r.credentials);
      const c = (r.credentials && typeof r.credentials === 'object' ? r.credentials : {}) as Record<string, unknown>;
      const baseUrl = typeof c.base_url === 'string' && /^https?:\/\//.test(c.base_url) ? c.base_url.replace(/\/+$/, '') : kind.baseUrl;
      if (!key) {
        ctx.anomaly({ kind: 'key_rotation', table: 'upstream_accounts', source_id: sid, rule: 'Credentials that hold no API key (OAuth tokens, cookies) are sealed as they are and the upstream imported inactive: give it a key (PATCH) to serve', details: { type: r.type } });
      }
      const clamp = (v: unknown, lo: number, hi: number, d: number) => Math.min(hi, Math.max(lo, int(v) ?? d));
      await ctx.trx
        .insertInto('gateway_upstreams')
        .values({
          id,
          type: kind.type,
          name: (str(r.email) ?? '').slice(0, 255),
          base_url: baseUrl,
          // Sealed exactly as the gateway seals a credential it is given (bound to the row id).
          credentials_enc: ctx.seal(key ?? JSON.stringify(r.credentials ?? null), credentialsAad(id)),
          key_id: ctx.sealKeyId,
          credentials_hint: key ? hintOf(key) : '',
          priority: clamp(r.priority, 0, 1000, 1),
          weight: clamp(r.weight, 1, 1000, 100),
          // Never active on arrival: the source chose the base URL, the models (every one) and the
          // priority, so an active import would let a hostile source receive all gateway traffic —
          // users' prompts included. The report lists each for an operator to review (PATCH to activate).
          is_active: false,
          success_count: int(r.success_count) ?? 0,
          error_count: int(r.error_count) ?? 0,
          created_at: date(r.created_at) ?? ctx.now,
        })
        .execute();
      maps.push({ table: 'upstream_accounts', sourceId: sid, targetTable: 'gateway_upstreams', targetId: id });
      tally.imported++;
    }
    await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
    return tally.outcome;
  },
};

const usage: TableStep = {
  table: 'usage_records',
  key: 'id',
  batchScale: HISTORY_BATCH_SCALE,
  columns: (t) => `id::text as id, api_key_id::text as api_key_id, upstream_account_id::text as upstream_account_id, request_id, method, endpoint,
    status_code, response_time, tokens_used::text as tokens_used, cost::text as cost, error_message, created_at,
    exists (select 1 from ${t('api_keys')} k where k.id = ${t('usage_records')}.api_key_id) as owner_exists`,
  async write(ctx, rows) {
    const tally = new Tally();
    const keys = await ownersOf(ctx, 'api_keys', rows, 'api_key_id');
    const upstreamIds = await ownersOf(ctx, 'upstream_accounts', rows, 'upstream_account_id');
    const values = [];
    for (const r of rows) {
      const key = ownerOf(keys, r, 'api_key_id', tally);
      if (!key) continue;
      // Every imported key's mapping names its user (the api_keys step records it).
      const userId = String(key.facts.user_id);
      values.push({
        id: newId('importedHistory'),
        source: ctx.source,
        source_table: 'usage_records',
        source_id: String(r.id),
        account_id: `acc_u_${userId}`,
        user_id: userId,
        opening_entry_id: null,
        type: 'usage',
        // The relay priced requests in money (Decimal(10,4)), never in credits: no credits moved.
        amount: 0,
        reason: `${str(r.method) ?? ''} ${str(r.endpoint) ?? ''}`.trim().slice(0, 2000) || null,
        metadata: {
          request_id: str(r.request_id),
          api_key_id: key.target_id,
          upstream_id: upstreamIds.get(String(r.upstream_account_id))?.target_id ?? null,
          status_code: r.status_code ?? null,
          response_time_ms: r.response_time ?? null,
          tokens_used: int(r.tokens_used),
          cost: str(r.cost),
          error_message: str(r.error_message),
        },
        occurred_at: date(r.created_at),
      });
    }
    await keepHistory(ctx, values, tally);
    return tally.outcome;
  },
};

async function scan(src: SourceDb, limit = 1000): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const out: Anomaly[] = [];
  for (const r of await src.rows<{ id: string }>(`select id::text as id from ${t('users')} where password_hash is not null and password_hash not like '$argon2%' order by id limit $1`, [limit])) {
    out.push({ kind: 'password_reset', table: 'users', source_id: r.id, rule: 'A password hash Tally cannot verify (not argon2) is not kept: the user sets a new password (metadata.password_reset_required)', details: {} });
  }
  for (const r of await src.rows<{ id: string }>(`select id::text as id from ${t('api_keys')} where key_hash !~ '^[0-9a-f]{64}$' order by id limit $1`, [limit])) {
    out.push({ kind: 'key_rotation', table: 'api_keys', source_id: r.id, rule: 'A key hash that is not SHA-256 (hex) cannot be looked up by Tally: the key is not imported; its owner mints a new one', details: {} });
  }
  const orphans: [string, string, string][] = [['api_keys', 'user_id', 'users'], ['usage_records', 'api_key_id', 'api_keys']];
  for (const [table, column, parent] of orphans) {
    for (const r of await src.rows<{ id: string; parent_id: string | null }>(
      `select c.id::text as id, c.${column}::text as parent_id from ${t(table)} c left join ${t(parent)} p on p.id = c.${column} where p.id is null order by c.id limit $1`,
      [limit],
    )) {
      out.push({ kind: 'orphan', table, source_id: r.id, rule: `A row whose ${parent.replace(/s$/, '')} does not exist belongs to nobody: it is not imported`, details: { [column]: r.parent_id } });
    }
  }
  return out;
}

export const llmRelay: Shape = {
  name: SHAPE,
  signature: ['users', 'api_keys', 'upstream_accounts', 'usage_records'],
  steps: [users, apiKeys, upstreams, usage],
  notImported: [],
  scan: (src) => scan(src),
  async review(trx, source) {
    const rows = await importedUpstreamsInactive(trx, source);
    return rows.map((u) => ({
      table: 'upstream_accounts',
      source_id: u.source_id,
      target_table: 'gateway_upstreams',
      target_id: u.id,
      why: "imported inactive: the source chose where this upstream sends users' prompts; check the base URL and credentials, then PATCH /v1/gateway/upstreams/:id is_active true",
      details: { type: u.type, name: u.name, base_url: u.base_url, models: u.models, priority: u.priority, weight: u.weight },
    }));
  },
  async sourceCredits(src) {
    const [r] = await src.rows<{ accounts: string }>(`select count(*)::text as accounts from ${src.t('users')}`);
    return { total: 0, accounts: Number(r?.accounts ?? 0) };
  },
};


