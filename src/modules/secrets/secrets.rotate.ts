import type { Db } from '../../db/database.js';
import { SecretBox } from '../../lib/secret-box.js';
import { envVarAad, serviceTokenAad } from './secrets.js';
import { mailAad } from '../mail/mail.js';
import { mailSealedNotUnder } from '../mail/mail.repository.js';
import { endpointAad } from '../webhooks-out/webhooks-out.js';
import { endpointsSealedNotUnder } from '../webhooks-out/webhooks-out.repository.js';
import { credentialsAad } from '../gateway/gateway.js';
import { gitCredentialsAad } from '../ide/ide.git-repositories.js';
import { gitCredentialsSealedNotUnder } from '../ide/ide.repository.js';

export interface RotateReport {
  env_vars: number;
  service_tokens: number;
  user_identities: number;
  idempotency_keys: number;
  mail_outbox: number;
  webhook_endpoints: number;
  gateway_upstreams: number;
  git_repositories: number;
}

/**
 * `tally secrets rotate`: re-seals every sealed value under the current key (env vars, service
 * tokens, linked-login tokens, sealed idempotent answers, mail bodies, gateway upstream credentials), each row with the associated data it was
 * sealed with. One transaction: all of it moves to the new key or none does. Throws (and changes
 * nothing) when a value was sealed with a key that is neither current nor in TALLY_ENCRYPTION_KEYS_OLD.
 */
export async function rotateSecrets(db: Db, box: SecretBox): Promise<RotateReport> {
  return db.transaction().execute(async (trx) => {
    const report: RotateReport = { env_vars: 0, service_tokens: 0, user_identities: 0, idempotency_keys: 0, mail_outbox: 0, webhook_endpoints: 0, gateway_upstreams: 0, git_repositories: 0 };
    for (const row of await trx.selectFrom('env_vars').select(['id', 'value_enc']).where('key_id', '<>', box.keyId).execute()) {
      const sealed = box.reseal(row.value_enc, envVarAad(row.id));
      if (sealed) await trx.updateTable('env_vars').set({ value_enc: sealed, key_id: box.keyId }).where('id', '=', row.id).execute();
      report.env_vars++;
    }
    for (const row of await trx.selectFrom('service_tokens').select(['id', 'token_enc']).where('key_id', '<>', box.keyId).execute()) {
      const sealed = box.reseal(row.token_enc, serviceTokenAad(row.id));
      if (sealed) await trx.updateTable('service_tokens').set({ token_enc: sealed, key_id: box.keyId }).where('id', '=', row.id).execute();
      report.service_tokens++;
    }
    const current = `v1.${box.keyId}.%`;
    const identities = await trx
      .selectFrom('user_identities')
      .select(['id', 'user_id', 'provider', 'access_token_enc', 'refresh_token_enc'])
      .where((eb) => eb.or([eb('access_token_enc', 'not like', current), eb('refresh_token_enc', 'not like', current)]))
      .execute();
    for (const row of identities) {
      const aad = `${row.user_id}\n${row.provider}`; // as IdentitiesService seals them
      const access = row.access_token_enc ? box.reseal(row.access_token_enc, aad) : null;
      const refresh = row.refresh_token_enc ? box.reseal(row.refresh_token_enc, aad) : null;
      if (!access && !refresh) continue;
      await trx
        .updateTable('user_identities')
        .set({ ...(access ? { access_token_enc: access } : {}), ...(refresh ? { refresh_token_enc: refresh } : {}) })
        .where('id', '=', row.id)
        .execute();
      report.user_identities++;
    }
    // Sealed answers (a new API key's) are stored as {"sealed":"v1.<key id>.…"}, bound to (principal, key).
    const answers = await trx
      .selectFrom('idempotency_keys')
      .select(['principal', 'key', 'response_body'])
      .where('response_body', 'like', '{"sealed":"v1.%')
      .where('response_body', 'not like', `{"sealed":"${current}`)
      .execute();
    for (const row of answers) {
      const sealed = (JSON.parse(row.response_body as string) as { sealed: string }).sealed;
      const next = box.reseal(sealed, `${row.principal}\n${row.key}`);
      if (!next) continue;
      await trx
        .updateTable('idempotency_keys')
        .set({ response_body: JSON.stringify({ sealed: next }) })
        .where('principal', '=', row.principal)
        .where('key', '=', row.key)
        .execute();
      report.idempotency_keys++;
    }
    // Mail bodies not yet handed to SMTP (or kept because they went to the log).
    for (const row of await mailSealedNotUnder(trx, box.keyId)) {
      const sealed = row.body_enc ? box.reseal(row.body_enc, mailAad(row.id)) : null;
      if (sealed) await trx.updateTable('mail_outbox').set({ body_enc: sealed, key_id: box.keyId }).where('id', '=', row.id).execute();
      report.mail_outbox++;
    }
    // Outgoing webhooks' signing secrets (and a rotation's previous one).
    for (const row of await endpointsSealedNotUnder(trx, box.keyId)) {
      const current = box.reseal(row.secret_enc, endpointAad(row.id, 'current'));
      if (!current) continue;
      const previous = row.previous_secret_enc ? box.reseal(row.previous_secret_enc, endpointAad(row.id, 'previous')) : null;
      await trx.updateTable('webhook_endpoints').set({ secret_enc: current, previous_secret_enc: previous, key_id: box.keyId, ...(previous ? {} : { previous_secret_expires_at: null }) }).where('id', '=', row.id).execute();
      report.webhook_endpoints++;
    }
    // The gateway's upstream credentials (docs/gateway.md), bound to their row.
    for (const row of await trx.selectFrom('gateway_upstreams').select(['id', 'credentials_enc']).where('key_id', '<>', box.keyId).execute()) {
      const sealed = box.reseal(row.credentials_enc, credentialsAad(row.id));
      if (sealed) await trx.updateTable('gateway_upstreams').set({ credentials_enc: sealed, key_id: box.keyId }).where('id', '=', row.id).execute();
      report.gateway_upstreams++;
    }
    // Project git repositories' credentials (docs/ide.md), bound to their row.
    for (const row of await gitCredentialsSealedNotUnder(trx, box.keyId)) {
      const sealed = row.credentials_enc ? box.reseal(row.credentials_enc, gitCredentialsAad(row.id)) : null;
      if (sealed) await trx.updateTable('git_repositories').set({ credentials_enc: sealed, key_id: box.keyId }).where('id', '=', row.id).execute();
      report.git_repositories++;
    }
    return report;
  });
}

export { SecretBox };
