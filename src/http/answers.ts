import { DomainError, ERROR_CODES, type ErrorCode } from '../core/errors.js';
import type { AnswerCodec, Outcome, StoredResponse } from '../modules/idempotency/idempotency.js';
import { errorBody, statusOf } from './errors.js';

/**
 * Outcomes as HTTP answers, and back. The ledger and usage record outcomes inside their own
 * transactions through this codec (the composition root hands it to them), so a stored answer is
 * exactly what the caller received — status, body, and the request id of the first attempt.
 */
export const httpAnswers: AnswerCodec = {
  encode(outcome: Outcome): StoredResponse {
    if (outcome.ok) return { status: outcome.created ? 201 : 200, body: outcome.value };
    return { status: statusOf(outcome.error.code), body: errorBody(outcome.error, outcome.requestId) };
  },
  decode(stored: StoredResponse): Outcome {
    if (stored.status < 300) return { ok: true, created: stored.status === 201, value: stored.body };
    const e = (stored.body as { error?: { code?: string; message?: string; request_id?: string; details?: Record<string, unknown> } } | null)?.error;
    const code: ErrorCode = ERROR_CODES.includes(e?.code as ErrorCode) ? (e?.code as ErrorCode) : 'internal';
    return { ok: false, error: new DomainError(code, e?.message ?? 'Internal error', e?.details), requestId: e?.request_id ?? '' };
  },
};

/** An outcome as a route's reply; a replay says so in a header. */
export function replyOf(outcome: Outcome): { status: number; body: unknown; headers?: Record<string, string> } {
  const answer = httpAnswers.encode(outcome);
  return outcome.replayed ? { ...answer, headers: { 'idempotent-replayed': 'true' } } : answer;
}
