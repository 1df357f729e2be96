/** What a `Range` header asks of an object of `size` bytes (RFC 9110 §14). */
export type RangeOutcome =
  | { kind: 'none' }
  | { kind: 'range'; start: number; end: number }
  /** Answered 416 with `Content-Range: bytes *\/size`. */
  | { kind: 'unsatisfiable' };

/**
 * One `bytes=` range: `a-b`, `a-` or `-n` (the last n bytes), with `b` clamped to the end. A range
 * that starts past the end is unsatisfiable. Several ranges, other units or a malformed header are
 * ignored (the whole object is sent), as the RFC allows; video players ask for one range.
 */
export function parseRange(header: string, size: number): RangeOutcome {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return { kind: 'none' };
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return { kind: 'none' };
  if (a === '') {
    const n = Number(b);
    if (n === 0) return { kind: 'unsatisfiable' };
    return size === 0 ? { kind: 'unsatisfiable' } : { kind: 'range', start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (!Number.isSafeInteger(start) || start >= size) return { kind: 'unsatisfiable' };
  if (b !== '' && Number(b) < start) return { kind: 'none' };
  return { kind: 'range', start, end };
}
