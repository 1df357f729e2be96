import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomToken } from '../lib/random.js';

/**
 * Development secrets live in `<dataDir>/secrets.json`. They are generated once and never
 * regenerated: a new encryption key would make every stored secret unreadable (a seed bug).
 */
export interface PersistedSecrets {
  serviceKey: string;
  jwtSecret: string;
  encryptionKey: string;
  /** Added with AI jobs: files written before it get one on the next start (the rest is kept). */
  jobsCallbackSecret: string;
}

export function secretsPath(dataDir: string): string {
  return join(dataDir, 'secrets.json');
}

/** Reads the persisted secrets, creating the file (mode 0600) with fresh ones the first time. */
export function loadOrCreateSecrets(dataDir: string): { secrets: PersistedSecrets; created: boolean } {
  const path = secretsPath(dataDir);
  if (existsSync(path)) {
    const secrets = JSON.parse(readFileSync(path, 'utf8')) as PersistedSecrets;
    if (!secrets.serviceKey || !secrets.jwtSecret || !secrets.encryptionKey) {
      throw new Error(`${path} is incomplete; restore it from a backup rather than deleting it`);
    }
    if (!secrets.jobsCallbackSecret) {
      // A secret introduced after the file was made: add it, never touching the others.
      secrets.jobsCallbackSecret = randomBytes(32).toString('base64url');
      writeFileSync(path, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
      chmodSync(path, 0o600);
    }
    return { secrets, created: false };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secrets: PersistedSecrets = {
    serviceKey: `tsk_${randomToken(48)}`,
    jwtSecret: randomBytes(48).toString('base64url'),
    encryptionKey: randomBytes(32).toString('base64'),
    jobsCallbackSecret: randomBytes(32).toString('base64url'),
  };
  writeFileSync(path, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return { secrets, created: true };
}
