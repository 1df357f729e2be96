import { Unavailable } from '../lib/unavailable.js';

/**
 * Which database failures mean "the database is away or past a bound" rather than "this request is
 * wrong" or "Tally has a bug". Each becomes 503 `unavailable`: nothing the request did committed
 * (or its Idempotency-Key replays what did), so retrying with the same key is safe.
 */
const UNAVAILABLE_SQLSTATES = new Set([
  '57P01', // admin_shutdown: a restart, a failover, pg_terminate_backend
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: starting up or shutting down
  '53300', // too_many_connections
  '08000', '08001', '08003', '08004', '08006', // connection exceptions
]);
const CONTENTION_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);
const TIMEOUT_SQLSTATES = new Set([
  '57014', // query_canceled: statement_timeout
  '55P03', // lock_not_available: lock_timeout
  '25P03', // idle_in_transaction_session_timeout
]);
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** node-postgres reports a lost or never-made connection by message, without a code. */
const CONNECTION_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  'Connection terminated unexpectedly',
  'the database system is',
];

/** The Unavailable this database failure amounts to, or null when it is something else. */
export function asUnavailable(err: unknown): Unavailable | null {
  if (err instanceof Unavailable) return err;
  if (!err || typeof err !== 'object') return null;
  const code = (err as { code?: unknown }).code;
  const message = String((err as { message?: unknown }).message ?? '');
  if (typeof code === 'string') {
    if (CONTENTION_SQLSTATES.has(code)) return new Unavailable(`Database contention (${code}); retry`, 'contention');
    if (TIMEOUT_SQLSTATES.has(code)) return new Unavailable(`Database wait exceeded its bound (${code})`, 'timeout');
    if (UNAVAILABLE_SQLSTATES.has(code) || SOCKET_CODES.has(code)) return new Unavailable(`Database unavailable (${code})`, 'database');
  }
  if (message.startsWith('timeout exceeded when trying to connect')) return new Unavailable('No database connection within its bound', 'timeout');
  if (CONNECTION_MESSAGES.some((m) => message.includes(m))) return new Unavailable('Database unavailable', 'database');
  return null;
}

/** True when the connection that raised `err` must not be reused. */
export function isConnectionFault(err: unknown): boolean {
  const u = asUnavailable(err);
  return u !== null && u.reason === 'database';
}

/**
 * The limits every money queue runs with: a database that is away fails a whole batch at once,
 * and past `maxBacklog` waiting operations new ones are refused (503) rather than held.
 */
export function queueLimits(maxBacklog = 10_000) {
  return {
    shared: (err: unknown) => asUnavailable(err) !== null,
    maxBacklog,
    overloaded: () => new Unavailable(`More than ${maxBacklog} money operations are waiting in this process`, 'backlog'),
  };
}
