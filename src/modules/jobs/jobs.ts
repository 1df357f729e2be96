import { Type } from 'typebox';
import { iso, isoOrNull, JsonObject, Metadata, NullableTimestamp, Timestamp } from '../../core/schemas.js';

// ---------------------------------------------------------------------------------------------
// The lifecycle: a closed union and one transition function (docs/jobs.md).
// ---------------------------------------------------------------------------------------------

export const JOB_STATUSES = ['pending', 'processing', 'completed', 'failed', 'canceled', 'timed_out'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const FINAL_JOB_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'canceled', 'timed_out'];
export const isFinalJob = (s: JobStatus): boolean => FINAL_JOB_STATUSES.includes(s);

export const JOB_EVENTS = ['start', 'complete', 'fail', 'cancel', 'timeout'] as const;
export type JobEvent = (typeof JOB_EVENTS)[number];

/** What a transition does to the job's hold: nothing, capture it (success), or release it. */
export type Settlement = 'none' | 'capture' | 'release';

export type Transition =
  | { ok: true; to: JobStatus; settle: Settlement }
  | { ok: false; reason: string };

/**
 * The one transition function. A final state accepts nothing; a job settles (capture or release)
 * on exactly one transition, the one that makes it final.
 */
export function transition(from: JobStatus, event: JobEvent): Transition {
  if (isFinalJob(from)) return { ok: false, reason: `The job is already ${from}` };
  switch (event) {
    case 'start':
      return from === 'pending' ? { ok: true, to: 'processing', settle: 'none' } : { ok: false, reason: 'The job is already processing' };
    case 'complete':
      return { ok: true, to: 'completed', settle: 'capture' };
    case 'fail':
      return { ok: true, to: 'failed', settle: 'release' };
    case 'cancel':
      return { ok: true, to: 'canceled', settle: 'release' };
    case 'timeout':
      return { ok: true, to: 'timed_out', settle: 'release' };
  }
}

/** The status an event leads to (for recognising a repeated provider callback). */
export const EVENT_TARGET: Record<JobEvent, JobStatus> = {
  start: 'processing',
  complete: 'completed',
  fail: 'failed',
  cancel: 'canceled',
  timeout: 'timed_out',
};

// ---------------------------------------------------------------------------------------------
// Rows and API shapes.
// ---------------------------------------------------------------------------------------------

export interface JobRow {
  id: string;
  user_id: string;
  /** The workspace pool that pays (user_id is then the member who ran the job). */
  workspace_id: string | null;
  project_id: string | null;
  kind: string;
  model: string | null;
  provider: string;
  external_id: string | null;
  status: string;
  input: unknown;
  prompt: string | null;
  image_url: string | null;
  output: unknown;
  result_url: string | null;
  error: string | null;
  tokens_used: number | null;
  cost: number;
  captured: number | null;
  hold_id: string | null;
  metadata: unknown;
  timeout_at: Date | string;
  started_at: Date | string | null;
  completed_at: Date | string | null;
  duration_ms: number | null;
  created_at: Date | string;
  updated_at: Date | string;
}

const Nullable = <T extends import('typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Id = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:@-]+$' });
const Url = Type.String({ minLength: 1, maxLength: 2048 });
const Credits = Type.Integer({ minimum: 0, maximum: 1_000_000_000_000 });

export const Job = Type.Object(
  {
    id: Type.String(),
    user_id: Type.String({ description: 'Who ran the job (with workspace_id: the member who spent the pool)' }),
    workspace_id: Nullable(Type.String({ description: 'The workspace pool that pays for the job; null: the user pays' })),
    project_id: Nullable(Type.String()),
    kind: Type.String(),
    model: Nullable(Type.String()),
    provider: Type.String(),
    external_id: Nullable(Type.String()),
    status: Type.Union(JOB_STATUSES.map((s) => Type.Literal(s))),
    input: Type.Record(Type.String(), Type.Unknown()),
    prompt: Nullable(Type.String()),
    image_url: Nullable(Type.String()),
    output: Type.Unknown(),
    result_url: Nullable(Type.String()),
    error: Nullable(Type.String()),
    tokens_used: Nullable(Type.Integer()),
    cost: Type.Integer(),
    captured: Nullable(Type.Integer()),
    hold_id: Nullable(Type.String()),
    metadata: Type.Record(Type.String(), Type.Unknown()),
    timeout_at: Timestamp,
    started_at: NullableTimestamp,
    completed_at: NullableTimestamp,
    duration_ms: Nullable(Type.Integer()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { title: 'Job' },
);

export const CreateJobBody = Type.Object(
  {
    user_id: Id,
    workspace_id: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description:
          "Bill this workspace's pool; user_id is the acting member (owner, admin or member; never a viewer), within their spend cap. A job on a workspace's project bills that workspace's pool by default",
      }),
    ),
    kind: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    provider: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' })),
    external_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    project_id: Type.Optional(Id),
    input: JsonObject(200),
    prompt: Type.Optional(Type.String({ maxLength: 100_000 })),
    image_url: Type.Optional(Url),
    cost: Credits,
    /** Seconds until the job times out and its hold is released (default one hour, at most 7 days). */
    timeout_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 * 24 * 3600 })),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

export const StartJobBody = Type.Object(
  { external_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })) },
  { additionalProperties: false },
);

export const CompleteJobBody = Type.Object(
  {
    output: Type.Optional(Type.Unknown()),
    result_url: Type.Optional(Url),
    /** The actual cost, at most what was held (default: all of it). */
    cost: Type.Optional(Credits),
    tokens_used: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_000_000_000 })),
  },
  { additionalProperties: false },
);

export const FailJobBody = Type.Object(
  {
    error: Type.String({ minLength: 1, maxLength: 4000 }),
    tokens_used: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_000_000_000 })),
  },
  { additionalProperties: false },
);

export const CancelJobBody = Type.Object(
  { reason: Type.Optional(Type.String({ minLength: 1, maxLength: 4000 })) },
  { additionalProperties: false },
);

/** A provider's signed callback: which event, and what it carries. */
export const CallbackBody = Type.Object(
  {
    event: Type.Union([Type.Literal('started'), Type.Literal('completed'), Type.Literal('failed'), Type.Literal('canceled')]),
    external_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    output: Type.Optional(Type.Unknown()),
    result_url: Type.Optional(Url),
    cost: Type.Optional(Credits),
    tokens_used: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_000_000_000 })),
    error: Type.Optional(Type.String({ minLength: 1, maxLength: 4000 })),
  },
  { additionalProperties: false },
);

export const CallbackAnswer = Type.Object(
  { job: Job, applied: Type.Boolean() },
  { title: 'JobCallbackResult' },
);

export const CALLBACK_EVENTS: Record<'started' | 'completed' | 'failed' | 'canceled', JobEvent> = {
  started: 'start',
  completed: 'complete',
  failed: 'fail',
  canceled: 'cancel',
};

export function jobToApi(r: JobRow) {
  return {
    id: r.id,
    user_id: r.user_id,
    workspace_id: r.workspace_id ?? null,
    project_id: r.project_id,
    kind: r.kind,
    model: r.model,
    provider: r.provider,
    external_id: r.external_id,
    status: r.status as JobStatus,
    input: (r.input ?? {}) as Record<string, unknown>,
    prompt: r.prompt,
    image_url: r.image_url,
    output: r.output ?? null,
    result_url: r.result_url,
    error: r.error,
    tokens_used: r.tokens_used,
    cost: r.cost,
    captured: r.captured,
    hold_id: r.hold_id,
    metadata: (r.metadata ?? {}) as Record<string, unknown>,
    timeout_at: iso(r.timeout_at),
    started_at: isoOrNull(r.started_at),
    completed_at: isoOrNull(r.completed_at),
    duration_ms: r.duration_ms,
    created_at: iso(r.created_at),
    updated_at: iso(r.updated_at),
  };
}
