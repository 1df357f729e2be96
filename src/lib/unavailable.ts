/**
 * Something Tally depends on is away or saturated: the database restarting, a pooled connection
 * not to be had in time, a lock or statement past its bound, a backlog past its limit. The request
 * did nothing that committed (or, where the commit's answer was lost, its Idempotency-Key replays
 * what it did), so the caller may retry. HTTP renders it as 503 `unavailable`.
 */
export class Unavailable extends Error {
  override name = 'Unavailable';
  constructor(
    message: string,
    /** Why, for logs and `details.reason`. */
    readonly reason: 'database' | 'timeout' | 'contention' | 'backlog' | 'shutting_down',
  ) {
    super(message);
  }
}
