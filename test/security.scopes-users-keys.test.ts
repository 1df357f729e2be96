/**
 * API-key scopes (users:*, keys:*): a key reaches exactly the routes its scopes allow. The other
 * scopes are in test/security.scopes-*.test.ts.
 *
 * Part of the shared security suite: its set-up and the classification of every route are in
 * test/support/security-suite.ts.
 */
import { describe, expect, it } from 'vitest';
import { SCOPES } from '../src/modules/api-keys/api-keys.scopes.js';
import { client } from './support/client.js';
import { errorProblems } from './support/db-fingerprint.js';
import { makeApiKey } from './support/fixtures.js';
import { app, keyReachesExactlyItsScopes, NARROW_SCOPES, RELAY_ROUTES, ROUTES, S, useSecuritySuite } from './support/security-suite.js';

useSecuritySuite();

describe('API-key scopes: a key reaches exactly the routes its scopes allow', () => {
  it('every scope a route requires is a known scope, and every narrow scope guards at least one route', () => {
    // The gateway's wire-format paths are not in /openapi.json: RELAY_ROUTES classifies them.
    const used = new Set([...Object.values(ROUTES).flatMap((r) => (r.scope ? [r.scope] : [])), ...RELAY_ROUTES.map((r) => r.scope)]);
    for (const s of used) expect(SCOPES).toContain(s);
    expect(NARROW_SCOPES.filter((s) => !used.has(s))).toEqual([]);
  });

  keyReachesExactlyItsScopes('users-keys');

  it('a users:read key can read its user and /v1/me but not change the user', async () => {
    const key = await makeApiKey(app, S.user.id, { name: 'reader', scopes: ['users:read'] });
    const k = client(app.server, key.key);
    expect((await k.get('/v1/me')).body.id).toBe(S.user.id);
    expect((await k.get(`/v1/users/${S.user.id}`)).status).toBe(200);
    const res = await k.patch(`/v1/users/${S.user.id}`, { name: 'nope' });
    expect(errorProblems(res, 403, 'forbidden', 'users:read PATCH')).toEqual([]);
  });
});
