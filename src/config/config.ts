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

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === '' ? undefined : v));

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: intFromEnv(8787),
  HOST: z.string().default('127.0.0.1'),
  DATABASE_URL: optionalString,
  DATABASE_POOL_MAX: intFromEnv(20),
  TALLY_DB_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lowercase SQL identifier')
    .default('tally'),
  TALLY_DATA_DIR: z.string().default('./.tally'),
  TALLY_SERVICE_KEY: optionalString.refine((v) => v === undefined || v.length >= 32, 'must be at least 32 characters'),
  TALLY_JWT_SECRET: optionalString.refine((v) => v === undefined || v.length >= 32, 'must be at least 32 characters'),
  TALLY_JWT_TTL_SECONDS: intFromEnv(3600),
  TALLY_ENCRYPTION_KEY: optionalString.refine(
    (v) => v === undefined || /^[A-Za-z0-9+/]{43}=$/.test(v) || /^[0-9a-f]{64}$/i.test(v),
    'must be 32 bytes as base64 (44 chars) or hex (64 chars)',
  ),
  TALLY_BALANCE_CAP: intFromEnv(50_000),
  TALLY_SIGNUP_BONUS: intFromEnv(3),
  TALLY_LEDGER_MAX_BATCH: intFromEnv(256),
  TALLY_LEDGER_MAX_PARALLEL: intFromEnv(0),
  TALLY_BODY_LIMIT_BYTES: intFromEnv(1_048_576),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type RawEnv = z.infer<typeof envSchema>;

/** The frozen configuration handed to the composition root. */
export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly http: { readonly port: number; readonly host: string; readonly bodyLimit: number };
  readonly database:
    | { readonly kind: 'postgres'; readonly url: string; readonly poolMax: number; readonly schema: string }
    | { readonly kind: 'pglite'; readonly dataDir: string | null; readonly schema: string };
  readonly dataDir: string;
  readonly auth: { readonly serviceKey: string; readonly jwtSecret: string; readonly jwtTtlSeconds: number };
  readonly encryptionKey: Buffer;
  readonly credits: {
    readonly balanceCap: number | null;
    readonly signupBonus: number;
    /** Most operations in one ledger transaction. */
    readonly maxBatch?: number;
    /** Most ledger transactions in flight (default 2 on PostgreSQL: fewer, bigger batches beat more, smaller ones; 1 on PGlite). */
    readonly maxParallel?: number;
  };
  readonly logLevel: RawEnv['LOG_LEVEL'];
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
