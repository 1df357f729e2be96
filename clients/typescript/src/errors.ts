import type { components } from './api.gen.js';

/** Every code Tally answers with: the closed catalogue of its error envelope. */
export type ErrorCode = components['schemas']['Error']['error']['code'];

/**
 * An answer from Tally's error catalogue (`{error: {code, message, request_id, details}}`), or a
 * request that never got an answer (`code: 'network'`, status 0). `details` is the catalogue's
 * structured part, e.g. `{needed, available}` for `insufficient_credits`.
 */
export class TallyError extends Error {
  override readonly name = 'TallyError';
  constructor(
    readonly status: number,
    readonly code: ErrorCode | 'network',
    message: string,
    readonly details: Record<string, unknown>,
    readonly requestId: string | null,
  ) {
    super(message);
  }

  /** Narrows to one code: `if (TallyError.is(err, 'insufficient_credits')) …`. */
  static is<C extends ErrorCode | 'network'>(err: unknown, code?: C): err is TallyError & { code: C } {
    return err instanceof TallyError && (code === undefined || err.code === code);
  }

  /** The error a response carries; a body that is not Tally's envelope becomes `internal`. */
  static fromResponse(status: number, body: unknown): TallyError {
    const e = (body as { error?: { code?: unknown; message?: unknown; request_id?: unknown; details?: unknown } } | null)?.error;
    if (e && typeof e.code === 'string' && typeof e.message === 'string') {
      const details = e.details && typeof e.details === 'object' ? (e.details as Record<string, unknown>) : {};
      return new TallyError(status, e.code as ErrorCode, e.message, details, typeof e.request_id === 'string' ? e.request_id : null);
    }
    return new TallyError(status, 'internal', `HTTP ${status} without Tally's error envelope`, {}, null);
  }
}
