/**
 * API-key scopes (jobs:*, projects:*, secrets:*, and any scope no other file names): a key reaches
 * exactly the routes its scopes allow. The other scopes are in test/security.scopes-*.test.ts.
 *
 * Part of the shared security suite: its set-up and the classification of every route are in
 * test/support/security-suite.ts.
 */
import { describe, expect, it } from 'vitest';
import { dbFingerprint, errorProblems, fingerprintDiff } from './support/db-fingerprint.js';
import { makeApiKey } from './support/fixtures.js';
import { app, bearer, ops, requestFor, ROUTES, S, scopesOf, send, useSecuritySuite } from './support/security-suite.js';
import { must } from '../src/lib/must.js';

useSecuritySuite();

describe('API-key scopes: a key reaches exactly the routes its scopes allow', () => {
  const narrowScopes = scopesOf('jobs-projects-secrets');

  it.each(narrowScopes)('a key with only ["%s"] is accepted where that scope (or none) is needed and gets 403 forbidden elsewhere', async (scope) => {
    const key = await makeApiKey(app, S.user.id, { name: `only ${scope}`, scopes: [scope] });
    const targets = ops.filter((op) => ['user', 'any'].includes(ROUTES[op.key]?.auth ?? ''));
    expect(targets.length).toBeGreaterThan(5);
    const problems: string[] = [];
    let allowed = 0;
    for (const op of targets) {
      const spec = must(ROUTES[op.key], 'ROUTES[op.key]');
      const req = await requestFor(op, S);
      if (!spec.scope || spec.scope === scope) {
        allowed++;
        const expected = spec.keyStatus ?? req.status;
        const res = await send(req, bearer(key.key));
        if (res.status !== expected) problems.push(`${op.key} with [${scope}]: expected ${expected}, got ${res.status} ${JSON.stringify(res.body)}`);
      } else {
        const before = await dbFingerprint(app);
        const res = await send(req, bearer(key.key));
        problems.push(...errorProblems(res, 403, 'forbidden', `${op.key} with [${scope}]`));
        const message = (res.body as { error?: { message?: string } } | null)?.error?.message ?? '';
        if (res.status === 403 && !message.includes(spec.scope)) problems.push(`${op.key} with [${scope}]: 403 message does not name the missing scope ${spec.scope}: ${message}`);
        problems.push(...fingerprintDiff(before, await dbFingerprint(app), `${op.key} with [${scope}]`));
      }
    }
    expect(allowed).toBeGreaterThan(0); // GET /v1/me needs no scope
    expect(problems).toEqual([]);
  });
});
