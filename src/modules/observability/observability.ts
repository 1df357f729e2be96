/** Who answered a request: the caller as authentication resolved it (anon when it did not). */
export type CallerKind = 'anon' | 'service' | 'user' | 'unknown';

/**
 * One answered request, as the HTTP layer hands it over: raw, gathered on the response path with
 * no parsing. The buffer's write scrubs and normalizes it (`toStored`), off that path.
 */
export interface ApiLogEntry {
  requestId: string;
  at: Date;
  method: string;
  /** The route's template (`/v1/users/:id`); null when no route matched. */
  route: string | null;
  path: string;
  status: number;
  durationMs: number;
  callerKind: CallerKind;
  callerId: string | null;
  apiKeyId: string | null;
  /** The Content-Length headers as sent (parsed, and dropped when not a number, by the write). */
  requestBytes: string | number | undefined;
  responseBytes: string | number | undefined;
  ip: string | undefined;
  userAgent: string | undefined;
}

/** A 5xx answer's error (or its status alone when no error was thrown), before scrubbing and fingerprinting. */
export type FailureEntry = unknown;

/** Where the HTTP layer reports each answered request (and its error, if it failed with a 5xx). */
export interface RequestRecorder {
  /** Called once per answered request, on the response path: must only queue work. */
  answered(entry: ApiLogEntry, failure: FailureEntry | null): void;
}

export interface ApiLog {
  request_id: string;
  created_at: string;
  method: string;
  route: string | null;
  path: string;
  status: number;
  duration_ms: number;
  caller_kind: string;
  caller_id: string | null;
  api_key_id: string | null;
  request_bytes: number | null;
  response_bytes: number | null;
  ip: string | null;
  user_agent: string | null;
}

/** Occurrences of one error, grouped by fingerprint. */
export interface ErrorGroup {
  fingerprint: string;
  error_class: string;
  message: string;
  route: string | null;
  method: string;
  count: number;
  first_seen: string;
  last_seen: string;
  /** The latest occurrence: its request id (look it up in the request logs) and stack. */
  last_request_id: string;
  last_stack: string | null;
}

export interface RouteLatency {
  method: string;
  route: string;
  requests: number;
  errors: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
}

export interface LatencyMinute extends RouteLatency {
  minute: string;
}

export interface RequestLogFilter {
  status?: number;
  /** 2, 3, 4 or 5: 2xx … 5xx. */
  statusClass?: number;
  route?: string;
  method?: string;
  /** The caller's user id (or a service request's nothing). */
  callerId?: string;
  requestId?: string;
  from?: Date;
  to?: Date;
}

/** An api_logs row as written: sizes parsed, address checked, user agent cut to its product, path scrubbed. */
export interface StoredApiLog {
  requestId: string;
  at: Date;
  method: string;
  route: string | null;
  path: string;
  status: number;
  durationMs: number;
  callerKind: CallerKind;
  callerId: string | null;
  apiKeyId: string | null;
  requestBytes: number | null;
  responseBytes: number | null;
  ip: string | null;
  userAgent: string | null;
}
