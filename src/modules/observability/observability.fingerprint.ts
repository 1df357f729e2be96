import { createHash } from 'node:crypto';

/**
 * What makes two errors "the same error": their class, their message with the parts that vary per
 * occurrence made generic (ids, numbers, quoted values, addresses), and the top frames of their
 * stack without line and column numbers (those move with every release; the function and file do
 * not). Sixteen hex characters of SHA-256 over that.
 */
export function fingerprint(errorClass: string, message: string, stack: string | null): string {
  const frames = topFrames(stack, 3);
  return createHash('sha256').update(`${errorClass}\n${normalizeMessage(message)}\n${frames.join('\n')}`).digest('hex').slice(0, 16);
}

export function normalizeMessage(message: string): string {
  return message
    .replace(/\b[a-z]{2,8}_[0-9a-z]{10,}\b/gi, '<id>')
    .replace(/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, '<uuid>')
    .replace(/"[^"]*"|'[^']*'/g, '<str>')
    .replace(/\b\d+(?:\.\d+)?\b/g, '<n>')
    .replace(/\b[0-9a-f]{12,}\b/gi, '<hex>')
    .slice(0, 500);
}

/** "at fn (file:line:col)" → "fn (file)", first `n` frames; paths reduced to what follows src/ or node_modules/. */
export function topFrames(stack: string | null, n: number): string[] {
  if (!stack) return [];
  return stack
    .split('\n')
    .filter((l) => /^\s*at /.test(l))
    .slice(0, n)
    .map((l) =>
      l
        .trim()
        .replace(/^at /, '')
        .replace(/:\d+:\d+\)?$/, (m) => (m.endsWith(')') ? ')' : ''))
        .replace(/\(?(?:file:\/\/)?[^\s()]*?\/((?:src|dist|node_modules)\/[^\s()]*)/, (m, rest: string) => `${m.startsWith('(') ? '(' : ''}${rest}`),
    );
}
