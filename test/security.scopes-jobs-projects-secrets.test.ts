/**
 * API-key scopes (jobs:*, projects:*, secrets:*, and any scope no other file names: storage, analytics, gateway): a key reaches
 * exactly the routes its scopes allow. The other scopes are in test/security.scopes-*.test.ts.
 *
 * Part of the shared security suite: its set-up and the classification of every route are in
 * test/support/security-suite.ts.
 */
import { describe } from 'vitest';
import { keyReachesExactlyItsScopes, useSecuritySuite } from './support/security-suite.js';

useSecuritySuite();

describe('API-key scopes: a key reaches exactly the routes its scopes allow', () => {
  keyReachesExactlyItsScopes('jobs-projects-secrets');
});
