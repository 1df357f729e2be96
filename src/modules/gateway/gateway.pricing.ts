import type { Tokens } from './gateway.js';

/**
 * Prices of one model, from its cost model (`cost_models` row `llm:<model>`, metadata.gateway):
 * credits per million tokens by category and a per-request fee in credits, each a decimal with at
 * most six places. Kept as integers of pico-credits (1e-12) per token, so every cost is computed
 * without floats: cost in micro-credits = ceil(Σ tokens × price / 1e6).
 */
export interface ModelPrice {
  metric: string;
  input: bigint;
  cachedInput: bigint;
  cacheWrite: bigint;
  /** One-hour cache writes; null: the price names none, so requests asking for them are refused (G8). */
  cacheWrite1h: bigint | null;
  output: bigint;
  reasoning: bigint;
  /** Per request, in pico-credits. */
  requestFee: bigint;
  /** The most output tokens a request may produce when it names no max_tokens. */
  maxOutputTokens: number;
  /**
   * The input-token bound of one image part (its pixels are billed as tokens the body's bytes do not
   * bound); null: image parts are refused. No default: a high-detail image costs up to several
   * thousand tokens depending on the model and its size, so only the operator can name it (G9).
   */
  maxTokensPerImage: number | null;
  /** The input-token bound of one file, document or audio part; null: such parts are refused. */
  maxTokensPerFile: number | null;
}

export const priceMetric = (model: string): string => `llm:${model}`;
export const DEFAULT_MAX_OUTPUT_TOKENS = 4096;
const PICO_PER_MICRO = 1_000_000n;

/** `0.15`, `"2.5"`, `3` → the same value × 1e6 as an integer; null for anything else (negative, >6 places, exponent). */
export function decimalTimesMillion(v: unknown): bigint | null {
  const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : typeof v === 'string' ? v.trim() : null;
  if (s === null) return null;
  const m = /^(\d{1,12})(?:\.(\d{1,6}))?$/.exec(s);
  if (!m) return null;
  return BigInt(m[1] ?? '0') * 1_000_000n + BigInt((m[2] ?? '').padEnd(6, '0'));
}

export type PriceResult = { ok: true; price: ModelPrice } | { ok: false; reason: string };

/** Reads a cost model's gateway prices; anything missing or malformed is a refusal, never a free model. */
export function priceOf(metric: string, isActive: boolean, metadata: unknown): PriceResult {
  if (!isActive) return { ok: false, reason: `the cost model ${metric} is inactive` };
  const g = (metadata as { gateway?: unknown } | null)?.gateway;
  if (!g || typeof g !== 'object') return { ok: false, reason: `the cost model ${metric} has no gateway prices (metadata.gateway)` };
  const p = g as Record<string, unknown>;
  const input = decimalTimesMillion(p['input']);
  const output = decimalTimesMillion(p['output']);
  if (input === null || output === null) return { ok: false, reason: `the cost model ${metric} needs metadata.gateway.input and .output (credits per million tokens)` };
  const opt = (k: string, dflt: bigint): bigint | null => (p[k] === undefined ? dflt : decimalTimesMillion(p[k]));
  const cachedInput = opt('cached_input', input);
  const cacheWrite = opt('cache_write', input);
  const reasoning = opt('reasoning', output);
  const cacheWrite1h = p['cache_write_1h'] === undefined ? null : decimalTimesMillion(p['cache_write_1h']);
  if (p['cache_write_1h'] !== undefined && cacheWrite1h === null) return { ok: false, reason: `the cost model ${metric} has a malformed gateway price` };
  const requestFee = opt('request_fee', 0n);
  if (cachedInput === null || cacheWrite === null || reasoning === null || requestFee === null) {
    return { ok: false, reason: `the cost model ${metric} has a malformed gateway price` };
  }
  const maxOut = p['max_output_tokens'];
  const maxOutputTokens = typeof maxOut === 'number' && Number.isSafeInteger(maxOut) && maxOut > 0 ? maxOut : DEFAULT_MAX_OUTPUT_TOKENS;
  // The request fee is in credits: × 1e6 already, × 1e6 more to pico-credits.
  const count = (k: string): number | null | undefined => {
    const v = p[k];
    if (v === undefined) return undefined;
    return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : null;
  };
  const perImage = count('max_tokens_per_image');
  const perFile = count('max_tokens_per_file');
  if (perImage === null || perFile === null) return { ok: false, reason: `the cost model ${metric} has a malformed max_tokens_per_image or max_tokens_per_file` };
  return {
    ok: true,
    price: {
      metric, input, cachedInput, cacheWrite, cacheWrite1h, output, reasoning, requestFee: requestFee * PICO_PER_MICRO, maxOutputTokens,
      maxTokensPerImage: perImage ?? null,
      maxTokensPerFile: perFile ?? null,
    },
  };
}

/**
 * The price of a one-hour cache write: the cost model's `cache_write_1h`, else — for writes a
 * provider reports though no request asked for them — Anthropic's rate, twice the input price, or the
 * cache_write price if dearer: never the five-minute price (G8).
 */
export function cacheWrite1hOf(price: ModelPrice): bigint {
  if (price.cacheWrite1h !== null) return price.cacheWrite1h;
  const twice = 2n * price.input;
  return twice > price.cacheWrite ? twice : price.cacheWrite;
}

/** The exact cost of a request in micro-credits (rounded up once, per request). */
export function costMicros(price: ModelPrice, t: Tokens): number {
  const oneHour = Math.min(t.cacheWrite1h, t.cacheWrite);
  const pico =
    BigInt(t.input) * price.input +
    BigInt(t.cachedInput) * price.cachedInput +
    BigInt(t.cacheWrite - oneHour) * price.cacheWrite +
    BigInt(oneHour) * cacheWrite1hOf(price) +
    BigInt(t.output) * price.output +
    BigInt(t.reasoning) * price.reasoning +
    price.requestFee;
  return Number((pico + PICO_PER_MICRO - 1n) / PICO_PER_MICRO);
}

/**
 * The most a request can cost, in micro-credits: its input bounded by the body's UTF-8 size (no
 * tokenizer makes more tokens than bytes, plus a few per message), at the dearest input price; its
 * output at max_tokens (or the model's limit) at the dearest output price; the fee.
 */
export function maxCostMicros(price: ModelPrice, inputBound: number, maxOutput: number, oneHourCache = false): number {
  // One-hour cache writes only for a request that asks for them (the price names them, or it was refused).
  const inPrice = [price.input, price.cachedInput, price.cacheWrite, oneHourCache ? cacheWrite1hOf(price) : 0n].reduce((a, b) => (a > b ? a : b));
  const outPrice = price.output > price.reasoning ? price.output : price.reasoning;
  const pico = BigInt(inputBound) * inPrice + BigInt(maxOutput) * outPrice + price.requestFee;
  return Number((pico + PICO_PER_MICRO - 1n) / PICO_PER_MICRO);
}

/** Whole credits to hold for a cost bound (at least one: a hold is never for nothing). */
export const holdCredits = (micros: number): number => Math.max(1, Math.ceil(micros / 1_000_000));

/** The input-token bound of a body: its UTF-8 bytes plus 8 per message (role and framing). */
export function inputBoundOf(rawBytes: number, messages: number): number {
  return rawBytes + 8 * messages + 16;
}
