import { type Static, Type } from 'typebox';
import { iso, isoOrNull, ModelGlob, NullableTimestamp, Timestamp } from '../../core/schemas.js';

/**
 * The LLM gateway's domain types and API shapes (issue 14, seed 004). The relay itself is in
 * gateway.relay.service.ts; docs/gateway.md explains hold → call → settle.
 */

export const UPSTREAM_TYPES = ['openai', 'anthropic'] as const;
export type UpstreamType = (typeof UPSTREAM_TYPES)[number];

/** An upstream's circuit: closed serves, open cools down, half_open lets one probe through, disabled waits for an operator. */
export const UPSTREAM_STATES = ['closed', 'open', 'half_open', 'disabled'] as const;
export type UpstreamState = (typeof UPSTREAM_STATES)[number];

export const REQUEST_STATUSES = ['pending', 'completed', 'failed', 'aborted'] as const;
export type RequestStatus = (typeof REQUEST_STATUSES)[number];
export const isSettled = (s: RequestStatus): boolean => s !== 'pending';

export const USAGE_SOURCES = ['provider', 'estimated', 'none'] as const;
export type UsageSource = (typeof USAGE_SOURCES)[number];


const upstreamFields = {
  name: Type.Optional(Type.String({ maxLength: 255 })),
  base_url: Type.String({ minLength: 8, maxLength: 2048, pattern: '^https?://[^\\s]+$' }),
  models: Type.Optional(Type.Array(ModelGlob, { minItems: 1, maxItems: 200 })),
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
  weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  is_active: Type.Optional(Type.Boolean()),
};

export const CreateUpstreamBody = Type.Object(
  {
    type: Type.Union(UPSTREAM_TYPES.map((t) => Type.Literal(t))),
    /** The provider API key; sealed at rest, never returned. */
    credentials: Type.String({ minLength: 1, maxLength: 4096 }),
    ...upstreamFields,
  },
  { additionalProperties: false },
);
export type CreateUpstreamInput = Static<typeof CreateUpstreamBody>;

export const UpdateUpstreamBody = Type.Object(
  {
    credentials: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    name: upstreamFields.name,
    base_url: Type.Optional(upstreamFields.base_url),
    models: upstreamFields.models,
    priority: upstreamFields.priority,
    weight: upstreamFields.weight,
    is_active: upstreamFields.is_active,
  },
  { additionalProperties: false },
);
export type UpdateUpstreamInput = Static<typeof UpdateUpstreamBody>;

export const Upstream = Type.Object({
  id: Type.String(),
  type: Type.String(),
  name: Type.String(),
  base_url: Type.String(),
  credentials_hint: Type.String({ description: 'The last four characters of the sealed credential' }),
  models: Type.Array(Type.String()),
  priority: Type.Integer(),
  weight: Type.Integer(),
  is_active: Type.Boolean(),
  health: Type.Object({
    state: Type.String(),
    success_count: Type.Integer(),
    error_count: Type.Integer(),
    consecutive_failures: Type.Integer(),
    cooldown_until: NullableTimestamp,
    last_error: Type.Union([Type.String(), Type.Null()]),
    last_error_at: NullableTimestamp,
    last_success_at: NullableTimestamp,
  }),
  created_at: Timestamp,
  updated_at: Timestamp,
});

/** An upstream as the repository answers it (no ciphertext). */
export interface UpstreamRow {
  id: string;
  type: string;
  name: string;
  base_url: string;
  credentials_hint: string;
  models: string[];
  priority: number;
  weight: number;
  is_active: boolean;
  state: string;
  success_count: number;
  error_count: number;
  consecutive_failures: number;
  cooldown_until: Date | null;
  last_error: string | null;
  last_error_at: Date | null;
  last_success_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export function upstreamToApi(r: UpstreamRow): Static<typeof Upstream> {
  return {
    id: r.id,
    type: r.type,
    name: r.name,
    base_url: r.base_url,
    credentials_hint: r.credentials_hint,
    models: r.models,
    priority: r.priority,
    weight: r.weight,
    is_active: r.is_active,
    health: {
      state: r.state,
      success_count: Number(r.success_count),
      error_count: Number(r.error_count),
      consecutive_failures: r.consecutive_failures,
      cooldown_until: isoOrNull(r.cooldown_until),
      last_error: r.last_error,
      last_error_at: isoOrNull(r.last_error_at),
      last_success_at: isoOrNull(r.last_success_at),
    },
    created_at: iso(r.created_at),
    updated_at: iso(r.updated_at),
  };
}

/** Tokens by category, as the provider reported them (or as estimated). */
export interface Tokens {
  input: number;
  cachedInput: number;
  /** Every cache write (Anthropic's cache_creation_input_tokens, both TTLs). */
  cacheWrite: number;
  /** Of cacheWrite, those written for one hour (priced at cache_write_1h; attacker review G8). */
  cacheWrite1h: number;
  output: number;
  reasoning: number;
}
export const NO_TOKENS: Tokens = { input: 0, cachedInput: 0, cacheWrite: 0, cacheWrite1h: 0, output: 0, reasoning: 0 };

export const UsageRecord = Type.Object({
  id: Type.String({ description: 'The x-request-id returned on the proxied response' }),
  user_id: Type.String(),
  workspace_id: Type.Union([Type.String(), Type.Null()]),
  api_key_id: Type.Union([Type.String(), Type.Null()]),
  endpoint: Type.String(),
  model: Type.String(),
  stream: Type.Boolean(),
  status: Type.String(),
  http_status: Type.Union([Type.Integer(), Type.Null()]),
  upstream_id: Type.Union([Type.String(), Type.Null()]),
  attempts: Type.Integer(),
  hold_id: Type.Union([Type.String(), Type.Null()]),
  held: Type.Integer(),
  tokens: Type.Object({ input: Type.Integer(), cached_input: Type.Integer(), cache_write: Type.Integer(), output: Type.Integer(), reasoning: Type.Integer() }),
  cost_micros: Type.Integer({ description: 'Exact cost in micro-credits (at most the hold)' }),
  uncharged_micros: Type.Integer({ description: 'Exact cost beyond the hold, not charged (the hold is the most a request may cost); expected 0' }),
  charged: Type.Integer({ description: 'Whole credits captured for this request (fractions carry per account)' }),
  usage_source: Type.Union([Type.String(), Type.Null()]),
  latency_ms: Type.Union([Type.Integer(), Type.Null()]),
  ttft_ms: Type.Union([Type.Integer(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
  created_at: Timestamp,
  settled_at: NullableTimestamp,
});

export interface RequestRow {
  id: string;
  user_id: string;
  workspace_id: string | null;
  api_key_id: string | null;
  endpoint: string;
  model: string;
  stream: boolean;
  status: string;
  http_status: number | null;
  upstream_id: string | null;
  attempts: number;
  hold_id: string | null;
  held: number;
  input_tokens: number;
  cached_input_tokens: number;
  cache_write_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
  cost_micros: number;
  uncharged_micros: number;
  charged: number;
  usage_source: string | null;
  latency_ms: number | null;
  ttft_ms: number | null;
  error: string | null;
  created_at: Date;
  settled_at: Date | null;
}

export function usageRecordToApi(r: RequestRow): Static<typeof UsageRecord> {
  return {
    id: r.id,
    user_id: r.user_id,
    workspace_id: r.workspace_id,
    api_key_id: r.api_key_id,
    endpoint: r.endpoint,
    model: r.model,
    stream: r.stream,
    status: r.status,
    http_status: r.http_status,
    upstream_id: r.upstream_id,
    attempts: r.attempts,
    hold_id: r.hold_id,
    held: Number(r.held),
    tokens: {
      input: Number(r.input_tokens),
      cached_input: Number(r.cached_input_tokens),
      cache_write: Number(r.cache_write_tokens),
      output: Number(r.output_tokens),
      reasoning: Number(r.reasoning_tokens),
    },
    cost_micros: Number(r.cost_micros),
    uncharged_micros: Number(r.uncharged_micros),
    charged: Number(r.charged),
    usage_source: r.usage_source,
    latency_ms: r.latency_ms,
    ttft_ms: r.ttft_ms,
    error: r.error,
    created_at: iso(r.created_at),
    settled_at: isoOrNull(r.settled_at),
  };
}

/** Does a model name match one of the globs (`*` matches any run of characters)? */
export function modelMatches(model: string, globs: readonly string[]): boolean {
  return globs.some((g) => {
    if (g === '*' || g === model) return true;
    if (!g.includes('*')) return false;
    const re = new RegExp(`^${g.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*')}$`);
    return re.test(model);
  });
}

export const hintOf = (secret: string): string => (secret.length >= 12 ? secret.slice(-4) : '');
export const credentialsAad = (upstreamId: string): string => `gateway_upstreams:${upstreamId}`;
