import { errors } from '../../core/errors.js';
import type { ModelPrice } from './gateway.pricing.js';
import type { Wire } from './gateway.wire.js';

/** OpenAI's own ceiling on `n`. */
const MAX_CHOICES = 128;

/**
 * What bounds a request's cost before it goes upstream (the hold), beyond its bytes: how many
 * answers it asks for, the media parts whose tokens its bytes do not bound (an image named by URL
 * is a few bytes and hundreds of tokens), and the output limit Tally sends when the client named
 * none — so the provider can never bill more than was held. Anything a provider bills outside
 * tokens (server-side tools, audio output) is refused: no hold could bound it.
 */
export interface Bound {
  /** Answers the provider will generate (`n`); output is held for each. */
  choices: number;
  /** Input tokens of media parts, on top of the body's byte bound. */
  mediaTokens: number;
  /** The output limit the upstream is sent when the client gave none (null: the client's stands). */
  injectMaxTokens: number | null;
  /** The request asks for one-hour cache writes: its input is held at that price too (G8). */
  oneHourCache: boolean;
}

export function boundOf(wire: Wire, embeddings: boolean, body: Record<string, unknown>, price: ModelPrice, maxOut: number, clientMaxOut: boolean): Bound {
  let choices = 1;
  if (wire === 'openai' && !embeddings && body['n'] !== undefined && body['n'] !== null) {
    const n = body['n'];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > MAX_CHOICES) throw errors.invalidRequest(`n must be an integer from 1 to ${MAX_CHOICES}`, { field: 'body.n' });
    choices = n;
  }
  if (wire === 'openai' && body['web_search_options'] !== undefined) throw unbillable('web_search_options (web search is billed per call, outside tokens)', 'body.web_search_options');
  if (wire === 'openai' && Array.isArray(body['modalities']) && body['modalities'].includes('audio')) throw unbillable('audio output', 'body.modalities');
  if (wire === 'anthropic' && Array.isArray(body['tools'])) {
    for (const t of body['tools']) {
      const type = (t as { type?: unknown } | null)?.type;
      if (typeof type === 'string' && /^(web_search|web_fetch|code_execution)/.test(type)) throw unbillable(`the server tool ${type} (billed per use, outside tokens)`, 'body.tools');
    }
  }
  const oneHourCache = asksOneHourCache(body);
  if (price.cacheWrite1h === null && oneHourCache) {
    throw errors.invalidRequest(`This model's cost model sets no cache_write_1h price, so one-hour cache writes (cache_control ttl "1h") cannot be billed; use the default five-minute cache`, { field: 'body.cache_control' });
  }
  const parts = mediaParts(body);
  if (parts.files > 0 && price.maxTokensPerFile === null) {
    throw errors.invalidRequest(`This model's cost model sets no max_tokens_per_file, so file, document and audio parts cannot be held for; send text or images`, { field: 'body.messages' });
  }
  if (parts.images > 0 && price.maxTokensPerImage === null) {
    throw errors.invalidRequest(`This model's cost model sets no max_tokens_per_image, so image parts cannot be held for; send text, or ask the operator to price images`, { field: 'body.messages' });
  }
  const mediaTokens = parts.images * (price.maxTokensPerImage ?? 0) + parts.files * (price.maxTokensPerFile ?? 0);
  return { choices, mediaTokens, injectMaxTokens: embeddings || clientMaxOut ? null : maxOut, oneHourCache };
}

function unbillable(what: string, field: string) {
  return errors.invalidRequest(`The gateway does not relay ${what}: no hold can bound what the provider would bill`, { field });
}

const IMAGE_PARTS = new Set(['image_url', 'image', 'input_image']);
const FILE_PARTS = new Set(['input_audio', 'file', 'document', 'input_file', 'audio']);

/** Counts image and file parts anywhere in the messages (tool results may carry them too). */
export function mediaParts(body: Record<string, unknown>): { images: number; files: number } {
  const out = { images: 0, files: 0 };
  const visit = (v: unknown, depth: number): void => {
    if (depth > 8 || v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) visit(x, depth + 1);
      return;
    }
    const o = v as Record<string, unknown>;
    const type = o['type'];
    if (typeof type === 'string' && IMAGE_PARTS.has(type)) out.images++;
    else if (typeof type === 'string' && FILE_PARTS.has(type)) out.files++;
    if (o['content'] !== undefined) visit(o['content'], depth + 1);
  };
  visit(body['messages'], 0);
  visit(body['system'], 0);
  return out;
}

/** Does any part of the body (system, messages, tools) ask for a one-hour cache write? */
export function asksOneHourCache(body: Record<string, unknown>): boolean {
  const visit = (v: unknown, depth: number): boolean => {
    if (depth > 12 || v === null || typeof v !== 'object') return false;
    if (Array.isArray(v)) return v.some((x) => visit(x, depth + 1));
    const o = v as Record<string, unknown>;
    const cc = o['cache_control'];
    if (cc && typeof cc === 'object' && (cc as Record<string, unknown>)['ttl'] !== undefined && (cc as Record<string, unknown>)['ttl'] !== '5m') return true;
    return Object.values(o).some((x) => visit(x, depth + 1));
  };
  return visit(body, 0);
}
