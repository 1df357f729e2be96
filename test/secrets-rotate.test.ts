import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretBox } from '../src/lib/secret-box.js';
import { envVarAad, serviceTokenAad } from '../src/modules/secrets/secrets.js';
import { rotateSecrets } from '../src/modules/secrets/secrets.rotate.js';
import { client } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

describe(`tally secrets rotate re-seals every secret under the current key (${TARGET})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('env vars, service tokens and linked-login tokens move to the new key; an unknown key aborts with nothing changed', async () => {
    const u = await signUp(app);
    const project = (await u.api.post('/v1/projects', { name: 'p' })).body.id;
    const env = (await u.api.post(`/v1/projects/${project}/env-vars`, { key: 'A', value: 'value-a' })).body.id;
    const tok = (await u.api.post('/v1/service-tokens', { provider: 'vercel', name: 'n', token: 'token-b' })).body.id;
    const ups = (await client(app.server, app.serviceKey).post('/v1/gateway/upstreams', { type: 'openai', base_url: 'https://api.example.com/v1', credentials: 'sk-upstream-credential' })).body.id;
    const repo = (await u.api.post(`/v1/projects/${project}/git-repositories`, { provider: 'github', repo_url: 'https://github.com/acme/app', credentials: 'ghp_repository-credential' })).body.id;
    expect((await client(app.server, app.serviceKey).post(`/v1/users/${u.user.id}/identities`, { provider: 'github', provider_user_id: 'g1', access_token: 'gho_x' })).status).toBe(200);

    const oldKey = app.config.encryptionKey;
    const stranger = new SecretBox(randomBytes(32));
    await expect(rotateSecrets(app.database.db, stranger)).rejects.toThrow(/cannot open/);
    const unchanged = await app.database.db.selectFrom('env_vars').select('key_id').where('id', '=', env).executeTakeFirstOrThrow();
    expect(unchanged.key_id).toBe(app.services.secrets.keyId);

    const next = new SecretBox(randomBytes(32), [oldKey]);
    const report = await rotateSecrets(app.database.db, next);
    expect(report).toMatchObject({ env_vars: 1, service_tokens: 1, user_identities: 1, gateway_upstreams: 1, git_repositories: 1 });
    const e = await app.database.db.selectFrom('env_vars').select(['key_id', 'value_enc']).where('id', '=', env).executeTakeFirstOrThrow();
    expect(e.key_id).toBe(next.keyId);
    const onlyNew = new SecretBox((next as unknown as { key: Buffer }).key);
    expect(onlyNew.open(e.value_enc, envVarAad(env))).toBe('value-a');
    const t = await app.database.db.selectFrom('service_tokens').select('token_enc').where('id', '=', tok).executeTakeFirstOrThrow();
    expect(onlyNew.open(t.token_enc, serviceTokenAad(tok))).toBe('token-b');
    const idn = await app.database.db.selectFrom('user_identities').select('access_token_enc').where('user_id', '=', u.user.id).executeTakeFirstOrThrow();
    expect(onlyNew.open(idn.access_token_enc as string, `${u.user.id}\ngithub`)).toBe('gho_x');
    const g = await app.database.db.selectFrom('gateway_upstreams').select('credentials_enc').where('id', '=', ups).executeTakeFirstOrThrow();
    expect(onlyNew.open(g.credentials_enc, `gateway_upstreams:${ups}`)).toBe('sk-upstream-credential');
    const r = await app.database.db.selectFrom('git_repositories').select('credentials_enc').where('id', '=', repo).executeTakeFirstOrThrow();
    expect(onlyNew.open(r.credentials_enc as string, `git_repository:${repo}`)).toBe('ghp_repository-credential');
    // Running it again has nothing left to do.
    expect(await rotateSecrets(app.database.db, next)).toEqual({ env_vars: 0, service_tokens: 0, user_identities: 0, idempotency_keys: 0, mail_outbox: 0, webhook_endpoints: 0, gateway_upstreams: 0, git_repositories: 0 });
  });
});
