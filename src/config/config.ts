import { z } from 'zod';

/**
 * Every setting Tally reads from the environment, parsed once at start-up.
 * Nobody else reads `process.env`: modules receive their slice of this object.
 */
const intFromEnv = (fallback: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return fallback;
      if (!/^\d+$/.test(v)) {
        ctx.addIssue({ code: 'custom', message: `must be a non-negative integer, got "${v}"` });
        return z.NEVER;
      }
      return Number(v);
    });

/** "<max>/<window seconds>" (e.g. "30/60"), or "0" for no limit. */
const rateFromEnv = (fallback: string) =>
  z
    .string()
    .optional()
    .transform((v, ctx): RateLimit | null => {
      const text = v === undefined || v === '' ? fallback : v.trim();
      if (text === '0') return null;
      const m = /^(\d{1,9})\/(\d{1,9})$/.exec(text);
      if (!m || Number(m[2]) === 0) {
        ctx.addIssue({ code: 'custom', message: `must be "<max>/<window seconds>" or 0, got "${text}"` });
        return z.NEVER;
      }
      return Number(m[1]) === 0 ? null : { max: Number(m[1]), windowSeconds: Number(m[2]) };
    });

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === '' ? undefined : v));

/** What the body schema (maxItems) and the table's CHECK (octet_length) accept: the settings may only lower these. */
export const ANALYTICS_CEILINGS = { batchMax: 100, propertiesMaxBytes: 16_384 } as const;

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: intFromEnv(8787),
  HOST: z.string().default('127.0.0.1'),
  DATABASE_URL: optionalString,
  DATABASE_POOL_MAX: intFromEnv(20),
  /** A direct (session) connection for LISTEN when DATABASE_URL goes through a transaction-mode pooler. */
  DATABASE_DIRECT_URL: optionalString,
  /** `auto` probes for a transaction-mode pooler at start; `transaction` or `none` say so (docs/operations.md). */
  TALLY_DB_POOLER: z.enum(['auto', 'none', 'transaction']).default('auto'),
  /** Bounds on every wait (docs/operations.md): a statement, a row lock, a pooled connection. */
  TALLY_DB_STATEMENT_TIMEOUT_MS: intFromEnv(10_000),
  TALLY_DB_LOCK_TIMEOUT_MS: intFromEnv(5_000),
  TALLY_DB_ACQUIRE_TIMEOUT_MS: intFromEnv(5_000),
  /** Most money operations waiting in one process before new ones are refused with 503. */
  TALLY_LEDGER_MAX_BACKLOG: intFromEnv(10_000),
  TALLY_DB_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lowercase SQL identifier')
    .default('tally'),
  TALLY_DATA_DIR: z.string().default('./.tally'),
  TALLY_SERVICE_KEY: optionalString.refine((v) => v === undefined || v.length >= 32, 'must be at least 32 characters'),
  TALLY_JWT_SECRET: optionalString.refine((v) => v === undefined || v.length >= 32, 'must be at least 32 characters'),
  TALLY_JWT_TTL_SECONDS: intFromEnv(3600),
  TALLY_REFRESH_TTL_SECONDS: intFromEnv(30 * 86_400),
  /** How long an e-mail verification token stays valid (docs/auth.md). */
  TALLY_EMAIL_VERIFY_TTL_SECONDS: intFromEnv(86_400).refine((v) => v >= 60 && v <= 604_800, 'must be between 60 and 604800 seconds'),
  /**
   * The app's verification page, e.g. https://app.example.com/verify?token={token}: Tally answers
   * a ready link with the token filled in (URL-encoded), for the app to mail. No `{token}`: the
   * token is added as the `token` query parameter.
   */
  /**
   * Sign-up answers the same whether or not the address is registered and mails a confirmation
   * (docs/auth.md, "Sign-up with confirmation"). Unset: on in production, off elsewhere.
   */
  TALLY_SIGNUP_CONFIRM_EMAIL: z.enum(['true', 'false']).optional(),
  /** Outgoing webhooks to loopback/private addresses (SSRF guard off). Unset: refused in production, allowed elsewhere. */
  TALLY_WEBHOOKS_ALLOW_PRIVATE: z.enum(['true', 'false']).optional(),
  TALLY_WEBHOOKS_TIMEOUT_MS: intFromEnv(5_000).refine((v) => v >= 100 && v <= 60_000, 'must be between 100 and 60000 ms'),
  TALLY_WEBHOOKS_MAX_ATTEMPTS: intFromEnv(80).refine((v) => v >= 1 && v <= 200, 'must be between 1 and 200'),
  TALLY_WEBHOOKS_DISABLE_AFTER_HOURS: intFromEnv(72).refine((v) => v >= 1, 'must be at least 1 hour'),
  TALLY_EMAIL_VERIFY_URL: optionalString.refine((v) => v === undefined || isHttpUrl(v), 'must be an http(s) URL'),
  TALLY_ENCRYPTION_KEY: optionalString.refine(
    (v) => v === undefined || /^[A-Za-z0-9+/]{43}=$/.test(v) || /^[0-9a-f]{64}$/i.test(v),
    'must be 32 bytes as base64 (44 chars) or hex (64 chars)',
  ),
  /** Retired encryption keys (comma-separated, same format): they open old values until `tally secrets rotate`. */
  TALLY_ENCRYPTION_KEYS_OLD: optionalString.refine(
    (v) => v === undefined || v.split(',').every((k) => /^[A-Za-z0-9+/]{43}=$/.test(k.trim()) || /^[0-9a-f]{64}$/i.test(k.trim())),
    'must be comma-separated 32-byte keys as base64 (44 chars) or hex (64 chars)',
  ),
  /** HMAC-SHA256 secret AI providers sign job callbacks with (docs/jobs.md). */
  TALLY_JOBS_CALLBACK_SECRET: optionalString.refine((v) => v === undefined || v.length >= 32, 'must be at least 32 characters'),
  TALLY_JOBS_CALLBACK_TOLERANCE_SECONDS: intFromEnv(300),
  /** Per-provider callback secrets, `provider=secret` comma-separated: a job whose provider is named verifies with that secret only. */
  TALLY_JOBS_CALLBACK_SECRETS: optionalString.refine(
    (v) => v === undefined || v.split(',').every((pair) => /^[A-Za-z0-9_.-]{1,64}=[^,\s]{32,}$/.test(pair.trim())),
    'must be comma-separated provider=secret pairs (secrets of at least 32 characters)',
  ),
  /** How often the background queue's worker polls for due work (0 = no worker in this process). */
  TALLY_QUEUE_POLL_MS: intFromEnv(1000),
  TALLY_BALANCE_CAP: intFromEnv(50_000),
  TALLY_SIGNUP_BONUS: intFromEnv(3),
  /** The balance below which an account is low (`credits.low` webhook), unless it sets its own (0 = none). */
  TALLY_CREDITS_LOW_THRESHOLD: intFromEnv(0),
  TALLY_LEDGER_MAX_BATCH: intFromEnv(256),
  TALLY_LEDGER_MAX_PARALLEL: intFromEnv(0),
  TALLY_BODY_LIMIT_BYTES: intFromEnv(1_048_576),
  /** How long POST /v1/check may answer from a snapshot kept in process (0 = always read). */
  TALLY_CHECK_CACHE_MS: intFromEnv(30_000),
  TALLY_CHECK_CACHE_ENTRIES: intFromEnv(20_000),
  /** How long a live API key may be served from memory after a write made outside Tally (0 = always read). */
  TALLY_KEY_CACHE_MS: intFromEnv(10_000),
  TALLY_KEY_CACHE_ENTRIES: intFromEnv(50_000),
  TALLY_CREDIT_CLASSES: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,32}(,[A-Za-z0-9_.-]{1,32})*$/, 'must be a comma-separated list of class names')
    .default('BC,RC,Usage'),
  TALLY_TIME_ZONE: z
    .string()
    .refine((tz) => isTimeZone(tz), 'must be an IANA time zone such as UTC or Europe/Berlin')
    .default('UTC'),
  TALLY_DAILY_FREE_QUOTA: intFromEnv(3),
  TALLY_FREE_QUOTA_METRICS: z.string().default('autofix'),
  /** Bill finished code runs as usage events of this metric (docs/ide.md, "Billing runs"); unset = not billed. */
  TALLY_CODE_EXECUTION_METRIC: optionalString.refine((v) => v === undefined || /^[A-Za-z0-9_.:-]{1,64}$/.test(v), 'must be a metric name (letters, digits, _ . : -; up to 64)'),
  /** The longest run a billed run's hold pays for, in ms (its price is held when the run starts). */
  TALLY_CODE_EXECUTION_HOLD_MS: intFromEnv(60_000).refine((v) => v >= 1, 'must be at least 1 (ms)'),
  // Payments (docs/payments.md). A provider without its secret is not configured: its webhook
  // answers 503 and processes nothing (the provider keeps retrying until it is configured).
  /** Comma-separated: during a rotation Stripe signs with the old and the new secret. */
  STRIPE_WEBHOOK_SECRET: optionalString,
  LEMONSQUEEZY_WEBHOOK_SECRET: optionalString,
  CREEM_WEBHOOK_SECRET: optionalString,
  PAYPAL_WEBHOOK_ID: optionalString,
  PAYPAL_CLIENT_ID: optionalString,
  PAYPAL_CLIENT_SECRET: optionalString,
  PAYPAL_API_BASE: z.string().url().default('https://api-m.paypal.com'),
  // Checkouts Tally creates (POST /v1/checkout): each provider's API key. PayPal uses its client id and secret above.
  STRIPE_SECRET_KEY: optionalString,
  STRIPE_API_BASE: z.string().url().default('https://api.stripe.com'),
  LEMONSQUEEZY_API_KEY: optionalString,
  LEMONSQUEEZY_STORE_ID: optionalString.refine((v) => v === undefined || /^\d{1,20}$/.test(v), 'must be a numeric store id'),
  LEMONSQUEEZY_API_BASE: z.string().url().default('https://api.lemonsqueezy.com'),
  CREEM_API_KEY: optionalString,
  /** https://test-api.creem.io for test mode. */
  CREEM_API_BASE: z.string().url().default('https://api.creem.io'),
  TALLY_WEBHOOK_TOLERANCE_SECONDS: intFromEnv(300),
  /**
   * Which payments are real (docs/payments.md, "Live and test mode"): `live` ignores providers'
   * test-mode events, `test` their live ones, `any` takes both; `auto` is the Stripe secret key's
   * mode (sk_live_/rk_live_ → live, sk_test_/rk_test_ → test), else `any`.
   */
  TALLY_PAYMENTS_MODE: z.enum(['auto', 'live', 'test', 'any']).default('auto'),
  /**
   * `off`: a payment's unsigned metadata user id (`user_id`, which a buyer can set on some providers'
   * checkout links) matches nobody; only signed references, linked customers, verified e-mails and
   * aliases do (docs/payments.md, "Matching").
   */
  TALLY_PAYMENTS_UNSIGNED_USER_ID: z.enum(['on', 'off']).default('on'),
  /** The seeds' system_config credit price: minor units per credit (0 = no price-based credits). */
  TALLY_CREDIT_PRICE: intFromEnv(0),
  TALLY_CREDIT_PRICE_CURRENCY: z.string().regex(/^[a-z]{3}$/, 'must be a lowercase ISO currency').default('usd'),
  // Rate limits for strangers (docs/architecture.md, "Rate limits"): "<max>/<window seconds>", 0 = off.
  TALLY_RATE_LIMIT_LOGIN_PER_IP: rateFromEnv('30/300'),
  TALLY_RATE_LIMIT_LOGIN_PER_EMAIL: rateFromEnv('10/900'),
  TALLY_RATE_LIMIT_SIGNUP_PER_IP: rateFromEnv('10/3600'),
  TALLY_RATE_LIMIT_SIGNUP_PER_EMAIL: rateFromEnv('5/3600'),
  TALLY_RATE_LIMIT_RESET_PER_IP: rateFromEnv('10/3600'),
  TALLY_RATE_LIMIT_RESET_PER_EMAIL: rateFromEnv('3/3600'),
  /** Checkouts and captures a signed-in user asks for (each calls the provider's API); the service key is not limited. */
  TALLY_RATE_LIMIT_CHECKOUT_PER_USER: rateFromEnv('30/3600'),
  /** Outgoing mail (docs/auth.md, "Mail"): smtp(s)://user:pass@host:port; unset = mail goes to the log. */
  SMTP_URL: optionalString.refine((v) => v === undefined || /^smtps?:\/\//.test(v), 'must be an smtp:// or smtps:// URL'),
  MAIL_FROM: z.string().min(3).default('Tally <no-reply@localhost>'),
  TALLY_GATEWAY_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(5_000),
  TALLY_GATEWAY_FIRST_BYTE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(60_000),
  TALLY_GATEWAY_IDLE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(60_000),
  TALLY_GATEWAY_DRAIN_TIMEOUT_MS: z.coerce.number().int().min(0).max(600_000).default(30_000),
  TALLY_GATEWAY_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(10).default(3),
  TALLY_GATEWAY_COOLDOWN_MS: z.coerce.number().int().min(0).max(3_600_000).default(30_000),
  TALLY_GATEWAY_FAILURE_THRESHOLD: z.coerce.number().int().min(1).max(100).default(3),
  TALLY_GATEWAY_REAP_AFTER_MS: z.coerce.number().int().min(60_000).max(7 * 86_400_000).default(3_600_000),
  TALLY_GATEWAY_LEASE_MS: z.coerce.number().int().min(3_000).max(3_600_000).default(60_000),
  TALLY_GATEWAY_STANDARD_TIER_HOSTS: z.string().default('api.openai.com,api.anthropic.com'),
  TALLY_PASSWORD_RESET_TTL_SECONDS: intFromEnv(3600).refine((v) => v >= 60 && v <= 86_400, 'must be between 60 and 86400 seconds'),
  TALLY_PASSWORD_RESET_URL: optionalString.refine((v) => v === undefined || isHttpUrl(v), 'must be an http(s) URL'),
  /** Unauthenticated failures per IP: bad bearer tokens, webhook and job-callback signatures that do not verify. */
  TALLY_RATE_LIMIT_FAILURES_PER_IP: rateFromEnv('30/60'),
  /** Keys each limiter remembers (least recently used dropped first). */
  TALLY_RATE_LIMIT_ENTRIES: intFromEnv(10_000),
  /** Behind a reverse proxy: "true" (believe any), or the comma-separated proxy addresses/CIDRs whose X-Forwarded-For is believed. */
  TALLY_TRUST_PROXY: optionalString.refine(
    (v) => v === undefined || v === 'true' || v === 'false' || /^[0-9A-Fa-f:.\/]+(,\s*[0-9A-Fa-f:.\/]+)*$/.test(v),
    'must be true, false, or comma-separated addresses/CIDRs',
  ),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** A request not answered within this many ms gets 503 `unavailable` (reason timeout); 0 = none. */
  TALLY_REQUEST_DEADLINE_MS: intFromEnv(30_000),
  /** One info line per answered request (method, route, status, duration, caller); "off" logs none. */
  TALLY_REQUEST_LOG: z.enum(['on', 'off']).default('on'),
  /** Server processes `tally start` runs on one port (PostgreSQL only; docs/operations.md, "Several processes"). */
  TALLY_PROCESSES: intFromEnv(1).refine((n) => n >= 1 && n <= 64, 'must be between 1 and 64'),
  // Observability (docs/observability.md).
  /** One api_logs row per request, written in batches off the request's path; "off" writes none. */
  TALLY_API_LOGS: z.enum(['on', 'off']).default('on'),
  /** Rows per insert; a full batch is written at once, a partial one after TALLY_API_LOGS_FLUSH_MS. */
  TALLY_API_LOGS_BATCH: intFromEnv(500).refine((v) => v >= 1 && v <= 5_000, 'must be between 1 and 5000'),
  TALLY_API_LOGS_FLUSH_MS: intFromEnv(1_000).refine((v) => v >= 10 && v <= 60_000, 'must be between 10 and 60000 ms'),
  /** Most rows waiting in memory; past it new rows are dropped and counted (tally_api_logs_dropped_total). */
  TALLY_API_LOGS_BUFFER: intFromEnv(20_000).refine((v) => v >= 1, 'must be at least 1'),
  /** One error_logs row per 5xx answer (with request logs off too); "off" writes none. */
  TALLY_ERROR_LOGS: z.enum(['on', 'off']).default('on'),
  /** A bearer token for GET /metrics besides the service key (a Prometheus scraper need not hold the service key). */
  TALLY_METRICS_TOKEN: optionalString.refine((v) => v === undefined || v.length >= 32, 'must be at least 32 characters'),
  /** Days each table keeps its rows (0 = forever); the scheduler drops what is older. */
  TALLY_RETENTION_API_LOGS_DAYS: intFromEnv(30),
  TALLY_RETENTION_ERROR_LOGS_DAYS: intFromEnv(90),
  TALLY_RETENTION_PERFORMANCE_METRICS_DAYS: intFromEnv(90),
  TALLY_RETENTION_ANALYTICS_DAYS: intFromEnv(400),
  // Analytics per-caller bounds (docs/analytics.md): a user's key must not be able to fill the table.
  /** Events per POST /v1/analytics/events (the body schema allows at most 100). */
  TALLY_ANALYTICS_BATCH_MAX: intFromEnv(ANALYTICS_CEILINGS.batchMax).refine((v) => v >= 1 && v <= ANALYTICS_CEILINGS.batchMax, `must be between 1 and ${ANALYTICS_CEILINGS.batchMax}`),
  /** Bytes of JSON in one event's properties (the table's CHECK allows at most 16384). */
  TALLY_ANALYTICS_PROPERTIES_MAX_BYTES: intFromEnv(ANALYTICS_CEILINGS.propertiesMaxBytes).refine(
    (v) => v >= 2 && v <= ANALYTICS_CEILINGS.propertiesMaxBytes,
    `must be between 2 and ${ANALYTICS_CEILINGS.propertiesMaxBytes}`,
  ),
  /** Events each user (all their keys and sessions together) may send per window; the service is not limited. */
  TALLY_RATE_LIMIT_ANALYTICS_EVENTS_PER_USER: rateFromEnv('600/60'),
  // Storage (docs/storage.md): local disk under TALLY_DATA_DIR/storage by default, or S3-compatible.
  TALLY_STORAGE_DRIVER: z.enum(['local', 's3']).default('local'),
  /** Where the local driver keeps objects (default: <TALLY_DATA_DIR>/storage). */
  TALLY_STORAGE_ROOT: optionalString,
  TALLY_S3_ENDPOINT: optionalString.refine((v) => v === undefined || isHttpUrl(v), 'must be an http(s) URL'),
  TALLY_S3_REGION: z.string().default('us-east-1'),
  TALLY_S3_BUCKET: optionalString,
  TALLY_S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).default('false'),
  TALLY_S3_ACCESS_KEY_ID: optionalString,
  TALLY_S3_SECRET_ACCESS_KEY: optionalString,
  /** The base URL signed storage links are made with (default: the request's own scheme and host). */
  TALLY_PUBLIC_URL: optionalString.refine((v) => v === undefined || isHttpUrl(v), 'must be an http(s) URL'),
});

export type RawEnv = z.infer<typeof envSchema>;

/** The frozen configuration handed to the composition root. */
export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly http: {
    readonly port: number;
    readonly host: string;
    readonly bodyLimit: number;
    /** Fastify's trustProxy: whose X-Forwarded-For gives the client address the rate limits key on (absent: none). */
    readonly trustProxy?: boolean | string;
    /** Per-request deadline in ms (0: none): past it the caller gets 503 and may retry with the same key. */
    readonly deadlineMs?: number;
    /** One log line per answered request (default), or none. */
    readonly requestLog?: boolean;
    /** How many server processes `tally start` runs on the port (default 1; PostgreSQL only). */
    readonly processes?: number;
  };
  readonly database:
    | ({ readonly kind: 'postgres'; readonly url: string; readonly poolMax: number; readonly schema: string } & PostgresOptions)
    | { readonly kind: 'pglite'; readonly dataDir: string | null; readonly schema: string };
  readonly dataDir: string;
  readonly auth: {
    readonly serviceKey: string;
    readonly jwtSecret: string;
    readonly jwtTtlSeconds: number;
    readonly refreshTtlSeconds: number;
    /**
     * argon2id's cost; absent = PRODUCTION_PASSWORD_HASHING (m=64 MiB, t=3, p=4). Never read from the
     * environment (loadConfig leaves it out): only the test harness sets a cheaper one.
     */
    readonly passwordHashing?: PasswordHashing;
    /** API keys kept in process once resolved (api-keys.resolver.ts); absent = the defaults, 10 s and 50,000. */
    readonly keyCache?: { readonly ttlMs: number; readonly maxEntries: number };
  };
  readonly encryptionKey: Buffer;
  /** Retired keys that still open values sealed before a rotation (none by default). */
  readonly encryptionKeysOld?: readonly Buffer[];
  /**
   * AI jobs: the provider-callback signing secret, its timestamp tolerance, and secrets of their own
   * for some providers (a job whose `provider` is named here verifies with that secret, never the global one).
   */
  readonly jobs: {
    readonly callbackSecret: string;
    readonly callbackToleranceSeconds: number;
    readonly providerSecrets?: Readonly<Record<string, string>>;
  };
  /** The background queue's worker. */
  readonly queue?: { readonly pollMs: number };
  /**
   * Days analytics events are kept (absent: 400; 0: forever; docs/analytics.md): how old an event's
   * occurred_at may be. The same TALLY_RETENTION_ANALYTICS_DAYS the retention deletes by
   * (observability.retentionDays.analytics_events).
   */
  readonly analyticsRetentionDays?: number;
  readonly credits: {
    readonly balanceCap: number | null;
    readonly signupBonus: number;
    /** The low-balance threshold of accounts that set none (0 = none; docs/webhooks-out.md). */
    readonly lowThreshold?: number;
    /** Most operations in one ledger transaction. */
    readonly maxBatch?: number;
    /** Most ledger transactions in flight (default 2 on PostgreSQL: fewer, bigger batches beat more, smaller ones; 1 on PGlite). */
    readonly maxParallel?: number;
    /** Most operations waiting in this process; past it new ones get 503 `unavailable` (default 10,000). */
    readonly maxBacklog?: number;
  };
  /** Billing; optional so that callers that do not bill (tests of other modules) may leave it out. */
  readonly billing?: BillingConfig;
  readonly logLevel: RawEnv['LOG_LEVEL'];
  /** Rate limits for strangers (login, sign-up, failed authentication and signatures); absent = none (tests, bench). */
  readonly rateLimits?: RateLimitsConfig;
  /** Payment providers; absent (or a provider null) = not configured. */
  readonly payments?: PaymentsConfig;
  /** E-mail verification tokens (docs/auth.md); absent = 24 hours, no link template. */
  readonly emailVerification?: EmailVerificationConfig;
  /** Outgoing mail; absent (or no smtpUrl) = mail is written to the log. */
  readonly mail?: MailConfig;
  /** Outgoing webhooks (docs/webhooks-out.md); absent = DEFAULT_WEBHOOKS_OUT. */
  readonly webhooksOut?: WebhooksOutConfig;
  /** The LLM gateway's upstream timeouts, retries and circuit breaker (docs/gateway.md); absent = DEFAULT_GATEWAY. */
  readonly gateway?: GatewayConfig;
  /** Password reset tokens (docs/auth.md); absent = 1 hour, no link template (the mail carries the code). */
  readonly passwordReset?: PasswordResetConfig;
  /** Object storage (docs/storage.md); absent = the local driver under `<dataDir>/storage`. */
  readonly storage?: StorageConfig;
  /** Request and error logs, /metrics and retention (docs/observability.md); absent = no request logs, no metrics token, DEFAULT_RETENTION. */
  readonly observability?: ObservabilityConfig;
  /** Per-caller bounds on analytics events (docs/analytics.md); absent = DEFAULT_ANALYTICS. */
  readonly analytics?: AnalyticsConfig;
}

/** Per-caller bounds on sending analytics events (attacker review A1). */
export interface AnalyticsConfig {
  /** Events per request (≤ ANALYTICS_CEILINGS.batchMax). */
  readonly batchMax: number;
  /** Bytes of JSON in one event's `properties` (≤ ANALYTICS_CEILINGS.propertiesMaxBytes). */
  readonly propertiesMaxBytes: number;
  /** Events per user per window, all their keys and sessions together (null = none); the service is not limited. */
  readonly eventsPerUser: RateLimit | null;
}

export const DEFAULT_ANALYTICS: AnalyticsConfig = {
  batchMax: ANALYTICS_CEILINGS.batchMax,
  propertiesMaxBytes: ANALYTICS_CEILINGS.propertiesMaxBytes,
  eventsPerUser: { max: 600, windowSeconds: 60 },
};

/** argon2id's cost: memory in KiB, passes, lanes. */
export interface PasswordHashing {
  readonly memoryKib: number;
  readonly timeCost: number;
  readonly parallelism: number;
}

/** Request and error logs, the metrics endpoint's token, and how long each log table keeps rows. */
export interface ObservabilityConfig {
  /** api_logs/error_logs writing: null = off. */
  readonly requestLogs: { readonly batchSize: number; readonly flushMs: number; readonly maxBuffered: number } | null;
  /** error_logs writing (5xx answers): on unless TALLY_ERROR_LOGS=off. */
  readonly errorLogs: boolean;
  /** A second bearer token GET /metrics accepts (besides the service key). */
  readonly metricsToken?: string;
  /** Days per table (null = forever); tables not named are kept forever. */
  readonly retentionDays: Readonly<Record<string, number | null>>;
}

/** Retention per table (issue 19): api logs 30 days, errors 90, analytics 400, audit forever. */
export const DEFAULT_RETENTION: Readonly<Record<string, number | null>> = {
  api_logs: 30,
  error_logs: 90,
  performance_metrics: 90,
  analytics_events: 400,
};

/** Where object bytes live: one driver per process (docs/storage.md). */
export type StorageConfig = (
  | { readonly driver: 'local'; readonly root: string }
  | {
      readonly driver: 's3';
      readonly endpoint?: string;
      readonly region: string;
      readonly bucket: string;
      readonly forcePathStyle: boolean;
      readonly accessKeyId?: string;
      readonly secretAccessKey?: string;
    }
) & {
  /** The base URL of signed links (absent: the request's own). */
  readonly publicUrl?: string;
};

/** How Tally talks to a PostgreSQL server; every field has a default (docs/operations.md). */
export interface PostgresOptions {
  /** `auto` (default) probes at start whether DATABASE_URL is a transaction-mode pooler. */
  readonly pooler?: 'auto' | 'none' | 'transaction';
  /** A session connection for LISTEN/NOTIFY when `url` is a transaction-mode pooler. */
  readonly directUrl?: string;
  /** 0 = no bound. Defaults: 10 s per statement, 5 s per lock wait, 5 s for a pooled connection. */
  readonly statementTimeoutMs?: number;
  readonly lockTimeoutMs?: number;
  readonly acquireTimeoutMs?: number;
  /** Shown in pg_stat_activity (default `tally`): which backends an operator may terminate. */
  readonly applicationName?: string;
}

/** At most `max` per `windowSeconds` (a fixed window). */
export interface RateLimit {
  readonly max: number;
  readonly windowSeconds: number;
}

/** Limits for strangers; each null = no limit. */
export interface RateLimitsConfig {
  readonly loginPerIp: RateLimit | null;
  readonly loginPerEmail: RateLimit | null;
  readonly signupPerIp: RateLimit | null;
  readonly signupPerEmail: RateLimit | null;
  /** Password reset requests (each may send a mail); absent = none. */
  readonly resetPerIp?: RateLimit | null;
  readonly resetPerEmail?: RateLimit | null;
  /** POST /v1/checkout and /v1/checkouts/:id/capture per signed-in user (each calls a provider); absent = none. */
  readonly checkoutPerUser?: RateLimit | null;
  /** Unauthenticated failures per IP (counted apart for bearer tokens, each webhook provider, job callbacks). */
  readonly failuresPerIp: RateLimit | null;
  /** Keys each limiter remembers. */
  readonly entries: number;
}

export interface EmailVerificationConfig {
  readonly ttlSeconds: number;
  /** The app's verification page; `{token}` is replaced by the URL-encoded token. */
  readonly urlTemplate: string | null;
  /** Sign-up mails a confirmation and answers 202 either way (docs/auth.md); absent = off. */
  readonly confirmSignup?: boolean;
}

export interface MailConfig {
  readonly smtpUrl: string | null;
  readonly from: string;
}

export interface PasswordResetConfig {
  readonly ttlSeconds: number;
  readonly urlTemplate: string | null;
}

export interface WebhooksOutConfig {
  /** Deliver to loopback and private addresses (development, tests); never in production by default. */
  readonly allowPrivate: boolean;
  readonly timeoutMs: number;
  /** Attempts per delivery: with the queue's backoff (5 s doubling, capped at 1 h), 80 ≈ 3 days. */
  readonly maxAttempts: number;
  /** An endpoint failing without a success for this long is disabled. */
  readonly disableAfterMs: number;
  /** How long the previous secret keeps signing after a rotation (default). */
  readonly rotationGraceSeconds: number;
}

export const DEFAULT_WEBHOOKS_OUT: WebhooksOutConfig = {
  allowPrivate: false,
  timeoutMs: 5_000,
  maxAttempts: 80,
  disableAfterMs: 3 * 86_400_000,
  rotationGraceSeconds: 86_400,
};

export interface GatewayConfig {
  /** Connecting to an upstream. */
  readonly connectTimeoutMs: number;
  /** From sending the request to the upstream's response headers. */
  readonly firstByteTimeoutMs: number;
  /** Longest silence inside a response body (stream). */
  readonly idleTimeoutMs: number;
  /** After the client left mid-stream: how long the upstream is still read for its final usage. */
  readonly drainTimeoutMs: number;
  /** Upstreams tried per request (only before the first byte reaches the client). */
  readonly maxAttempts: number;
  /** How long an upstream's circuit stays open. */
  readonly cooldownMs: number;
  /** Consecutive failures that open an upstream's circuit. */
  readonly failureThreshold: number;
  /** A request still pending this long after it started is settled by the reaper (its process died). */
  readonly reapAfterMs: number;
  /**
   * A live process renews its in-flight requests' lease every third of this; the reaper settles a
   * pending request only once its lease has run out (so a long stream is never reaped mid-flight).
   */
  readonly leaseMs?: number;
  /**
   * Upstream hosts that sell priority capacity through `service_tier`: every request to them is sent
   * with the standard tier named (OpenAI `default`, Anthropic `standard_only`), so an organization or
   * project whose default is a dearer tier is never billed it (docs/gateway.md, "What is relayed").
   */
  readonly standardTierHosts?: readonly string[];
}

export const DEFAULT_GATEWAY: GatewayConfig = {
  connectTimeoutMs: 5_000,
  firstByteTimeoutMs: 60_000,
  idleTimeoutMs: 60_000,
  drainTimeoutMs: 30_000,
  maxAttempts: 3,
  cooldownMs: 30_000,
  failureThreshold: 3,
  reapAfterMs: 3_600_000,
  leaseMs: 60_000,
  standardTierHosts: ['api.openai.com', 'api.anthropic.com'],
};

export const DEFAULT_MAIL: MailConfig = { smtpUrl: null, from: 'Tally <no-reply@localhost>' };
export const DEFAULT_PASSWORD_RESET: PasswordResetConfig = { ttlSeconds: 3600, urlTemplate: null };

export const DEFAULT_EMAIL_VERIFICATION: EmailVerificationConfig = { ttlSeconds: 86_400, urlTemplate: null };

export type PaymentsMode = 'live' | 'test' | 'any';

export interface PaymentsConfig {
  readonly stripe: { readonly webhookSecrets: readonly string[] } | null;
  readonly lemonsqueezy: { readonly webhookSecret: string } | null;
  readonly creem: { readonly webhookSecret: string } | null;
  readonly paypal: { readonly webhookId: string; readonly clientId: string; readonly clientSecret: string; readonly apiBase: string } | null;
  /** How old a signed timestamp (Stripe's `t=`) may be, in seconds. */
  readonly toleranceSeconds: number;
  /** Events of the other mode (a provider's test mode in a live deployment) grant nothing: recorded as ignored. Absent: `any`. */
  readonly mode?: PaymentsMode;
  /** Whether an unsigned metadata `user_id` may match a payment to a user (absent: true). */
  readonly unsignedUserIds?: boolean;
  /** Credits a payment buys when neither metadata nor a package says: floor(amount / unitAmount). */
  readonly creditPrice: { readonly unitAmount: number; readonly currency: string } | null;
  /** API credentials for creating checkouts (POST /v1/checkout); absent (or a provider null) = not configured. */
  readonly checkout?: CheckoutConfig;
}

/** Each provider's API, for the checkouts Tally creates and signs (docs/payments.md, "Checkouts"). */
export interface CheckoutConfig {
  /** `apiBase`: https://api.stripe.com, or a test's local fake. */
  readonly stripe: { readonly secretKey: string; readonly apiBase: string } | null;
  readonly lemonsqueezy: { readonly apiKey: string; readonly storeId: string; readonly apiBase: string } | null;
  readonly creem: { readonly apiKey: string; readonly apiBase: string } | null;
  readonly paypal: { readonly clientId: string; readonly clientSecret: string; readonly apiBase: string } | null;
}

export interface BillingConfig {
  /** Credit classes plans and cost models may name (000's BC, RC, Usage by default). */
  readonly creditClasses: readonly string[];
  /** The deployment's time zone: a user without one has their daily free quota reset by it. */
  readonly timeZone: string;
  /** The daily free quota a new cost model of one of `freeQuotaMetrics` gets when none is given. */
  readonly dailyFreeQuota: number;
  readonly freeQuotaMetrics: readonly string[];
  /** Code runs are billed as usage events of this metric when set (docs/ide.md, "Billing runs"); absent = not billed. */
  readonly codeExecutionMetric?: string;
  /**
   * A billed run's hold: the price of this many ms is reserved when it starts, and the run is
   * charged at most that (docs/ide.md, "Billing runs"). Absent: 60,000 (a minute).
   */
  readonly codeExecutionHoldMs?: number;
  /** POST /v1/check's in-process snapshots (docs/billing.md, "Entitlement checks"); absent = off. */
  readonly checkCache?: { readonly ttlMs: number; readonly maxEntries: number };
}

export const DEFAULT_BILLING: BillingConfig = {
  creditClasses: ['BC', 'RC', 'Usage'],
  timeZone: 'UTC',
  dailyFreeQuota: 3,
  freeQuotaMetrics: ['autofix'],
  checkCache: { ttlMs: 30_000, maxEntries: 20_000 },
};

function isHttpUrl(v: string): boolean {
  try {
    const url = new URL(v);
    return url.protocol === 'https:' || url.protocol === 'http:';
  } catch {
    return false;
  }
}

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; throws a ConfigError naming every bad variable. */
export function parseEnv(env: NodeJS.ProcessEnv): RawEnv {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

export function decodeEncryptionKey(value: string): Buffer {
  const key = /^[0-9a-f]{64}$/i.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64');
  if (key.length !== 32) throw new ConfigError('TALLY_ENCRYPTION_KEY must decode to 32 bytes');
  return key;
}
