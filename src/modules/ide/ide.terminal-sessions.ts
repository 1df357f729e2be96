import { Type } from 'typebox';
import { IdParam, iso, isoOrNull, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import { TERMINAL_STATUSES } from './ide.lifecycles.js';
import { BigText, literals, Nullable, Str } from './ide.js';
import type { IdeRow } from './ide.repository.js';

export const TerminalSession = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), user_id: Type.String(), shell: Nullable(Type.String()), working_directory: Nullable(Type.String()),
    command: Nullable(Type.String()), status: literals(TERMINAL_STATUSES), output: Nullable(Type.String()), exit_code: Nullable(Type.Integer()),
    duration_ms: Nullable(Type.Integer()), started_at: Timestamp, ended_at: NullableTimestamp, created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'TerminalSession' },
);

export const CreateTerminalSessionBody = Type.Object(
  {
    user_id: Type.Optional(IdParam),
    shell: Type.Optional(Str(255)),
    working_directory: Type.Optional(Str(4096)),
    command: Type.Optional(Str(65_536)),
    output: Type.Optional(BigText),
  },
  { additionalProperties: false },
);

/**
 * While running: a new working directory, the command, the output so far (replaces it). Ending it
 * (`status`: exited, killed or failed) stamps ended_at and the duration; an ended session is final.
 */
export const UpdateTerminalSessionBody = Type.Object(
  {
    status: Type.Optional(literals(TERMINAL_STATUSES)),
    working_directory: Type.Optional(Str(4096)),
    command: Type.Optional(Str(65_536)),
    output: Type.Optional(BigText),
    exit_code: Type.Optional(Type.Integer({ minimum: -2_147_483_648, maximum: 2_147_483_647 })),
  },
  { additionalProperties: false },
);

export const terminalSessionToApi = (r: IdeRow<'terminal_sessions'>) => ({
  id: r.id, project_id: r.project_id, user_id: r.user_id, shell: r.shell,
  working_directory: r.working_directory, command: r.command, status: r.status as (typeof TERMINAL_STATUSES)[number],
  output: r.output, exit_code: r.exit_code, duration_ms: r.duration_ms,
  started_at: iso(r.started_at), ended_at: isoOrNull(r.ended_at), created_at: iso(r.created_at), updated_at: iso(r.updated_at),
});
