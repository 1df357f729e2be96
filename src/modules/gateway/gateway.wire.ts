import type { ErrorCode } from '../../core/errors.js';
import { NO_TOKENS, type Tokens } from './gateway.js';

/**
 * The two providers' wire formats, as far as the relay needs them: where usage is, and how an
 * error looks. The relay passes bodies through unchanged (no translation); this file only reads.
 */
export type Wire = 'openai' | 'anthropic';

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | null => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : null);
const int = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);
/** A token count the provider really gave (a non-negative integer); anything else is no count at all. */
const count = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * OpenAI usage (chat and embeddings): prompt_tokens includes cached ones, completion_tokens includes
 * reasoning ones; both are split out so each category is priced once. Usage without its counts
 * (`usage: {}`, or a chat usage without completion_tokens) is no usage: billed as an estimate, never
 * as 0 tokens (attacker review G1).
 */
export function openaiUsage(usage: unknown, chat = true): Tokens | null {
  const u = obj(usage);
  if (!u || !count(u['prompt_tokens']) || (chat && !count(u['completion_tokens']))) return null;
  const prompt = int(u['prompt_tokens']);
  const completion = int(u['completion_tokens']);
  const cached = Math.min(prompt, int(obj(u['prompt_tokens_details'])?.['cached_tokens']));
  const reasoning = Math.min(completion, int(obj(u['completion_tokens_details'])?.['reasoning_tokens']));
  return { ...NO_TOKENS, input: prompt - cached, cachedInput: cached, output: completion - reasoning, reasoning };
}

/**
 * Anthropic usage: input_tokens excludes cache reads and writes; output_tokens is cumulative in
 * streams. A whole answer's usage needs both counts, or it is no usage (G1).
 */
export function anthropicUsage(usage: unknown, base: Tokens = NO_TOKENS): Tokens | null {
  const u = obj(usage);
  if (!u) return null;
  const cacheWrite = 'cache_creation_input_tokens' in u ? int(u['cache_creation_input_tokens']) : base.cacheWrite;
  // The split by TTL (`cache_creation.ephemeral_1h_input_tokens`): one-hour writes cost more (G8).
  const byTtl = obj(u['cache_creation']);
  const oneHour = byTtl && 'ephemeral_1h_input_tokens' in byTtl ? int(byTtl['ephemeral_1h_input_tokens']) : base.cacheWrite1h;
  return {
    input: 'input_tokens' in u ? int(u['input_tokens']) : base.input,
    cachedInput: 'cache_read_input_tokens' in u ? int(u['cache_read_input_tokens']) : base.cachedInput,
    cacheWrite: Math.max(cacheWrite, oneHour),
    cacheWrite1h: oneHour,
    output: 'output_tokens' in u ? int(u['output_tokens']) : base.output,
    reasoning: 0,
  };
}

/** Usage of a whole JSON response (`chat`: a completion, which must count its output too). */
export function usageOfBody(wire: Wire, body: unknown, chat = true): Tokens | null {
  const b = obj(body);
  if (!b) return null;
  if (wire === 'openai') return openaiUsage(b['usage'], chat);
  const u = obj(b['usage']);
  return u && count(u['input_tokens']) && count(u['output_tokens']) ? anthropicUsage(u) : null;
}

/**
 * Reads a stream's events for usage. OpenAI: the final chunk (choices: []) carries `usage` when
 * `stream_options.include_usage` is on. Anthropic: message_start has the input side, each
 * message_delta the cumulative output.
 */
export class StreamUsage {
  /** The provider's whole usage, once it has given every count (null until then, or never). */
  tokens: Tokens | null = null;
  /** Anthropic: the input side message_start reported (known even when the stream is cut later). */
  startTokens: Tokens | null = null;
  /** Characters of generated text seen (the estimate's basis when usage never comes). */
  textChars = 0;
  done = false;
  private outputCounted = false;

  constructor(private readonly wire: Wire) {}

  /** Takes one event's data; answers whether the event is the injected usage chunk (OpenAI). */
  see(data: string): { usageOnly: boolean } {
    if (data === '[DONE]') {
      this.done = true;
      return { usageOnly: false };
    }
    let event: Json | null;
    try {
      event = obj(JSON.parse(data));
    } catch {
      return { usageOnly: false };
    }
    if (!event) return { usageOnly: false };
    if (this.wire === 'openai') {
      const choices = Array.isArray(event['choices']) ? (event['choices'] as unknown[]) : [];
      for (const c of choices) this.textChars += generatedChars(obj(obj(c)?.['delta']));
      const usage = openaiUsage(event['usage']);
      if (usage) this.tokens = usage;
      return { usageOnly: obj(event['usage']) !== null && choices.length === 0 };
    }
    switch (event['type']) {
      case 'message_start': {
        const u = obj(obj(event['message'])?.['usage']);
        // Only a real input count starts the usage: `usage: {}` is no usage (G1).
        if (u && count(u['input_tokens'])) this.startTokens = anthropicUsage({ ...u, output_tokens: 0 });
        break;
      }
      case 'message_delta': {
        const u = obj(event['usage']);
        if (u && count(u['output_tokens'])) {
          this.outputCounted = true;
          this.startTokens = anthropicUsage(u, this.startTokens ?? NO_TOKENS);
        }
        break;
      }
      case 'content_block_delta': {
        const d = obj(event['delta']);
        const text = d?.['text'] ?? d?.['thinking'] ?? d?.['partial_json'];
        if (typeof text === 'string') this.textChars += text.length;
        break;
      }
      case 'message_stop':
        this.done = true;
        break;
      default:
        break;
    }
    // The whole usage: an input count from message_start (or a delta) and an output count.
    const started = this.startTokens !== null;
    this.tokens = started && this.outputCounted ? this.startTokens : null;
    return { usageOnly: false };
  }
}

/**
 * Characters an OpenAI delta generated, of every kind the provider bills as output: text, refusals,
 * reasoning (`reasoning_content`, OpenRouter's `reasoning`), tool-call names and arguments (and the
 * older function_call). Counting text alone let a cut stream of tool calls be estimated at 0 output (G4).
 */
function generatedChars(delta: Json | null): number {
  if (!delta) return 0;
  const len = (v: unknown): number => (typeof v === 'string' ? v.length : 0);
  let n = len(delta['content']) + len(delta['refusal']) + len(delta['reasoning_content']) + len(delta['reasoning']);
  const fn = (f: unknown): number => len(obj(f)?.['name']) + len(obj(f)?.['arguments']);
  n += fn(delta['function_call']);
  if (Array.isArray(delta['tool_calls'])) for (const t of delta['tool_calls']) n += fn(obj(t)?.['function']);
  return n;
}

/**
 * Splits a byte stream into SSE events (blank-line separated) and hands each one's `data:` to a
 * reader, keeping the raw event text so it can be forwarded unchanged.
 */
export class SseSplitter {
  private buffer = '';
  private readonly decoder = new TextDecoder();

  /** Complete events in this chunk, each as its raw text (terminator included) and its data. */
  push(chunk: Uint8Array): { raw: string; data: string | null }[] {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    const out: { raw: string; data: string | null }[] = [];
    for (;;) {
      const m = /\r?\n\r?\n/.exec(this.buffer);
      if (!m) break;
      const end = m.index + m[0].length;
      const raw = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end);
      const data = raw
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
      out.push({ raw, data: data === '' && !/^data:/m.test(raw) ? null : data });
    }
    return out;
  }

  /** Whatever is left when the stream ends without a final blank line. */
  rest(): string {
    return this.buffer;
  }
}

/** The error types each wire names for a Tally error code. */
const OPENAI_TYPES: Partial<Record<ErrorCode, string>> = {
  invalid_request: 'invalid_request_error',
  unauthenticated: 'authentication_error',
  forbidden: 'permission_error',
  not_found: 'not_found_error',
  insufficient_credits: 'insufficient_quota',
  budget_exceeded: 'insufficient_quota',
  rate_limited: 'rate_limit_error',
  conflict: 'invalid_request_error',
  idempotency_key_reused: 'invalid_request_error',
};
const ANTHROPIC_TYPES: Partial<Record<ErrorCode, string>> = {
  invalid_request: 'invalid_request_error',
  unauthenticated: 'authentication_error',
  forbidden: 'permission_error',
  not_found: 'not_found_error',
  insufficient_credits: 'billing_error',
  budget_exceeded: 'billing_error',
  rate_limited: 'rate_limit_error',
  conflict: 'invalid_request_error',
  idempotency_key_reused: 'invalid_request_error',
  unavailable: 'overloaded_error',
};

/** An error body in the client's own format (OpenAI `{error:{…}}`, Anthropic `{type:'error',error:{…}}`). */
export function wireError(wire: Wire, code: ErrorCode, message: string): Json {
  if (wire === 'openai') return { error: { message, type: OPENAI_TYPES[code] ?? 'server_error', param: null, code } };
  return { type: 'error', error: { type: ANTHROPIC_TYPES[code] ?? 'api_error', message } };
}
