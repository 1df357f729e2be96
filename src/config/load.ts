import { resolve } from 'node:path';
import { type Config, ConfigError, decodeEncryptionKey, parseEnv } from './config.js';
import { loadOrCreateSecrets } from './secrets.js';

export interface LoadedConfig {
  config: Config;
  /** True when this start generated the development secrets (the service key is printed once). */
  generatedSecrets: boolean;
}

/**
 * Builds the frozen Config from the environment. In production the JWT secret and the encryption
 * key must be given; elsewhere missing ones come from (or are created in) the data directory.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const raw = parseEnv(env);
  const dataDir = resolve(raw.TALLY_DATA_DIR);
  if (raw.NODE_ENV === 'production') {
    const missing = (['TALLY_JWT_SECRET', 'TALLY_ENCRYPTION_KEY'] as const).filter((k) => !raw[k]);
    if (missing.length > 0) {
      throw new ConfigError(`NODE_ENV=production requires ${missing.join(', ')} to be set`);
    }
  }
  let generatedSecrets = false;
  let serviceKey = raw.TALLY_SERVICE_KEY;
  let jwtSecret = raw.TALLY_JWT_SECRET;
  let encryptionKey = raw.TALLY_ENCRYPTION_KEY;
  if (!serviceKey || !jwtSecret || !encryptionKey) {
    const { secrets, created } = loadOrCreateSecrets(dataDir);
    generatedSecrets = created && !raw.TALLY_SERVICE_KEY;
    serviceKey ??= secrets.serviceKey;
    jwtSecret ??= secrets.jwtSecret;
    encryptionKey ??= secrets.encryptionKey;
  }
  const config: Config = {
    env: raw.NODE_ENV,
    http: { port: raw.PORT, host: raw.HOST, bodyLimit: raw.TALLY_BODY_LIMIT_BYTES },
    database: raw.DATABASE_URL
      ? { kind: 'postgres', url: raw.DATABASE_URL, poolMax: raw.DATABASE_POOL_MAX, schema: raw.TALLY_DB_SCHEMA }
      : { kind: 'pglite', dataDir: resolve(dataDir, 'pgdata'), schema: raw.TALLY_DB_SCHEMA },
    dataDir,
    auth: { serviceKey, jwtSecret, jwtTtlSeconds: raw.TALLY_JWT_TTL_SECONDS },
    encryptionKey: decodeEncryptionKey(encryptionKey),
    credits: {
      balanceCap: raw.TALLY_BALANCE_CAP === 0 ? null : raw.TALLY_BALANCE_CAP,
      signupBonus: raw.TALLY_SIGNUP_BONUS,
      maxBatch: Math.max(1, raw.TALLY_LEDGER_MAX_BATCH),
      maxParallel:
        raw.TALLY_LEDGER_MAX_PARALLEL > 0
          ? raw.TALLY_LEDGER_MAX_PARALLEL
          : raw.DATABASE_URL
            ? 2
            : 1,
    },
    logLevel: raw.LOG_LEVEL,
  };
  return { config: Object.freeze(config), generatedSecrets };
}
