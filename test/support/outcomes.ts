import type { Outcome } from '../../src/modules/idempotency/idempotency.js';

/** An outcome in one word: `created`, `ok`, or the refusal's error code. */
export const answerOf = (r: Outcome): string => (r.ok ? (r.created ? 'created' : 'ok') : r.error.code);
