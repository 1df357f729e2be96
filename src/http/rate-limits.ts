import rateLimit, { type CreateRateLimitOptions, normalizeIP } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RateLimit, RateLimitsConfig } from '../config/config.js';
import { errors } from '../core/errors.js';
import { principalOf } from './route.js';

/**
 * Throttles for strangers (docs/architecture.md, "Rate limits"), on @fastify/rate-limit's counters
 * (in process, fixed windows, an LRU of keys). Two kinds of use:
 *
 * - `hit`: every attempt counts (login and sign-up run argon2id, so the attempt is the cost);
 * - `check` before the work, `fail` after a failure: only failures count (bad bearer tokens, bad
 *   webhook and callback signatures), so a provider's genuine deliveries or a caller's valid
 *   credentials never use up a budget; once `max` failures are spent the key gets 429 until the
 *   window ends, before any database lookup, outbound call or write.
 *
 * One limit is for signed-in users, not strangers: checkouts and captures (each calls a payment
 * provider's API), keyed by the user (`checkoutPerUser`).
 *
 * Nothing here runs on the service key's path: authentication matches the service key before it
 * asks the token throttle anything (src/http/authenticate.ts).
 */
export class Throttle {
  constructor(
    private readonly limiter: ReturnType<FastifyInstance['createRateLimit']>,
    private readonly what: string,
  ) {}

  /** Counts this attempt; 429 once it is over the limit. */
  async hit(request: FastifyRequest): Promise<void> {
    const r = await this.limiter(request);
    if (!r.isAllowed && r.isExceeded) throw limited(this.what, r.ttlInSeconds);
  }

  /** 429 if the key has already spent its failures, without counting this request. */
  async check(request: FastifyRequest): Promise<void> {
    const r = await this.limiter(request, { increment: false });
    if (!r.isAllowed && r.remaining <= 0) throw limited(this.what, r.ttlInSeconds);
  }

  /** Counts a failure; true when that spent the budget (the caller may answer 429 at once). */
  async fail(request: FastifyRequest): Promise<{ exceeded: boolean; retryAfter: number }> {
    const r = await this.limiter(request);
    return r.isAllowed ? { exceeded: false, retryAfter: 0 } : { exceeded: r.isExceeded, retryAfter: r.ttlInSeconds };
  }

  /** The 429 for a key whose failures are spent. */
  limited(retryAfter: number) {
    return limited(this.what, retryAfter);
  }
}

export interface Throttles {
  loginPerIp: Throttle | null;
  loginPerEmail: Throttle | null;
  signupPerIp: Throttle | null;
  signupPerEmail: Throttle | null;
  /** Password reset requests: each may send a mail, so strangers are limited per address and per e-mail. */
  resetPerIp: Throttle | null;
  resetPerEmail: Throttle | null;
  /** Checkouts and captures per signed-in user: each calls the provider's API (never the service key). */
  checkoutPerUser: Throttle | null;
  /** Failed authentication (a bearer token that is not valid) per IP. */
  tokenFailures: Throttle | null;
  /** Webhook deliveries that fail verification, per provider and IP. */
  webhookFailures: Throttle | null;
  /** Job callbacks that fail verification (or name no job), per IP. */
  callbackFailures: Throttle | null;
}

const clientIp = (request: FastifyRequest) => normalizeIP(request.ip);
const bodyEmail = (request: FastifyRequest) => {
  const email = (request.body as { email?: unknown } | null)?.email;
  return typeof email === 'string' ? email.trim().toLowerCase() : '';
};
const principalUser = (request: FastifyRequest) => {
  const principal = principalOf(request);
  return principal?.kind === 'user' ? principal.userId : '';
};
const providerAndIp = (request: FastifyRequest) => `${(request.params as { provider?: string }).provider ?? ''}|${clientIp(request)}`;

/** Registers the plugin (no global limit: nothing runs on routes that do not ask) and builds the throttles. */
export async function createThrottles(server: FastifyInstance, config: RateLimitsConfig): Promise<Throttles> {
  await server.register(rateLimit, { global: false });
  const make = (limit: RateLimit | null, what: string, keyGenerator: (r: FastifyRequest) => string): Throttle | null =>
    limit && limit.max > 0
      ? new Throttle(server.createRateLimit(limiterOptions(limit, keyGenerator, config.entries)), what)
      : null;
  return {
    loginPerIp: make(config.loginPerIp, 'Too many login attempts from this address', clientIp),
    loginPerEmail: make(config.loginPerEmail, 'Too many login attempts for this account', bodyEmail),
    signupPerIp: make(config.signupPerIp, 'Too many sign-ups from this address', clientIp),
    signupPerEmail: make(config.signupPerEmail, 'Too many sign-ups for this e-mail', bodyEmail),
    resetPerIp: make(config.resetPerIp ?? null, 'Too many password reset requests from this address', clientIp),
    resetPerEmail: make(config.resetPerEmail ?? null, 'Too many password reset requests for this e-mail', bodyEmail),
    checkoutPerUser: make(config.checkoutPerUser ?? null, 'Too many checkouts for this user', principalUser),
    tokenFailures: make(config.failuresPerIp, 'Too many failed authentications from this address', clientIp),
    webhookFailures: make(config.failuresPerIp, 'Too many webhook deliveries failed verification from this address', providerAndIp),
    callbackFailures: make(config.failuresPerIp, 'Too many job callbacks failed verification from this address', clientIp),
  };
}

/** `cache` (the LRU's size) is honoured per limiter by the plugin's store, though its types leave it out. */
function limiterOptions(limit: RateLimit, keyGenerator: (r: FastifyRequest) => string, entries: number): CreateRateLimitOptions {
  const options: CreateRateLimitOptions & { cache: number } = { max: limit.max, timeWindow: limit.windowSeconds * 1000, keyGenerator, cache: entries };
  return options;
}

function limited(what: string, retryAfter: number) {
  const seconds = Math.max(1, retryAfter);
  return errors.rateLimited(`${what}; retry in ${seconds} s`, { retry_after_seconds: seconds });
}
