import { Type } from 'typebox';
import { IdParam, iso, isoOrNull, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import { EXECUTION_STATUSES } from './ide.lifecycles.js';
import { BigText, literals, Nullable, Str } from './ide.js';
import type { IdeRow } from './ide.repository.js';

export const CodeExecution = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), user_id: Nullable(Type.String()), language: Type.String(), source_code: Nullable(Type.String()),
    file_version_id: Nullable(Type.String()), stdin: Nullable(Type.String()), stdout: Nullable(Type.String()), stderr: Nullable(Type.String()),
    compile_output: Nullable(Type.String()), status: literals(EXECUTION_STATUSES), status_detail: Nullable(Type.String()), exit_code: Nullable(Type.Integer()),
    execution_time_ms: Nullable(Type.Number()), memory_kb: Nullable(Type.Integer()), external_token: Nullable(Type.String()),
    started_at: NullableTimestamp, finished_at: NullableTimestamp, created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'CodeExecution' },
);

/** Queue a run: the source inline, or a saved file version of this project (one of the two). */
export const CreateCodeExecutionBody = Type.Object(
  {
    user_id: Type.Optional(IdParam),
    language: Str(64),
    source_code: Type.Optional(BigText),
    file_version_id: Type.Optional(IdParam),
    stdin: Type.Optional(BigText),
    /** The runner's own id for the run (the seed's Judge0 token). */
    external_token: Type.Optional(Str(255)),
  },
  { additionalProperties: false },
);

/** The runner reports: a status move (queued → running → a final one) and the run's results. */
export const UpdateCodeExecutionBody = Type.Object(
  {
    status: Type.Optional(literals(EXECUTION_STATUSES)),
    status_detail: Type.Optional(Str(255)),
    stdout: Type.Optional(BigText),
    stderr: Type.Optional(BigText),
    compile_output: Type.Optional(BigText),
    exit_code: Type.Optional(Type.Integer({ minimum: -2_147_483_648, maximum: 2_147_483_647 })),
    execution_time_ms: Type.Optional(Type.Number({ minimum: 0, maximum: 1e12 })),
    memory_kb: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
    external_token: Type.Optional(Str(255)),
  },
  { additionalProperties: false },
);

export const codeExecutionToApi = (r: IdeRow<'code_executions'>) => ({
  id: r.id, project_id: r.project_id, user_id: r.user_id, language: r.language,
  source_code: r.source_code, file_version_id: r.file_version_id, stdin: r.stdin,
  stdout: r.stdout, stderr: r.stderr, compile_output: r.compile_output,
  status: r.status as (typeof EXECUTION_STATUSES)[number], status_detail: r.status_detail, exit_code: r.exit_code,
  // numeric comes back as text from PostgreSQL
  execution_time_ms: r.execution_time_ms === null ? null : Number(r.execution_time_ms), memory_kb: r.memory_kb,
  external_token: r.external_token, started_at: isoOrNull(r.started_at), finished_at: isoOrNull(r.finished_at),
  created_at: iso(r.created_at), updated_at: iso(r.updated_at),
});
