import { newId } from '../../lib/ids.js';
import type { Anomaly } from './import.js';
import { date, json, str } from './import.rows.js';
import type { SourceDb } from './import.source.js';
import { fits, mappedStep, unknownValue } from './import.steps.js';

/**
 * Seed 000's `user_providers` (docs/import.md, app-builder): a user's linked sign-in accounts, into
 * `user_identities`. 000 kept a **hash** of the access token and a refresh token encrypted with its
 * own key: Tally can recover neither, so neither is written (a token Tally stores is one it sealed
 * itself); the link and profile arrive, and the user links the provider again to give Tally tokens
 * (`key_rotation`, found by the scan). Portable SQL: the same select runs on SQLite and PostgreSQL.
 */
export const userProviders = mappedStep({
  table: 'user_providers',
  target: 'user_identities',
  columns: (t) =>
    `id, user_id, provider, provider_user_id, access_token_hash, refresh_token_enc, raw_profile, linked_at, exists (select 1 from ${t('users')} u where u.id = ${t('user_providers')}.user_id) as owner_exists`,
  owners: [{ column: 'user_id', table: 'users', required: true }],
  conflictRule: 'Tally already links this provider account, or this provider for the user: not imported',
  map(r, owners, ctx) {
    const profile = json(r.raw_profile) ?? {};
    if (!fits(r.provider, 32, 1) || !fits(r.provider_user_id, 255, 1) || typeof profile !== 'object' || Array.isArray(profile)) {
      return unknownValue('A linked account whose provider, account id or profile Tally cannot take as it is is not imported', { provider: r.provider });
    }
    const dropped = [...(str(r.access_token_hash) ? ['access_token'] : []), ...(str(r.refresh_token_enc) ? ['refresh_token'] : [])];
    const id = newId('identity');
    return {
      targetId: id,
      values: {
        id,
        user_id: owners.user_id?.target_id,
        provider: String(r.provider),
        provider_user_id: String(r.provider_user_id),
        access_token_enc: null,
        refresh_token_enc: null,
        raw_profile: JSON.stringify(profile),
        metadata: JSON.stringify({ imported_from: 'app-builder', ...(dropped.length > 0 ? { tokens_not_imported: dropped } : {}) }),
        linked_at: date(r.linked_at) ?? ctx.now,
        created_at: date(r.linked_at) ?? ctx.now,
      },
    };
  },
});

export async function scanIdentities(src: SourceDb, limit: number): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const rows = await src.rows<Record<string, unknown>>(
    `select c.id, c.provider from ${t('user_providers')} c join ${t('users')} u on u.id = c.user_id
      where c.access_token_hash is not null or c.refresh_token_enc is not null order by c.id limit $1`,
    [limit],
  );
  return rows.map((r) => ({
    kind: 'key_rotation',
    table: 'user_providers',
    source_id: String(r.id),
    rule: "000 kept a hash of the access token and a refresh token under its own key: Tally can use neither, so the link is imported without tokens; the user links the provider again",
    details: { provider: str(r.provider) },
  }));
}
