import { Type, type TSchema } from 'typebox';
import { JsonObject, Metadata, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import type { WorkspaceRole } from '../workspaces/workspaces.js';

/**
 * Projects (owned by a user or a workspace) and the agent work recorded in them. Access follows
 * the owner: a user's project is theirs alone; a workspace's is read by every member (viewer and
 * up), written by owners, admins and members, and deleted by the workspace owner (docs/projects.md).
 */
export type ProjectRole = WorkspaceRole;
export const canWrite = (r: ProjectRole): boolean => r === 'owner' || r === 'admin' || r === 'member';
export const canDelete = (r: ProjectRole): boolean => r === 'owner';

const N = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Opt = <T extends TSchema>(t: T) => Type.Optional(t);
const Str = (max: number, min = 1) => Type.String({ minLength: min, maxLength: max });
const Id = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:@-]+$' });
const Int = (max = 2_000_000_000) => Type.Integer({ minimum: 0, maximum: max });
const Cost = Type.Number({ minimum: 0, maximum: 1_000_000_000 });
const Sha = Type.String({ pattern: '^[0-9a-f]{7,64}$' });
const Slug = Type.String({ pattern: '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$' });
const JsonAny = Type.Unknown();

// ---------------------------------------------------------------------------------------------
// Projects
// ---------------------------------------------------------------------------------------------

export const Project = Type.Object(
  {
    id: Type.String(), user_id: N(Type.String()), workspace_id: N(Type.String()), created_by: N(Type.String()),
    name: Type.String(), slug: N(Type.String()), description: N(Type.String()), status: Type.String(),
    preview_url: N(Type.String()), preview_port: N(Type.Integer()), repo_path: N(Type.String()),
    repository_url: N(Type.String()), language: N(Type.String()), framework: N(Type.String()),
    visibility: Type.String(), initial_prompt: N(Type.String()), template_type: N(Type.String()),
    active_claude_session_id: N(Type.String()), active_cursor_session_id: N(Type.String()),
    preferred_cli: Type.String(), selected_model: N(Type.String()), fallback_enabled: Type.Boolean(),
    settings: Type.Record(Type.String(), Type.Unknown()), last_active_at: NullableTimestamp,
    created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'Project' },
);

const projectFields = {
  slug: Opt(Slug),
  description: Opt(N(Str(5000, 0))),
  status: Opt(Str(32)),
  preview_url: Opt(N(Str(2048))),
  preview_port: Opt(N(Type.Integer({ minimum: 1, maximum: 65535 }))),
  repo_path: Opt(N(Str(1024))),
  repository_url: Opt(N(Str(2048))),
  language: Opt(N(Str(64))),
  framework: Opt(N(Str(64))),
  visibility: Opt(Type.Union([Type.Literal('public'), Type.Literal('private'), Type.Literal('team')])),
  initial_prompt: Opt(N(Str(100_000, 0))),
  template_type: Opt(N(Str(64))),
  active_claude_session_id: Opt(N(Str(128))),
  active_cursor_session_id: Opt(N(Str(128))),
  preferred_cli: Opt(Str(32)),
  selected_model: Opt(N(Str(64))),
  fallback_enabled: Opt(Type.Boolean()),
  settings: Opt(JsonObject(100)),
  last_active_at: Opt(N(Type.String({ format: 'date-time' }))),
};

export const CreateProjectBody = Type.Object(
  {
    name: Str(255),
    /** A workspace project; otherwise the project is the caller's own (or `user_id`'s, for the service). */
    workspace_id: Opt(Id),
    user_id: Opt(Id),
    ...projectFields,
  },
  { additionalProperties: false },
);

export const UpdateProjectBody = Type.Object(
  { name: Opt(Str(255)), ...projectFields },
  { additionalProperties: false, minProperties: 1 },
);

// ---------------------------------------------------------------------------------------------
// Conversations, agent sessions, messages, tool usage, user requests, commits
// ---------------------------------------------------------------------------------------------

export const Conversation = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), user_id: N(Type.String()), title: N(Type.String()),
    context: Type.Record(Type.String(), Type.Unknown()), is_archived: Type.Boolean(), created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'Conversation' },
);
export const CreateConversationBody = Type.Object(
  { title: Opt(Str(500)), context: Opt(JsonObject(100)), is_archived: Opt(Type.Boolean()) },
  { additionalProperties: false },
);

export const SESSION_STATUSES = ['active', 'completed', 'failed', 'canceled'] as const;
export const AgentSession = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), conversation_id: N(Type.String()), external_session_id: N(Type.String()),
    status: Type.Union(SESSION_STATUSES.map((s) => Type.Literal(s))), model: N(Type.String()), cli_type: Type.String(),
    transcript_path: N(Type.String()), transcript_format: Type.String(), instruction: N(Type.String()), summary: N(Type.String()),
    total_messages: Type.Integer(), total_tools_used: Type.Integer(), total_tokens: Type.Integer(),
    total_cost_usd: Type.Number(), total_credits: Type.Integer(), duration_ms: N(Type.Integer()),
    started_at: Timestamp, completed_at: NullableTimestamp, created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'AgentSession' },
);
export const CreateSessionBody = Type.Object(
  {
    conversation_id: Opt(Id), external_session_id: Opt(Str(128)), model: Opt(Str(128)), cli_type: Opt(Str(32)),
    transcript_path: Opt(Str(1024)), transcript_format: Opt(Str(32)), instruction: Opt(Str(100_000)),
  },
  { additionalProperties: false },
);
/** Ends a session (status leaves `active` once) or updates its summary and transcript. */
export const UpdateSessionBody = Type.Object(
  {
    status: Opt(Type.Union([Type.Literal('completed'), Type.Literal('failed'), Type.Literal('canceled')])),
    summary: Opt(Str(100_000)), transcript_path: Opt(Str(1024)), external_session_id: Opt(Str(128)),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const MESSAGE_ROLES = ['user', 'assistant', 'system', 'tool'] as const;
export const Message = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), session_id: N(Type.String()), conversation_id: N(Type.String()),
    parent_message_id: N(Type.String()), user_id: N(Type.String()), role: Type.Union(MESSAGE_ROLES.map((r) => Type.Literal(r))),
    message_type: N(Type.String()), content: Type.String(), metadata: Type.Record(Type.String(), Type.Unknown()),
    model: N(Type.String()), duration_ms: N(Type.Integer()), token_count: N(Type.Integer()), cost_usd: N(Type.Number()),
    charge_metric: N(Type.String()), charge_quantity: N(Type.Integer()), credits_charged: N(Type.Integer()),
    usage_event_id: N(Type.String()), commit_sha: N(Type.String()), cli_source: N(Type.String()), created_at: Timestamp,
  },
  { title: 'Message' },
);
export const CreateMessageBody = Type.Object(
  {
    role: Type.Union(MESSAGE_ROLES.map((r) => Type.Literal(r))), content: Str(1_000_000, 0),
    session_id: Opt(Id), conversation_id: Opt(Id), parent_message_id: Opt(Id), message_type: Opt(Str(32)),
    metadata: Opt(Metadata), model: Opt(Str(128)), duration_ms: Opt(Int()), token_count: Opt(Int()), cost_usd: Opt(Cost),
    commit_sha: Opt(Sha), cli_source: Opt(Str(32)),
    /** Charge the project's owner for this message through a usage event (docs/projects.md). */
    charge: Opt(Type.Object({ metric: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }), quantity: Type.Integer({ minimum: 1, maximum: 1_000_000_000 }) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export const ToolUsage = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), session_id: Type.String(), message_id: N(Type.String()),
    tool_name: Type.String(), tool_action: N(Type.String()), input_data: JsonAny, output_data: JsonAny,
    files_affected: JsonAny, lines_added: Type.Integer(), lines_removed: Type.Integer(), duration_ms: N(Type.Integer()),
    is_error: Type.Boolean(), error_message: N(Type.String()), created_at: Timestamp,
  },
  { title: 'ToolUsage' },
);
export const CreateToolUsageBody = Type.Object(
  {
    session_id: Id, message_id: Opt(Id), tool_name: Str(64), tool_action: Opt(Str(32)),
    input_data: Opt(JsonAny), output_data: Opt(JsonAny), files_affected: Opt(Type.Array(Str(1024), { maxItems: 1000 })),
    lines_added: Opt(Int()), lines_removed: Opt(Int()), duration_ms: Opt(Int()), is_error: Opt(Type.Boolean()), error_message: Opt(Str(10_000)),
  },
  { additionalProperties: false },
);

export const UserRequest = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), user_message_id: N(Type.String()), session_id: N(Type.String()),
    user_id: N(Type.String()), instruction: Type.String(), request_type: Type.String(), is_completed: Type.Boolean(),
    is_successful: N(Type.Boolean()), result_metadata: JsonAny, error_message: N(Type.String()), cli_type_used: N(Type.String()),
    model_used: N(Type.String()), started_at: NullableTimestamp, completed_at: NullableTimestamp, created_at: Timestamp,
  },
  { title: 'UserRequest' },
);
export const CreateRequestBody = Type.Object(
  {
    instruction: Str(100_000), user_message_id: Opt(Id), session_id: Opt(Id), request_type: Opt(Str(16)),
    cli_type_used: Opt(Str(32)), model_used: Opt(Str(128)),
  },
  { additionalProperties: false },
);
export const CompleteRequestBody = Type.Object(
  { is_successful: Type.Boolean(), result_metadata: Opt(JsonAny), error_message: Opt(Str(10_000)) },
  { additionalProperties: false },
);

export const Commit = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), session_id: N(Type.String()), commit_sha: Type.String(), parent_sha: N(Type.String()),
    message: Type.String(), author_type: N(Type.String()), author_name: N(Type.String()), author_email: N(Type.String()),
    files_changed: JsonAny, stats: JsonAny, diff: N(Type.String()), committed_at: Timestamp, created_at: Timestamp,
  },
  { title: 'Commit' },
);
export const CreateCommitBody = Type.Object(
  {
    commit_sha: Sha, parent_sha: Opt(Sha), message: Str(100_000), session_id: Opt(Id), author_type: Opt(Str(32)),
    author_name: Opt(Str(128)), author_email: Opt(Str(320)), files_changed: Opt(Type.Array(JsonAny, { maxItems: 10_000 })),
    stats: Opt(JsonObject(50)), diff: Opt(Str(5_000_000, 0)), committed_at: Opt(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);

// ---------------------------------------------------------------------------------------------
// Row → API: timestamps as RFC 3339, numerics as numbers (rows carry no secrets here).
// ---------------------------------------------------------------------------------------------

const NUMERIC = new Set(['cost_usd', 'total_cost_usd']);

/** One mapper for every agent-work row: dates to ISO strings, numeric columns to numbers. */
export function rowToApi<R extends Record<string, unknown>>(row: R): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (k === 'cursor_us') continue;
    if (v instanceof Date) out[k] = v.toISOString();
    else if (NUMERIC.has(k) && v !== null && v !== undefined) out[k] = Number(v);
    else if ((k.endsWith('_at') || k === 'committed_at') && typeof v === 'string') out[k] = new Date(v).toISOString();
    else out[k] = v;
  }
  return out;
}
