import { errors, type DomainError } from '../../core/errors.js';
import type { Executor } from '../../db/database.js';
import { modelMatches } from './gateway.js';
import { keyInFlight, keyLockForLimits, keyWindowAdd, keyWindows, type LiveKeyNow } from './gateway.key-limits.repository.js';

// The limits are read with the key (api-keys.resolver.ts, one lookup per request); enforced here.
import { type KeyLimits, limitsOf } from '../api-keys/api-keys.resolver.js';

export type { KeyLimits };

export const NO_LIMITS: KeyLimits = { models: null, rpm: null, tpm: null, maxConcurrency: null, budget: null };

/** Does any limit need the key's counters (and so its row lock)? The allow-list does not. */
export const counted = (l: KeyLimits): boolean => l.rpm !== null || l.tpm !== null || l.maxConcurrency !== null || l.budget !== null;

/** The allow-list: a key limited to some models may not name another (checked before anything is held). */
export function assertModelAllowed(limits: KeyLimits, model: string): void {
  if (limits.models !== null && !modelMatches(model, limits.models)) {
    throw errors.forbidden(`This API key may not use model ${model}`);
  }
}

/**
 * The key as the hold's transaction reads it (`keysLiveNow`), against what the cached lookup said:
 * refused when it is no longer live, no longer holds `gateway`, names another workspace, or may no
 * longer use the model; else its limits now (a PATCH may have set some the cached copy lacks).
 * Attacker review 5: the cache may lag Tally's own changes, money may not.
 */
export function keyNowAllows(now: LiveKeyNow | undefined, caller: { userId: string; workspaceId: string | null }, model: string): KeyLimits | DomainError {
  if (!now || now.user_id !== caller.userId || now.workspace_id !== caller.workspaceId) return errors.unauthenticated('API key is invalid, revoked or expired');
  if (!now.scopes.includes('*') && !now.scopes.includes('gateway')) return errors.forbidden('This API key lacks the "gateway" scope the gateway needs');
  const limits = limitsOf(now);
  if (limits.models !== null && !modelMatches(model, limits.models)) return errors.forbidden(`This API key may not use model ${model}`);
  return limits;
}

export const MINUTE_MS = 60_000;
const MICROS = 1_000_000;
export const minuteOf = (at: Date): Date => new Date(Math.floor(at.getTime() / MINUTE_MS) * MINUTE_MS);

/**
 * Use over the last 60 seconds, estimated from two fixed minutes: the previous one weighted by the
 * part of it still inside the window, plus the current one. A fixed window alone would let a key
 * send twice its limit across a minute boundary.
 */
export function slidingUse(previous: number, current: number, at: Date): number {
  const elapsed = (at.getTime() % MINUTE_MS) / MINUTE_MS;
  return previous * (1 - elapsed) + current;
}

/** Whole seconds until the current minute ends: when the previous one's weight has gone. */
const retryAfter = (at: Date): number => Math.max(1, Math.ceil((MINUTE_MS - (at.getTime() % MINUTE_MS)) / 1000));

export interface Admission {
  /** The minute the request was counted in and the tokens it reserved there (trued up at settlement). */
  windowStart: Date | null;
  reservedTokens: number;
}

export interface KeyState {
  inFlight: number;
  heldInFlight: number;
  /** The key's exact gateway spend so far, in micro-credits. */
  spentMicros: number;
  previous: { requests: number; tokens: number };
  current: { requests: number; tokens: number };
}

/** The rules, pure: the first limit a request would pass, or null when it may go. */
export function refusal(limits: KeyLimits, state: KeyState, req: { held: number; tokens: number }, at: Date): DomainError | null {
  if (limits.maxConcurrency !== null && state.inFlight + 1 > limits.maxConcurrency) {
    return errors.rateLimited(`This API key allows ${limits.maxConcurrency} requests in flight; wait for one to finish`, { limit: 'max_concurrency', retry_after_seconds: 1 });
  }
  if (limits.rpm !== null && slidingUse(state.previous.requests, state.current.requests, at) + 1 > limits.rpm) {
    return errors.rateLimited(`This API key allows ${limits.rpm} requests per minute`, { limit: 'rpm', retry_after_seconds: retryAfter(at) });
  }
  if (limits.tpm !== null) {
    if (req.tokens > limits.tpm) {
      return errors.invalidRequest(`This request may use up to ${req.tokens} tokens, more than the key's ${limits.tpm} tokens per minute; send less or lower max_tokens`, { field: 'body.max_tokens', limit: 'tpm' });
    }
    if (slidingUse(state.previous.tokens, state.current.tokens, at) + req.tokens > limits.tpm) {
      return errors.rateLimited(`This API key allows ${limits.tpm} tokens per minute`, { limit: 'tpm', retry_after_seconds: retryAfter(at) });
    }
  }
  // In micro-credits: what the key spent exactly, plus what its open holds and this one may still
  // spend, never above the budget — so no run of small requests can pass it by fractions.
  if (limits.budget !== null && state.spentMicros + (state.heldInFlight + req.held) * MICROS > limits.budget * MICROS) {
    const left = Math.max(0, Math.floor((limits.budget * MICROS - state.spentMicros) / MICROS) - state.heldInFlight);
    return errors.budgetExceeded(`This API key's credit budget (${limits.budget}) does not cover this request (up to ${req.held} credits; ${left} left)`, { budget: limits.budget, used: Math.floor(state.spentMicros / MICROS), used_micros: state.spentMicros, held: state.heldInFlight, needed: req.held });
  }
  return null;
}

/**
 * Admits one request against its key's counted limits, inside the transaction that takes its hold:
 * the key's row lock makes concurrent requests of one key pass here one at a time, and what they
 * count (in flight, held, spent, the minute's requests and tokens) is all committed or all rolled
 * back with the hold. Limits are re-read under the lock, so a change by the service applies at once.
 */
export async function admit(trx: Executor, keyId: string, req: { held: number; tokens: number }, at: Date): Promise<Admission> {
  const row = await keyLockForLimits(trx, keyId);
  if (!row) throw errors.unauthenticated('API key is invalid, revoked or expired');
  const limits = limitsOf(row);
  if (!counted(limits)) return { windowStart: null, reservedTokens: 0 };
  const current = minuteOf(at);
  const previous = new Date(current.getTime() - MINUTE_MS);
  const needsWindow = limits.rpm !== null || limits.tpm !== null;
  const needsFlight = limits.maxConcurrency !== null || limits.budget !== null;
  const windows = needsWindow ? await keyWindows(trx, keyId, previous, current) : [];
  const flight = needsFlight ? await keyInFlight(trx, keyId) : { requests: 0, held: 0 };
  const at0 = (start: Date) => {
    const w = windows.find((r) => r.window_start.getTime() === start.getTime());
    return { requests: w ? Number(w.requests) : 0, tokens: w ? Number(w.tokens) : 0 };
  };
  const state: KeyState = { inFlight: flight.requests, heldInFlight: flight.held, spentMicros: Number(row.gateway_spent_micros), previous: at0(previous), current: at0(current) };
  const refused = refusal(limits, state, req, at);
  if (refused) throw refused;
  if (!needsWindow) return { windowStart: null, reservedTokens: 0 };
  const reserved = limits.tpm !== null ? req.tokens : 0;
  await keyWindowAdd(trx, keyId, current, reserved);
  return { windowStart: current, reservedTokens: reserved };
}
