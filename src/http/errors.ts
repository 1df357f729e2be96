import { DomainError, type ErrorCode, type ErrorDetails } from '../core/errors.js';

/** The one map from a domain error code to an HTTP status (../shared/spec/API.md). */
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
} as const satisfies Record<ErrorCode, number>;

export const statusOf = (code: ErrorCode): number => ERROR_STATUS[code];

export interface ErrorBody {
  error: { code: ErrorCode; message: string; request_id: string; details?: ErrorDetails };
}

export function errorBody(err: DomainError, requestId: string): ErrorBody {
  return {
    error: {
      code: err.code,
      message: err.message,
      request_id: requestId,
      ...(err.details ? { details: err.details } : {}),
    },
  };
}

export { DomainError };
