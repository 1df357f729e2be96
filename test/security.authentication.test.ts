/**
 * Authentication: every non-public route refuses missing or invalid credentials with 401, before
 * the body is read, and writes nothing.
 *
 * Part of the shared security suite: its set-up and the classification of every route are in
 * test/support/security-suite.ts.
 */
import { describe, expect, it } from 'vitest';
import { dbFingerprint, errorProblems, fingerprintDiff, rawRequest } from './support/db-fingerprint.js';
import { app, badCredentials, CREDENTIAL_CASES, fillPath, protectedOps, refusedRequestFor, send, useSecuritySuite } from './support/security-suite.js';
import { must } from '../src/lib/must.js';

useSecuritySuite();

describe('authentication: every non-public route refuses missing or invalid credentials with 401', () => {
  it.each(CREDENTIAL_CASES)('every non-public route answers 401 unauthenticated to %s, and nothing changes', async (name) => {
    const entry = badCredentials.find(([n]) => n === name);
    expect(entry, `credential fixture "${name}"`).toBeDefined();
    const header = must(entry, 'entry')[1];
    const targets = protectedOps();
    expect(targets.length).toBeGreaterThan(0);
    const requests = [];
    for (const op of targets) requests.push({ op, req: await refusedRequestFor(op) });
    const before = await dbFingerprint(app);
    const problems: string[] = [];
    for (const { op, req } of requests) {
      problems.push(...errorProblems(await send(req, header), 401, 'unauthenticated', op.key));
    }
    problems.push(...fingerprintDiff(before, await dbFingerprint(app), name));
    expect(problems).toEqual([]);
  });

  it('the bad credentials the fixtures build are exactly the cases above (none silently skipped)', () => {
    expect(badCredentials.map(([n]) => n)).toEqual([...CREDENTIAL_CASES]);
  });

  it('a stranger gets 401 before the body is read: malformed, non-JSON and oversized bodies without credentials are 401', async () => {
    const withBody = protectedOps().filter((op) => ['POST', 'PUT', 'PATCH'].includes(op.method));
    expect(withBody.length).toBeGreaterThan(0);
    const bodies: Array<[string, string, string]> = [
      ['malformed JSON', '{"name": ', 'application/json'],
      ['text/plain', 'hello', 'text/plain'],
      ['oversized', JSON.stringify({ name: 'x'.repeat(70_000) }), 'application/json'],
    ];
    const problems: string[] = [];
    const before = await dbFingerprint(app);
    for (const op of withBody) {
      for (const [label, payload, type] of bodies) {
        const res = await rawRequest(app, { method: op.method, url: fillPath(op.path), payload, headers: { 'content-type': type } });
        problems.push(...errorProblems(res, 401, 'unauthenticated', `${op.key} ${label}`));
      }
    }
    problems.push(...fingerprintDiff(before, await dbFingerprint(app), 'stranger bodies'));
    expect(problems).toEqual([]);
  });
});
