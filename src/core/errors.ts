/**
 * The closed catalogue of error codes (../shared/spec/API.md), as the domain knows them: a code,
 * a message and details. Which HTTP status a code is answered with is the HTTP layer's business
 * (src/http/errors.ts); domain code raises through the named factories below.
 */
export const ERROR_CODES = [
  'invalid_request',
  'unauthenticated',
  'insufficient_credits',
  'budget_exceeded',
  'forbidden',
  'not_found',
  'conflict',
  'idempotency_key_reused',
  'invalid_state',
  'payload_too_large',
  'unsupported_media_type',
  'balance_cap_exceeded',
  'rate_limited',
  'internal',
  'unavailable',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export type ErrorDetails = Record<string, unknown>;

/** A refusal the caller can act on: one code of the catalogue, a sentence, and structured details. */
export class DomainError extends Error {
  override name = 'DomainError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: ErrorDetails,
  ) {
    super(message);
  }
}

/**
 * A refusal is an answer: the request was wrong for the state it met, nothing changed, and the same
 * request gets the same answer again (so it is recorded under its Idempotency-Key). `internal` and
 * `unavailable` are faults, not answers: retrying may succeed.
 */
export function isRefusal(err: unknown): err is DomainError {
  return err instanceof DomainError && err.code !== 'internal' && err.code !== 'unavailable';
}

/** Named factories: the only way domain code makes an error of the catalogue. */
export const errors = {
  invalidRequest: (message: string, details?: ErrorDetails) => new DomainError('invalid_request', message, details),
  unauthenticated: (message = 'Missing or invalid credentials') => new DomainError('unauthenticated', message),
  forbidden: (message = 'You are not allowed to do this') => new DomainError('forbidden', message),
  notFound: (what: string, id: string) => new DomainError('not_found', `${what} ${id} not found`, { id }),
  conflict: (message: string, details?: ErrorDetails) => new DomainError('conflict', message, details),
  idempotencyKeyReused: (
    message = 'This Idempotency-Key was already used with a different request; use a new key for a new request',
  ) => new DomainError('idempotency_key_reused', message),
  invalidState: (message: string, details?: ErrorDetails) => new DomainError('invalid_state', message, details),
  insufficientCredits: (message: string, details?: ErrorDetails) => new DomainError('insufficient_credits', message, details),
  budgetExceeded: (message: string, details?: ErrorDetails) => new DomainError('budget_exceeded', message, details),
  balanceCapExceeded: (message: string, details?: ErrorDetails) => new DomainError('balance_cap_exceeded', message, details),
  payloadTooLarge: (limit: number) =>
    new DomainError('payload_too_large', `Request body exceeds the limit of ${limit} bytes`, { limit }),
  unsupportedMediaType: (type: string | undefined) =>
    new DomainError('unsupported_media_type', `Content-Type ${type ?? '(none)'} is not supported; send application/json`),
  rateLimited: (message = 'Too many requests', details?: ErrorDetails) => new DomainError('rate_limited', message, details),
  internal: () => new DomainError('internal', 'Internal error'),
  unavailable: (message = 'Service unavailable', details?: ErrorDetails) => new DomainError('unavailable', message, details),
};
