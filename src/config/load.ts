import { resolve } from 'node:path';
import { type CheckoutConfig, type Config, ConfigError, DEFAULT_WEBHOOKS_OUT, decodeEncryptionKey, parseEnv, type PaymentsConfig, type PaymentsMode, type RawEnv, type StorageConfig } from './config.js';
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
  let callbackSecret = raw.TALLY_JOBS_CALLBACK_SECRET;
  if (!serviceKey || !jwtSecret || !encryptionKey || !callbackSecret) {
    const { secrets, created } = loadOrCreateSecrets(dataDir);
    generatedSecrets = created && !raw.TALLY_SERVICE_KEY;
    serviceKey ??= secrets.serviceKey;
    jwtSecret ??= secrets.jwtSecret;
    encryptionKey ??= secrets.encryptionKey;
    callbackSecret ??= secrets.jobsCallbackSecret;
  }
  const config: Config = {
    env: raw.NODE_ENV,
    http: {
      port: raw.PORT,
      host: raw.HOST,
      bodyLimit: raw.TALLY_BODY_LIMIT_BYTES,
      requestLog: raw.TALLY_REQUEST_LOG === 'on',
      processes: raw.TALLY_PROCESSES,
      deadlineMs: raw.TALLY_REQUEST_DEADLINE_MS,
      ...(raw.TALLY_TRUST_PROXY !== undefined && raw.TALLY_TRUST_PROXY !== 'false'
        ? { trustProxy: raw.TALLY_TRUST_PROXY === 'true' ? true : raw.TALLY_TRUST_PROXY }
        : {}),
    },
    database: raw.DATABASE_URL
      ? {
          kind: 'postgres',
          url: raw.DATABASE_URL,
          poolMax: raw.DATABASE_POOL_MAX,
          schema: raw.TALLY_DB_SCHEMA,
          pooler: raw.TALLY_DB_POOLER,
          ...(raw.DATABASE_DIRECT_URL ? { directUrl: raw.DATABASE_DIRECT_URL } : {}),
          statementTimeoutMs: raw.TALLY_DB_STATEMENT_TIMEOUT_MS,
          lockTimeoutMs: raw.TALLY_DB_LOCK_TIMEOUT_MS,
          acquireTimeoutMs: raw.TALLY_DB_ACQUIRE_TIMEOUT_MS,
        }
      : { kind: 'pglite', dataDir: resolve(dataDir, 'pgdata'), schema: raw.TALLY_DB_SCHEMA },
    dataDir,
    auth: { serviceKey, jwtSecret, jwtTtlSeconds: raw.TALLY_JWT_TTL_SECONDS, refreshTtlSeconds: raw.TALLY_REFRESH_TTL_SECONDS, keyCache: { ttlMs: raw.TALLY_KEY_CACHE_MS, maxEntries: raw.TALLY_KEY_CACHE_ENTRIES } },
    encryptionKey: decodeEncryptionKey(encryptionKey),
    billing: {
      creditClasses: raw.TALLY_CREDIT_CLASSES.split(','),
      timeZone: raw.TALLY_TIME_ZONE,
      dailyFreeQuota: raw.TALLY_DAILY_FREE_QUOTA,
      freeQuotaMetrics: raw.TALLY_FREE_QUOTA_METRICS.split(',').map((m) => m.trim()).filter(Boolean),
      checkCache: { ttlMs: raw.TALLY_CHECK_CACHE_MS, maxEntries: raw.TALLY_CHECK_CACHE_ENTRIES },
      ...(raw.TALLY_CODE_EXECUTION_METRIC ? { codeExecutionMetric: raw.TALLY_CODE_EXECUTION_METRIC, codeExecutionHoldMs: raw.TALLY_CODE_EXECUTION_HOLD_MS } : {}),
    },
    encryptionKeysOld: (raw.TALLY_ENCRYPTION_KEYS_OLD ?? '')
      .split(',')
      .map((k) => k.trim())
      .filter((k) => k !== '')
      .map(decodeEncryptionKey),
    jobs: {
      callbackSecret,
      callbackToleranceSeconds: raw.TALLY_JOBS_CALLBACK_TOLERANCE_SECONDS,
      providerSecrets: Object.fromEntries(
        (raw.TALLY_JOBS_CALLBACK_SECRETS ?? '')
          .split(',')
          .map((pair) => pair.trim())
          .filter((pair) => pair !== '')
          .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
      ),
    },
    queue: { pollMs: raw.TALLY_QUEUE_POLL_MS },
    analyticsRetentionDays: raw.TALLY_RETENTION_ANALYTICS_DAYS,
    analytics: {
      batchMax: raw.TALLY_ANALYTICS_BATCH_MAX,
      propertiesMaxBytes: raw.TALLY_ANALYTICS_PROPERTIES_MAX_BYTES,
      eventsPerUser: raw.TALLY_RATE_LIMIT_ANALYTICS_EVENTS_PER_USER,
    },
    credits: {
      balanceCap: raw.TALLY_BALANCE_CAP === 0 ? null : raw.TALLY_BALANCE_CAP,
      signupBonus: raw.TALLY_SIGNUP_BONUS,
      lowThreshold: raw.TALLY_CREDITS_LOW_THRESHOLD,
      maxBatch: Math.max(1, raw.TALLY_LEDGER_MAX_BATCH),
      maxBacklog: Math.max(1, raw.TALLY_LEDGER_MAX_BACKLOG),
      maxParallel:
        raw.TALLY_LEDGER_MAX_PARALLEL > 0
          ? raw.TALLY_LEDGER_MAX_PARALLEL
          : raw.DATABASE_URL
            ? 2
            : 1,
    },
    rateLimits: {
      loginPerIp: raw.TALLY_RATE_LIMIT_LOGIN_PER_IP,
      loginPerEmail: raw.TALLY_RATE_LIMIT_LOGIN_PER_EMAIL,
      signupPerIp: raw.TALLY_RATE_LIMIT_SIGNUP_PER_IP,
      signupPerEmail: raw.TALLY_RATE_LIMIT_SIGNUP_PER_EMAIL,
      resetPerIp: raw.TALLY_RATE_LIMIT_RESET_PER_IP,
      resetPerEmail: raw.TALLY_RATE_LIMIT_RESET_PER_EMAIL,
      checkoutPerUser: raw.TALLY_RATE_LIMIT_CHECKOUT_PER_USER,
      failuresPerIp: raw.TALLY_RATE_LIMIT_FAILURES_PER_IP,
      entries: Math.max(100, raw.TALLY_RATE_LIMIT_ENTRIES),
    },
    logLevel: raw.LOG_LEVEL,
    payments: paymentsConfig(raw),
    webhooksOut: {
      ...DEFAULT_WEBHOOKS_OUT,
      allowPrivate: (raw.TALLY_WEBHOOKS_ALLOW_PRIVATE ?? (raw.NODE_ENV === 'production' ? 'false' : 'true')) === 'true',
      timeoutMs: raw.TALLY_WEBHOOKS_TIMEOUT_MS,
      maxAttempts: raw.TALLY_WEBHOOKS_MAX_ATTEMPTS,
      disableAfterMs: raw.TALLY_WEBHOOKS_DISABLE_AFTER_HOURS * 3_600_000,
    },
    emailVerification: {
      ttlSeconds: raw.TALLY_EMAIL_VERIFY_TTL_SECONDS,
      urlTemplate: raw.TALLY_EMAIL_VERIFY_URL ?? null,
      confirmSignup: (raw.TALLY_SIGNUP_CONFIRM_EMAIL ?? (raw.NODE_ENV === 'production' ? 'true' : 'false')) === 'true',
    },
    mail: { smtpUrl: raw.SMTP_URL ?? null, from: raw.MAIL_FROM },
    gateway: {
      connectTimeoutMs: raw.TALLY_GATEWAY_CONNECT_TIMEOUT_MS,
      firstByteTimeoutMs: raw.TALLY_GATEWAY_FIRST_BYTE_TIMEOUT_MS,
      idleTimeoutMs: raw.TALLY_GATEWAY_IDLE_TIMEOUT_MS,
      drainTimeoutMs: raw.TALLY_GATEWAY_DRAIN_TIMEOUT_MS,
      maxAttempts: raw.TALLY_GATEWAY_MAX_ATTEMPTS,
      cooldownMs: raw.TALLY_GATEWAY_COOLDOWN_MS,
      failureThreshold: raw.TALLY_GATEWAY_FAILURE_THRESHOLD,
      reapAfterMs: raw.TALLY_GATEWAY_REAP_AFTER_MS,
      leaseMs: raw.TALLY_GATEWAY_LEASE_MS,
      standardTierHosts: raw.TALLY_GATEWAY_STANDARD_TIER_HOSTS.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean),
    },
    passwordReset: { ttlSeconds: raw.TALLY_PASSWORD_RESET_TTL_SECONDS, urlTemplate: raw.TALLY_PASSWORD_RESET_URL ?? null },
    storage: storageConfig(raw, dataDir),
    observability: {
      requestLogs: raw.TALLY_API_LOGS === 'on'
        ? { batchSize: raw.TALLY_API_LOGS_BATCH, flushMs: raw.TALLY_API_LOGS_FLUSH_MS, maxBuffered: raw.TALLY_API_LOGS_BUFFER }
        : null,
      errorLogs: raw.TALLY_ERROR_LOGS === 'on',
      ...(raw.TALLY_METRICS_TOKEN ? { metricsToken: raw.TALLY_METRICS_TOKEN } : {}),
      // 0 = forever.
      retentionDays: {
        api_logs: raw.TALLY_RETENTION_API_LOGS_DAYS || null,
        error_logs: raw.TALLY_RETENTION_ERROR_LOGS_DAYS || null,
        performance_metrics: raw.TALLY_RETENTION_PERFORMANCE_METRICS_DAYS || null,
        analytics_events: raw.TALLY_RETENTION_ANALYTICS_DAYS || null,
      },
    },
  };
  return { config: Object.freeze(config), generatedSecrets };
}

/** The storage slice: the S3 driver needs its bucket; keys come together or not at all (the SDK's chain). */
function storageConfig(raw: RawEnv, dataDir: string): StorageConfig {
  const publicUrl = raw.TALLY_PUBLIC_URL ? { publicUrl: raw.TALLY_PUBLIC_URL.replace(/\/+$/, '') } : {};
  if (raw.TALLY_STORAGE_DRIVER === 'local') return { driver: 'local', root: resolve(raw.TALLY_STORAGE_ROOT ?? resolve(dataDir, 'storage')), ...publicUrl };
  if (!raw.TALLY_S3_BUCKET) throw new ConfigError('TALLY_STORAGE_DRIVER=s3 needs TALLY_S3_BUCKET');
  if (Boolean(raw.TALLY_S3_ACCESS_KEY_ID) !== Boolean(raw.TALLY_S3_SECRET_ACCESS_KEY)) {
    throw new ConfigError('TALLY_S3_ACCESS_KEY_ID and TALLY_S3_SECRET_ACCESS_KEY go together');
  }
  return {
    driver: 's3',
    region: raw.TALLY_S3_REGION,
    bucket: raw.TALLY_S3_BUCKET,
    forcePathStyle: raw.TALLY_S3_FORCE_PATH_STYLE === 'true',
    ...(raw.TALLY_S3_ENDPOINT ? { endpoint: raw.TALLY_S3_ENDPOINT } : {}),
    ...(raw.TALLY_S3_ACCESS_KEY_ID ? { accessKeyId: raw.TALLY_S3_ACCESS_KEY_ID } : {}),
    ...(raw.TALLY_S3_SECRET_ACCESS_KEY ? { secretAccessKey: raw.TALLY_S3_SECRET_ACCESS_KEY } : {}),
    ...publicUrl,
  };
}

/** Checkouts: each provider's API key. Lemon Squeezy also needs the store its checkouts belong to. */
function checkoutConfig(raw: RawEnv): CheckoutConfig {
  if (Boolean(raw.LEMONSQUEEZY_API_KEY) !== Boolean(raw.LEMONSQUEEZY_STORE_ID)) {
    throw new ConfigError('Lemon Squeezy checkouts need LEMONSQUEEZY_API_KEY and LEMONSQUEEZY_STORE_ID together');
  }
  const base = (url: string) => url.replace(/\/+$/, '');
  return {
    stripe: raw.STRIPE_SECRET_KEY ? { secretKey: raw.STRIPE_SECRET_KEY, apiBase: base(raw.STRIPE_API_BASE) } : null,
    lemonsqueezy:
      raw.LEMONSQUEEZY_API_KEY && raw.LEMONSQUEEZY_STORE_ID
        ? { apiKey: raw.LEMONSQUEEZY_API_KEY, storeId: raw.LEMONSQUEEZY_STORE_ID, apiBase: base(raw.LEMONSQUEEZY_API_BASE) }
        : null,
    creem: raw.CREEM_API_KEY ? { apiKey: raw.CREEM_API_KEY, apiBase: base(raw.CREEM_API_BASE) } : null,
    paypal: raw.PAYPAL_CLIENT_ID && raw.PAYPAL_CLIENT_SECRET ? { clientId: raw.PAYPAL_CLIENT_ID, clientSecret: raw.PAYPAL_CLIENT_SECRET, apiBase: base(raw.PAYPAL_API_BASE) } : null,
  };
}

/** `auto`: the mode of the Stripe secret key when one is set (its prefix says it), else both. */
export function paymentsMode(setting: 'auto' | PaymentsMode, stripeSecretKey: string | undefined): PaymentsMode {
  if (setting !== 'auto') return setting;
  if (stripeSecretKey && /^(sk|rk)_live_/.test(stripeSecretKey)) return 'live';
  if (stripeSecretKey && /^(sk|rk)_test_/.test(stripeSecretKey)) return 'test';
  return 'any';
}

/** The payments slice. PayPal needs all three of its settings; naming only some is an error. */
function paymentsConfig(raw: RawEnv): PaymentsConfig {
  const paypal = [raw.PAYPAL_WEBHOOK_ID, raw.PAYPAL_CLIENT_ID, raw.PAYPAL_CLIENT_SECRET];
  if (paypal.some((v) => v) && !paypal.every((v) => v)) {
    throw new ConfigError('PayPal needs PAYPAL_WEBHOOK_ID, PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET together');
  }
  const stripeSecrets = (raw.STRIPE_WEBHOOK_SECRET ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  return {
    stripe: stripeSecrets.length > 0 ? { webhookSecrets: stripeSecrets } : null,
    lemonsqueezy: raw.LEMONSQUEEZY_WEBHOOK_SECRET ? { webhookSecret: raw.LEMONSQUEEZY_WEBHOOK_SECRET } : null,
    creem: raw.CREEM_WEBHOOK_SECRET ? { webhookSecret: raw.CREEM_WEBHOOK_SECRET } : null,
    paypal:
      raw.PAYPAL_WEBHOOK_ID && raw.PAYPAL_CLIENT_ID && raw.PAYPAL_CLIENT_SECRET
        ? { webhookId: raw.PAYPAL_WEBHOOK_ID, clientId: raw.PAYPAL_CLIENT_ID, clientSecret: raw.PAYPAL_CLIENT_SECRET, apiBase: raw.PAYPAL_API_BASE.replace(/\/+$/, '') }
        : null,
    toleranceSeconds: raw.TALLY_WEBHOOK_TOLERANCE_SECONDS,
    mode: paymentsMode(raw.TALLY_PAYMENTS_MODE, raw.STRIPE_SECRET_KEY),
    unsignedUserIds: raw.TALLY_PAYMENTS_UNSIGNED_USER_ID === 'on',
    creditPrice: raw.TALLY_CREDIT_PRICE > 0 ? { unitAmount: raw.TALLY_CREDIT_PRICE, currency: raw.TALLY_CREDIT_PRICE_CURRENCY } : null,
    checkout: checkoutConfig(raw),
  };
}
