import { errors } from '../../core/errors.js';
import type { Wire } from './gateway.wire.js';

/**
 * What the relay passes upstream (attacker review G6). A request's price is set by its model's cost
 * model; some body fields and headers make the provider sell a dearer service for the same tokens
 * (OpenAI `service_tier: "priority"`, Anthropic's `context-1m` beta, OpenRouter's `models` fallback
 * list and `plugins`). So only the fields and beta flags below are relayed; anything else is refused
 * with a 400 in the client's own format, naming it — never dropped silently, which would change the
 * request behind the client's back. The list is in docs/gateway.md ("What is relayed").
 */
const OPENAI_CHAT = new Set([
  'model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'n',
  'temperature', 'top_p', 'frequency_penalty', 'presence_penalty', 'stop', 'seed', 'logit_bias',
  'logprobs', 'top_logprobs', 'response_format', 'tools', 'tool_choice', 'parallel_tool_calls',
  'functions', 'function_call', 'user', 'metadata', 'store', 'reasoning_effort', 'verbosity',
  'modalities', 'prediction', 'prompt_cache_key', 'safety_identifier', 'service_tier',
  // Refused by the hold bounds with their own reason (gateway.bounds.ts), so let them reach it.
  'web_search_options',
]);
const OPENAI_EMBEDDINGS = new Set(['model', 'input', 'encoding_format', 'dimensions', 'user']);
const ANTHROPIC_MESSAGES = new Set([
  'model', 'messages', 'system', 'max_tokens', 'metadata', 'stop_sequences', 'stream', 'temperature',
  'top_p', 'top_k', 'tools', 'tool_choice', 'thinking', 'service_tier',
]);

/** The service tiers that bill the standard price (absent is the provider's default). */
const STANDARD_TIERS: Record<Wire, ReadonlySet<string>> = { openai: new Set(['auto', 'default']), anthropic: new Set(['standard_only']) };

/** Anthropic beta flags that change no price beyond what the gateway prices (cache TTLs: G8). */
const ANTHROPIC_BETAS = new Set([
  'prompt-caching-2024-07-31',
  'extended-cache-ttl-2025-04-11',
  'interleaved-thinking-2025-05-14',
  'fine-grained-tool-streaming-2025-05-14',
  'token-efficient-tools-2025-02-19',
  'output-128k-2025-02-19',
]);

export function assertRelayable(wire: Wire, embeddings: boolean, body: Record<string, unknown>, headers: Record<string, string>): void {
  const allowed = wire === 'anthropic' ? ANTHROPIC_MESSAGES : embeddings ? OPENAI_EMBEDDINGS : OPENAI_CHAT;
  for (const k of Object.keys(body)) {
    if (!allowed.has(k)) throw errors.invalidRequest(`The gateway does not relay the field ${k}: it may change what the provider bills beyond this model's price`, { field: `body.${k}` });
  }
  const tier = body['service_tier'];
  if (tier !== undefined && tier !== null && !(typeof tier === 'string' && STANDARD_TIERS[wire].has(tier))) {
    throw errors.invalidRequest(`The gateway relays only the standard service tier (${[...STANDARD_TIERS[wire]].join(', ')}), not ${JSON.stringify(tier)}: other tiers are priced differently`, { field: 'body.service_tier' });
  }
  const beta = headers['anthropic-beta'];
  if (beta !== undefined) {
    for (const flag of beta.split(',').map((f) => f.trim()).filter(Boolean)) {
      if (!ANTHROPIC_BETAS.has(flag)) throw errors.invalidRequest(`The gateway does not relay the anthropic-beta flag ${flag}: it may change what the provider bills beyond this model's price`, { field: 'headers.anthropic-beta' });
    }
  }
}

/**
 * The body with the standard tier named, for upstreams whose host sells dearer tiers by default
 * (an OpenAI project's default tier and Anthropic's `auto` may be Priority capacity the operator
 * bought); null when the body already names it. Embeddings have no tiers.
 */
export function withStandardTier(wire: Wire, embeddings: boolean, body: Record<string, unknown>): Record<string, unknown> | null {
  if (embeddings) return null;
  const tier = wire === 'openai' ? 'default' : 'standard_only';
  return body['service_tier'] === tier ? null : { ...body, service_tier: tier };
}
