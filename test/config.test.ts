import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/config/config.js';
import { loadConfig } from '../src/config/load.js';
import { openDatabase } from '../src/db/database.js';
import { sql } from 'kysely';

const made: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'tally-config-'));
  made.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

describe('configuration', () => {
  it('has the documented defaults', () => {
    const { config } = loadConfig({ TALLY_DATA_DIR: tempDir() });
    expect(config.http).toMatchObject({ port: 8787, host: '127.0.0.1' });
    expect(config.credits).toEqual({ balanceCap: 50_000, lowThreshold: 0, signupBonus: 3, maxBatch: 256, maxParallel: 1, maxBacklog: 10_000 });
    expect(config.database.kind).toBe('pglite');
    expect(config.database.schema).toBe('tally');
    expect(config.logLevel).toBe('info');
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('code runs are billed only when TALLY_CODE_EXECUTION_METRIC names a metric', () => {
    expect(loadConfig({ TALLY_DATA_DIR: tempDir() }).config.billing?.codeExecutionMetric).toBeUndefined();
    expect(loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_CODE_EXECUTION_METRIC: '' }).config.billing?.codeExecutionMetric).toBeUndefined();
    expect(loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_CODE_EXECUTION_METRIC: 'code_execution_ms' }).config.billing?.codeExecutionMetric).toBe('code_execution_ms');
    expect(() => loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_CODE_EXECUTION_METRIC: 'not a metric' })).toThrow(ConfigError);
  });

  it("a billed run's hold is TALLY_CODE_EXECUTION_HOLD_MS (a minute by default, at least 1 ms)", () => {
    const billed = (env: Record<string, string>) => loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_CODE_EXECUTION_METRIC: 'code_execution_ms', ...env }).config.billing;
    expect(billed({})?.codeExecutionHoldMs).toBe(60_000);
    expect(billed({ TALLY_CODE_EXECUTION_HOLD_MS: '20000' })?.codeExecutionHoldMs).toBe(20_000);
    expect(() => billed({ TALLY_CODE_EXECUTION_HOLD_MS: '0' })).toThrow(ConfigError);
    expect(() => billed({ TALLY_CODE_EXECUTION_HOLD_MS: '1.5' })).toThrow(ConfigError);
  });

  it('TALLY_BALANCE_CAP=0 means no cap', () => {
    const { config } = loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_BALANCE_CAP: '0', TALLY_SIGNUP_BONUS: '10' });
    expect(config.credits).toMatchObject({ balanceCap: null, signupBonus: 10 });
  });

  it('DATABASE_URL selects PostgreSQL', () => {
    const { config } = loadConfig({ TALLY_DATA_DIR: tempDir(), DATABASE_URL: 'postgres://x@localhost/db' });
    expect(config.database).toMatchObject({ kind: 'postgres', url: 'postgres://x@localhost/db', poolMax: 20 });
    // Every wait bounded by default (docs/operations.md); the pooler probed at start.
    expect(config.database).toMatchObject({ pooler: 'auto', statementTimeoutMs: 10_000, lockTimeoutMs: 5_000, acquireTimeoutMs: 5_000 });
    expect(config.credits.maxParallel).toBe(2);
    const tuned = loadConfig({ TALLY_DATA_DIR: tempDir(), DATABASE_URL: 'postgres://x@localhost/db', TALLY_LEDGER_MAX_PARALLEL: '6', TALLY_LEDGER_MAX_BATCH: '64' });
    expect(tuned.config.credits).toMatchObject({ maxParallel: 6, maxBatch: 64 });
  });

  it('the API key cache defaults to 10 s and 50,000 keys; 0 turns it off', () => {
    expect(loadConfig({ TALLY_DATA_DIR: tempDir() }).config.auth.keyCache).toEqual({ ttlMs: 10_000, maxEntries: 50_000 });
    expect(loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_KEY_CACHE_MS: '0' }).config.auth.keyCache).toEqual({ ttlMs: 0, maxEntries: 50_000 });
    expect(() => loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_KEY_CACHE_MS: '-1' })).toThrow(/TALLY_KEY_CACHE_MS/);
  });

  it('POST /v1/check snapshots default to 30 s and 20,000 entries; 0 turns them off', () => {
    expect(loadConfig({ TALLY_DATA_DIR: tempDir() }).config.billing?.checkCache).toEqual({ ttlMs: 30_000, maxEntries: 20_000 });
    const off = loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_CHECK_CACHE_MS: '0', TALLY_CHECK_CACHE_ENTRIES: '50' });
    expect(off.config.billing?.checkCache).toEqual({ ttlMs: 0, maxEntries: 50 });
    expect(() => loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_CHECK_CACHE_MS: '-1' })).toThrow(/TALLY_CHECK_CACHE_MS/);
  });

  it('checkouts need only each provider\'s API key (Lemon Squeezy with its store); none configured by default', () => {
    expect(loadConfig({ TALLY_DATA_DIR: tempDir() }).config.payments?.checkout).toEqual({ stripe: null, lemonsqueezy: null, creem: null, paypal: null });
    const { config } = loadConfig({
      TALLY_DATA_DIR: tempDir(),
      STRIPE_SECRET_KEY: 'sk_test_x',
      LEMONSQUEEZY_API_KEY: 'ls',
      LEMONSQUEEZY_STORE_ID: '42',
      CREEM_API_KEY: 'creem',
      CREEM_API_BASE: 'https://test-api.creem.io/',
      PAYPAL_WEBHOOK_ID: 'WH',
      PAYPAL_CLIENT_ID: 'id',
      PAYPAL_CLIENT_SECRET: 'secret',
    });
    expect(config.payments?.checkout).toEqual({
      stripe: { secretKey: 'sk_test_x', apiBase: 'https://api.stripe.com' },
      lemonsqueezy: { apiKey: 'ls', storeId: '42', apiBase: 'https://api.lemonsqueezy.com' },
      creem: { apiKey: 'creem', apiBase: 'https://test-api.creem.io' },
      paypal: { clientId: 'id', clientSecret: 'secret', apiBase: 'https://api-m.paypal.com' },
    });
    expect(() => loadConfig({ TALLY_DATA_DIR: tempDir(), LEMONSQUEEZY_API_KEY: 'ls' })).toThrow(ConfigError);
    expect(() => loadConfig({ TALLY_DATA_DIR: tempDir(), LEMONSQUEEZY_API_KEY: 'ls', LEMONSQUEEZY_STORE_ID: 'store' })).toThrow(/LEMONSQUEEZY_STORE_ID/);
  });

  it('rejects malformed values, naming the variable', () => {
    expect(() => loadConfig({ TALLY_DATA_DIR: tempDir(), PORT: 'eighty' })).toThrow(/PORT/);
    expect(() => loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_BALANCE_CAP: '-5' })).toThrow(/TALLY_BALANCE_CAP/);
    expect(() => loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_ENCRYPTION_KEY: 'short' })).toThrow(/TALLY_ENCRYPTION_KEY/);
    expect(() => loadConfig({ TALLY_DATA_DIR: tempDir(), TALLY_JWT_SECRET: 'short' })).toThrow(/TALLY_JWT_SECRET/);
  });

  it('in production a missing JWT secret or encryption key is a start-up error naming it', () => {
    const dir = tempDir();
    expect(() => loadConfig({ NODE_ENV: 'production', TALLY_DATA_DIR: dir })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: 'production', TALLY_DATA_DIR: dir })).toThrow(/TALLY_JWT_SECRET.*TALLY_ENCRYPTION_KEY/);
    expect(() =>
      loadConfig({ NODE_ENV: 'production', TALLY_DATA_DIR: dir, TALLY_JWT_SECRET: 'x'.repeat(40) }),
    ).toThrow(/TALLY_ENCRYPTION_KEY/);
    const key = Buffer.alloc(32, 7).toString('base64');
    const { config } = loadConfig({
      NODE_ENV: 'production',
      TALLY_DATA_DIR: dir,
      TALLY_JWT_SECRET: 'x'.repeat(40),
      TALLY_ENCRYPTION_KEY: key,
      TALLY_SERVICE_KEY: 's'.repeat(40),
    });
    expect(config.encryptionKey.equals(Buffer.alloc(32, 7))).toBe(true);
  });

  it('a production start with every secret in the environment and no data folder creates the folder, private, and opens PGlite', async () => {
    const dir = join(tempDir(), 'not', 'yet');
    const { config } = loadConfig({
      NODE_ENV: 'production',
      TALLY_DATA_DIR: dir,
      TALLY_JWT_SECRET: 'x'.repeat(40),
      TALLY_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
      TALLY_SERVICE_KEY: 's'.repeat(40),
      TALLY_JOBS_CALLBACK_SECRET: 'c'.repeat(40),
    });
    const database = await openDatabase(config.database);
    try {
      const { rows } = await sql<{ one: number }>`select 1 as one`.execute(database.root);
      expect(rows[0]?.one).toBe(1);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(existsSync(join(dir, 'secrets.json'))).toBe(false);
    } finally {
      await database.close();
    }
  });

  it('development secrets are generated once, kept private, and never regenerated', () => {
    const dir = tempDir();
    const first = loadConfig({ TALLY_DATA_DIR: dir });
    expect(first.generatedSecrets).toBe(true);
    expect(first.config.auth.serviceKey).toMatch(/^tsk_[A-Za-z0-9]{48}$/);
    const file = join(dir, 'secrets.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const second = loadConfig({ TALLY_DATA_DIR: dir });
    expect(second.generatedSecrets).toBe(false);
    expect(second.config.auth).toEqual(first.config.auth);
    expect(second.config.encryptionKey.equals(first.config.encryptionKey)).toBe(true);
    expect(JSON.parse(readFileSync(file, 'utf8')).serviceKey).toBe(first.config.auth.serviceKey);
  });

  it('values from the environment win over persisted ones', () => {
    const dir = tempDir();
    loadConfig({ TALLY_DATA_DIR: dir });
    const { config, generatedSecrets } = loadConfig({ TALLY_DATA_DIR: dir, TALLY_SERVICE_KEY: 'k'.repeat(40) });
    expect(generatedSecrets).toBe(false);
    expect(config.auth.serviceKey).toBe('k'.repeat(40));
  });
});
