import type { FastifyError, FastifyInstance } from 'fastify';
import { asUnavailable } from '../db/faults.js';
import { DomainError, errors } from '../core/errors.js';
import { errorBody, statusOf } from './errors.js';
import { noteFailure } from './request-recording.js';

interface PgError {
  code?: string;
  constraint?: string;
  message?: string;
}

/**
 * The one place errors become responses. ApiErrors render as themselves; framework and database
 * errors are translated to the closed catalogue; anything else is a 500 that is logged, with no
 * internals in the body.
 */
export function installErrorHandler(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((err: FastifyError & PgError, request, reply) => {
    const apiError = toApiError(err, bodyLimit, request.headers['content-type']);
    // The error behind a 5xx answer goes to error_logs (src/http/request-recording.ts).
    if (statusOf(apiError.code) >= 500) noteFailure(request, err);
    if (apiError.code === 'unavailable') {
      request.log.warn({ reason: apiError.details?.['reason'], err: err.message }, 'request unavailable');
      void reply.header('retry-after', '1');
    } else if (statusOf(apiError.code) >= 500) request.log.error({ err }, 'request failed');
    // A refusal is an answer: the one request line has its status; its reason is a debug detail.
    else request.log.debug({ code: apiError.code, reason: apiError.message }, 'request rejected');
    // A throttled caller is told when to come back (src/http/rate-limits.ts).
    const retryAfter = apiError.code === 'rate_limited' ? apiError.details?.['retry_after_seconds'] : undefined;
    if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
    return reply.code(statusOf(apiError.code)).send(errorBody(apiError, request.id));
  });
  app.setNotFoundHandler((request, reply) => {
    const err = new DomainError('not_found', `No route for ${request.method} ${request.url.split('?')[0]}`);
    return reply.code(404).send(errorBody(err, request.id));
  });
}

export function toApiError(err: FastifyError & PgError, bodyLimit: number, contentType?: string): DomainError {
  // The media type the caller sent (parameters dropped, bounded), so a 415 says what was refused.
  const mediaType = contentType?.split(';')[0]?.trim().slice(0, 100) || undefined;
  if (err instanceof DomainError) return err;
  // The database away or past a bound: nothing committed (or the key replays what did), retry.
  const away = asUnavailable(err);
  if (away) return new DomainError('unavailable', `${away.message}; retry (with the same Idempotency-Key)`, { reason: away.reason });
  if (err.code === 'FST_ERR_HANDLER_TIMEOUT') {
    return errors.unavailable('The request did not finish within its deadline; it may still complete: retry with the same Idempotency-Key', {
      reason: 'timeout',
    });
  }
  if (err.validation) {
    const first = err.validation[0];
    const where = err.validationContext ?? 'body';
    const field = first?.instancePath ? `${where}${first.instancePath.replace(/\//g, '.')}` : where;
    const extra = first?.params && 'additionalProperty' in first.params ? ` (${String(first.params['additionalProperty'])})` : '';
    return errors.invalidRequest(`${field} ${first?.message ?? 'is invalid'}${extra}`, {
      field,
      issues: err.validation.map((v) => ({ path: v.instancePath, message: v.message, params: v.params })),
    });
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return errors.payloadTooLarge(bodyLimit);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
        ? errors.unsupportedMediaType(mediaType)
        : errors.invalidRequest('Content-Length does not match the body');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return errors.invalidRequest('Body is empty but Content-Type is application/json');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return errors.invalidRequest('Body is not valid JSON');
    // PostgreSQL: the database's own checks, as a safety net behind the service layer's.
    case '23505':
      return errors.conflict('A record with these values already exists', err.constraint ? { constraint: err.constraint } : undefined);
    case '23503':
      return errors.invalidRequest('A referenced record does not exist', err.constraint ? { constraint: err.constraint } : undefined);
    case '23514':
    case '22001':
    case '22P02':
      return errors.invalidRequest('A value is out of range or malformed');
    case '42501':
      return errors.forbidden('Not allowed by row-level security');
  }
  if (err.statusCode === 400 && err instanceof SyntaxError) return errors.invalidRequest('Body is not valid JSON');
  if (err.statusCode === 413) return errors.payloadTooLarge(bodyLimit);
  if (err.statusCode === 415) return errors.unsupportedMediaType(mediaType);
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return errors.invalidRequest(err.message);
  return errors.internal();
}
