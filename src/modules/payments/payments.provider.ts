import type { PaymentsConfig } from '../../config/config.js';
import type { NormalizedEvent } from './payments.js';

/**
 * The payment providers Tally takes webhooks from — the one declaration of this closed union.
 * Everything else derives from it: the API's `provider` schemas (payments.ts), the registry that
 * must hold one plug-in per name (payments.providers.ts, a compile error otherwise), billing's
 * `plan_prices.provider`. The database's check constraints repeat it (migrations are immutable
 * SQL): adding a provider takes a migration too (docs/payments.md, "Code map").
 *
 * This file imports types only, so any module may import the list without loading a provider.
 */
import { PROVIDERS, type ProviderName } from '../../core/providers.js';

export { PROVIDERS, type ProviderName };

/**
 * The outcome of verifying a delivery: a value, not an exception (STYLE.md). A rejection's reason
 * comes from a fixed set of texts in code (never from the delivery), since rejected rows are
 * counted per (provider, reason): strangers cannot grow the table. `payload` is undefined for a
 * verified body that is not JSON (answered as malformed, not as forged).
 */
export type Verification = { ok: true; payload: unknown } | { ok: false; reason: string };

/** Request headers as Fastify gives them (repeated headers are arrays; the first counts). */
export type Headers = Record<string, string | string[] | undefined>;

/** Verifies one delivery against this server's settings for its provider. */
export type DeliveryVerifier = (raw: Buffer, headers: Headers) => Verification | Promise<Verification>;

/**
 * One payment provider, as a plug-in: everything Tally knows about a provider is here (and in the
 * provider's own file), so the webhook pipeline, matching and the ledger never ask which provider
 * they are serving. The rest of Tally sees only `NormalizedEvent`s — provider-neutral actions.
 */
export interface PaymentProvider<P extends ProviderName = ProviderName> {
  readonly name: P;
  /** How people write it ("PayPal"), for messages. */
  readonly title: string;
  /** The header carrying the delivery's signature: its latest value is kept on rejected rows. */
  readonly signatureHeader: string;
  /** The settings that configure it, named in the 503 an unconfigured provider answers. */
  readonly settings: string;
  /**
   * A verifier built once from this server's configuration (it may keep state: PayPal's token and
   * its cache of answers), or null when the provider is not configured. Verification runs before
   * any transaction opens, may be an HTTP call, and says why a delivery is rejected as a value;
   * it throws `VerificationUnavailable` only when the provider cannot be asked (then 503, retried).
   */
  verifier(config: PaymentsConfig | undefined, clock: () => Date): DeliveryVerifier | null;
  /**
   * A verified payload → its event id, type and Tally's actions. Throws `MalformedEvent` when a
   * field it needs is missing (a signed payload Tally cannot read).
   */
  normalize(payload: unknown): NormalizedEvent;
  /**
   * Best-effort event id ('' when none) and type (anything; non-strings read as unknown) of a
   * payload `normalize` refused, so the failure can still be keyed and logged — and a payload
   * without even an id is rejected instead, since it could never be processed exactly once.
   */
  eventIdOf(payload: unknown): string;
  eventTypeOf(payload: unknown): unknown;
  /**
   * Whether the provider sent this from its live or its test mode, when the payload says so
   * (Stripe's `livemode`, Lemon Squeezy's `meta.test_mode`); null when it cannot tell.
   */
  modeOf?(payload: unknown): 'live' | 'test' | null;
}

/**
 * The provider could not be asked whether a delivery is genuine (PayPal unreachable, or an odd
 * answer): an outage, not a verdict — answered 503 so the provider retries, never cached.
 */
export class VerificationUnavailable extends Error {
  override name = 'VerificationUnavailable';
}

/** The envelope's top-level `id` when it is a string (Stripe, Creem and PayPal put it there). */
export function topLevelId(payload: unknown): string {
  const p = (payload ?? {}) as Record<string, unknown>;
  return typeof p['id'] === 'string' ? p['id'] : '';
}
