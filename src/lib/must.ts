/**
 * The value the code already guarantees is there, or a clear Error naming the broken invariant —
 * in place of a non-null assertion (`!`), which would let an `undefined` travel on silently.
 * Allocates nothing unless it throws.
 */
export function must<T>(value: T | null | undefined, what: string): T {
  if (value === undefined || value === null) throw new Error(`invariant broken: ${what}`);
  return value;
}
