/**
 * The closed catalogue of error codes (../shared/spec/API.md). Each code has exactly one status;
 * domain code raises through the named factories below, one handler renders them.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  unauthenticated: 401,
  insufficient_credits: 402,
  budget_exceeded: 402,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  idempotency_key_reused: 409,
  invalid_state: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  balance_cap_exceeded: 422,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;
export const ERROR_CODES = Object.keys(ERROR_STATUS) as ErrorCode[];

export type ErrorDetails = Record<string, unknown>;

export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: ErrorDetails,
  ) {
    super(message);
    this.status = ERROR_STATUS[code];
  }
}

export interface ErrorBody {
  error: { code: ErrorCode; message: string; request_id: string; details?: ErrorDetails };
}

export function errorBody(err: ApiError, requestId: string): ErrorBody {
  return {
    error: {
      code: err.code,
      message: err.message,
      request_id: requestId,
      ...(err.details ? { details: err.details } : {}),
    },
  };
}

/** Named factories: the only way domain code makes an API error. */
export const errors = {
  invalidRequest: (message: string, details?: ErrorDetails) => new ApiError('invalid_request', message, details),
  unauthenticated: (message = 'Missing or invalid credentials') => new ApiError('unauthenticated', message),
  forbidden: (message = 'You are not allowed to do this') => new ApiError('forbidden', message),
  notFound: (what: string, id: string) => new ApiError('not_found', `${what} ${id} not found`, { id }),
  conflict: (message: string, details?: ErrorDetails) => new ApiError('conflict', message, details),
  idempotencyKeyReused: (
    message = 'This Idempotency-Key was already used with a different request; use a new key for a new request',
  ) => new ApiError('idempotency_key_reused', message),
  invalidState: (message: string, details?: ErrorDetails) => new ApiError('invalid_state', message, details),
  insufficientCredits: (message: string, details?: ErrorDetails) => new ApiError('insufficient_credits', message, details),
  budgetExceeded: (message: string, details?: ErrorDetails) => new ApiError('budget_exceeded', message, details),
  balanceCapExceeded: (message: string, details?: ErrorDetails) => new ApiError('balance_cap_exceeded', message, details),
  payloadTooLarge: (limit: number) =>
    new ApiError('payload_too_large', `Request body exceeds the limit of ${limit} bytes`, { limit }),
  unsupportedMediaType: (type: string | undefined) =>
    new ApiError('unsupported_media_type', `Content-Type ${type ?? '(none)'} is not supported; send application/json`),
  rateLimited: (message = 'Too many requests', details?: ErrorDetails) => new ApiError('rate_limited', message, details),
  internal: () => new ApiError('internal', 'Internal error'),
  unavailable: (message = 'Service unavailable') => new ApiError('unavailable', message),
};
