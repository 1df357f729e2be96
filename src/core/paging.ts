import { errors } from './errors.js';

export interface PageRequest {
  limit: number;
  after: { us: number; id: string } | null;
}

/**
 * A cursor is the (created_at in microseconds, id) of the last row, base64url-encoded. Microseconds,
 * not JS milliseconds, so rows created within the same millisecond are neither skipped nor repeated.
 */
export function pageRequest(query: { limit?: number; cursor?: string }): PageRequest {
  const limit = query.limit ?? 50;
  if (!query.cursor) return { limit, after: null };
  try {
    const parsed: unknown = JSON.parse(Buffer.from(query.cursor, 'base64url').toString('utf8'));
    if (Array.isArray(parsed) && parsed.length === 2 && Number.isSafeInteger(parsed[0]) && typeof parsed[1] === 'string') {
      return { limit, after: { us: parsed[0] as number, id: parsed[1] } };
    }
  } catch {
    // fall through
  }
  throw errors.invalidRequest('cursor is not a cursor this API returned', { field: 'cursor' });
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

/** Turns limit+1 fetched rows into a page; the extra row only says that there is more. */
export function toPage<R extends { cursor_us: number; id: string }, T>(rows: R[], limit: number, map: (row: R) => T): Page<T> {
  const more = rows.length > limit;
  const pageRows = more ? rows.slice(0, limit) : rows;
  const last = pageRows[pageRows.length - 1];
  return {
    data: pageRows.map(map),
    next_cursor: more && last ? Buffer.from(JSON.stringify([last.cursor_us, last.id])).toString('base64url') : null,
  };
}
