import { newId } from '../../lib/ids.js';
import { hintOf, serviceTokenAad } from '../secrets/secrets.js';
import type { Anomaly, BatchContext, TableStep } from './import.js';
import { importMapFind, type MapRow } from './import.repository.js';
import { bool, date, int, json, str, Tally } from './import.rows.js';
import type { SourceDb } from './import.source.js';
import { fits, type Mapped, mappedStep, unknownValue } from './import.steps.js';

/**
 * Seed 000's ownerless tables (docs/import.md, app-builder, `--owner`): cc.db is a single-user app,
 * so its projects, their AI work and its service tokens name no user. With `--owner` they arrive
 * owned by that Tally user: projects and tokens directly, everything else through its project.
 * Tokens (plain text in 000) are sealed exactly as the secrets module seals them; env_vars values
 * are under 000's own key and are not imported (`key_rotation`). Portable SQL (SQLite and PostgreSQL).
 */

/** The owner's Tally id: given, or the mapping of the source user it names (null: not imported). */
const owners = new WeakMap<BatchContext, Promise<string | null>>();
export function ownerUserId(ctx: BatchContext): Promise<string | null> {
  const o = ctx.owner;
  if (!o) return Promise.resolve(null);
  if (o.sourceId === null) return Promise.resolve(o.userId);
  const sourceId = o.sourceId;
  let found = owners.get(ctx);
  if (!found) {
    found = importMapFind(ctx.trx, ctx.source, 'users', [sourceId]).then((m) => m.get(sourceId)?.target_id ?? null);
    owners.set(ctx, found);
  }
  return found;
}

const notOwned: Mapped = { skip: 'owner_not_imported' };
const objectOf = (v: unknown): Record<string, unknown> | null => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null);
/** A whole number ≥ 0 or null (a null source value); undefined when the source has something else. */
const count = (v: unknown): number | null | undefined => {
  if (v === null || v === undefined) return null;
  const n = int(v);
  return n !== null && n >= 0 ? n : undefined;
};
/** A non-negative decimal as text (numeric), exactly; undefined when it is not one. */
const money = (v: unknown): string | null | undefined => (v === null || v === undefined ? null : /^\d+(\.\d+)?$/.test(String(v).trim()) ? String(v).trim() : undefined);
const exists = (t: (n: string) => string, table: string, column: string, parent: string) => `exists (select 1 from ${t(parent)} x where x.id = ${t(table)}.${column})`;
const project = (o: Record<string, MapRow | null>) => o.project_id as MapRow;
const sameProject = (row: MapRow | null, projectId: string) => row === null || row.facts.project_id === projectId;

const serviceTokens = mappedStep({
  table: 'service_tokens',
  target: 'service_tokens',
  columns: () => 'id, provider, name, token, created_at, last_used',
  owners: [],
  conflictRule: 'The owner already has a service token with this provider and name: not imported',
  async map(r, _owners, ctx) {
    const user = await ownerUserId(ctx);
    if (!user) return notOwned;
    const token = str(r.token) ?? '';
    if (!/^[a-z0-9_.-]{1,50}$/.test(String(r.provider)) || !fits(r.name, 255, 1) || token === '') {
      return unknownValue("A service token whose provider is not Tally's form (a-z 0-9 _ . -), whose name is empty or too long, or that is empty is not imported", { provider: r.provider });
    }
    const id = newId('serviceToken');
    return {
      targetId: id,
      values: {
        id,
        user_id: user,
        created_by: user,
        provider: String(r.provider),
        name: String(r.name),
        // Sealed as SecretsService.createServiceToken seals: bound to the row id, the key id beside it.
        token_enc: ctx.seal(token, serviceTokenAad(id)),
        key_id: ctx.sealKeyId,
        token_hint: hintOf(token),
        config: JSON.stringify({ imported_from: 'app-builder' }),
        last_used_at: date(r.last_used),
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const projects = mappedStep({
  table: 'projects',
  target: 'projects',
  columns: () =>
    'id, name, description, status, preview_url, preview_port, repo_path, initial_prompt, template_type, active_claude_session_id, active_cursor_session_id, preferred_cli, selected_model, fallback_enabled, settings, created_at, last_active_at',
  owners: [],
  conflictRule: 'Tally already has a project with this id: it and its AI work are not imported',
  async map(r, _owners, ctx) {
    const user = await ownerUserId(ctx);
    if (!user) return notOwned;
    const settings = r.settings === null ? {} : json(r.settings);
    const port = r.preview_port === null ? null : int(r.preview_port);
    if (
      !fits(r.id, 64, 1) || !fits(r.name, 255, 1) || !fits(r.description, 5000) || !fits(r.status, 32, 1) || !fits(r.preview_url, 2048) || (r.preview_port !== null && (port === null || port < 1 || port > 65535)) ||
      !fits(r.repo_path, 1024) || !fits(r.initial_prompt, 100_000) || !fits(r.template_type, 64) || !fits(r.active_claude_session_id, 128) || !fits(r.active_cursor_session_id, 128) ||
      !fits(r.preferred_cli, 32, 1) || !fits(r.selected_model, 64) || !objectOf(settings)
    ) {
      return unknownValue('A project whose name, port, lengths or settings Tally cannot take as they are is not imported (nor its AI work)', { name: r.name, preview_port: r.preview_port });
    }
    const id = String(r.id);
    return {
      targetId: id,
      facts: { project_id: id, user_id: user },
      values: {
        id,
        user_id: user,
        created_by: user,
        name: String(r.name),
        description: str(r.description),
        status: String(r.status),
        preview_url: str(r.preview_url),
        preview_port: port,
        repo_path: str(r.repo_path),
        initial_prompt: str(r.initial_prompt),
        template_type: str(r.template_type),
        active_claude_session_id: str(r.active_claude_session_id),
        active_cursor_session_id: str(r.active_cursor_session_id),
        preferred_cli: String(r.preferred_cli),
        selected_model: str(r.selected_model),
        fallback_enabled: bool(r.fallback_enabled),
        settings: JSON.stringify(settings),
        last_active_at: date(r.last_active_at),
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const SESSION_STATUS = new Set(['active', 'completed', 'failed', 'canceled']);

const sessions = mappedStep({
  table: 'sessions',
  target: 'agent_sessions',
  columns: (t) =>
    `id, project_id, claude_session_id, status, model, cli_type, transcript_path, transcript_format, instruction, summary, total_messages, total_tools_used, total_tokens, total_cost_usd, duration_ms, started_at, completed_at,
     ${exists(t, 'sessions', 'project_id', 'projects')} as owner_exists`,
  owners: [{ column: 'project_id', table: 'projects', required: true }],
  conflictRule: 'Tally already has this session: not imported',
  map(r, owners, ctx) {
    const duration = count(r.duration_ms);
    if (!SESSION_STATUS.has(String(r.status)) || !fits(r.claude_session_id, 128) || !fits(r.model, 128) || !fits(r.cli_type, 32, 1) || !fits(r.transcript_path, 1024) || !fits(r.transcript_format, 32, 1) || !fits(r.instruction, 100_000) || !fits(r.summary, 100_000) || duration === undefined) {
      return unknownValue('A session whose status, lengths or duration Tally cannot take as they are is not imported (its messages and tool calls lose the link)', { status: r.status });
    }
    const id = newId('agentSession');
    const started = date(r.started_at) ?? ctx.now;
    return {
      targetId: id,
      // Tally's totals are kept by triggers as the session's messages and tool calls arrive; 000's are facts.
      facts: { project_id: project(owners).target_id, source_totals: { messages: int(r.total_messages), tools_used: int(r.total_tools_used), tokens: int(r.total_tokens), cost_usd: str(r.total_cost_usd) } },
      values: {
        id,
        project_id: project(owners).target_id,
        external_session_id: str(r.claude_session_id),
        status: String(r.status),
        model: str(r.model),
        cli_type: String(r.cli_type),
        transcript_path: str(r.transcript_path),
        transcript_format: String(r.transcript_format),
        instruction: str(r.instruction),
        summary: str(r.summary),
        duration_ms: duration,
        started_at: started,
        completed_at: date(r.completed_at),
        created_at: started,
      },
    };
  },
});

const ROLES = new Set(['user', 'assistant', 'system', 'tool']);

const messages = mappedStep({
  table: 'messages',
  target: 'messages',
  columns: (t) =>
    `id, project_id, role, message_type, content, metadata_json, parent_message_id, session_id, conversation_id, duration_ms, token_count, cost_usd, commit_sha, cli_source, created_at,
     ${exists(t, 'messages', 'project_id', 'projects')} as owner_exists`,
  owners: [
    { column: 'project_id', table: 'projects', required: true },
    { column: 'session_id', table: 'sessions', required: false },
    // A parent later in id order is not imported yet: the message arrives without the link.
    { column: 'parent_message_id', table: 'messages', required: false },
  ],
  conflictRule: 'Tally already has this message: not imported',
  map(r, owners, ctx) {
    const p = project(owners);
    const metadata = r.metadata_json === null ? {} : json(r.metadata_json);
    const duration = count(r.duration_ms);
    const tokens = count(r.token_count);
    const cost = money(r.cost_usd);
    if (!ROLES.has(String(r.role)) || !fits(r.message_type, 32) || !fits(r.content, 1_000_000) || !objectOf(metadata) || duration === undefined || tokens === undefined || cost === undefined || !fits(r.commit_sha, 64) || !fits(r.cli_source, 32)) {
      return unknownValue('A message whose role, content, metadata, counts or cost Tally cannot take as they are is not imported', { role: r.role });
    }
    if (!sameProject(owners.session_id ?? null, p.target_id) || !sameProject(owners.parent_message_id ?? null, p.target_id)) {
      return unknownValue("A message whose session or parent belongs to another project is not imported (Tally keeps a project's work together)", { session_id: str(r.session_id), parent_message_id: str(r.parent_message_id) });
    }
    const id = newId('message');
    // 000's conversation_id names no row (it is free text): kept in the metadata.
    const conversation = str(r.conversation_id);
    return {
      targetId: id,
      facts: { project_id: p.target_id },
      values: {
        id,
        project_id: p.target_id,
        session_id: owners.session_id?.target_id ?? null,
        parent_message_id: owners.parent_message_id?.target_id ?? null,
        // The single user of 000 wrote its user messages: they are the owner's.
        user_id: r.role === 'user' ? p.facts.user_id : null,
        role: String(r.role),
        message_type: str(r.message_type),
        content: String(r.content),
        metadata: JSON.stringify({ ...(metadata as Record<string, unknown>), ...(conversation ? { source_conversation_id: conversation } : {}) }),
        duration_ms: duration,
        token_count: tokens,
        cost_usd: cost,
        commit_sha: str(r.commit_sha),
        cli_source: str(r.cli_source),
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const toolsUsage = mappedStep({
  table: 'tools_usage',
  target: 'tool_usages',
  columns: (t) =>
    `id, session_id, project_id, message_id, tool_name, tool_action, input_data, output_data, files_affected, lines_added, lines_removed, duration_ms, is_error, error_message, created_at,
     (${exists(t, 'tools_usage', 'project_id', 'projects')} and ${exists(t, 'tools_usage', 'session_id', 'sessions')}) as owner_exists`,
  owners: [
    { column: 'project_id', table: 'projects', required: true },
    { column: 'session_id', table: 'sessions', required: true },
    { column: 'message_id', table: 'messages', required: false },
  ],
  conflictRule: 'Tally already has this tool call: not imported',
  map(r, owners, ctx) {
    const p = project(owners);
    const files = r.files_affected === null ? [] : json(r.files_affected);
    const added = count(r.lines_added);
    const removed = count(r.lines_removed);
    const duration = count(r.duration_ms);
    if (!fits(r.tool_name, 64, 1) || !fits(r.tool_action, 32) || !Array.isArray(files) || added === undefined || removed === undefined || duration === undefined || !fits(r.error_message, 10_000)) {
      return unknownValue('A tool call whose name, counts, files or error Tally cannot take as they are is not imported', { tool_name: r.tool_name });
    }
    if (!sameProject(owners.session_id ?? null, p.target_id) || !sameProject(owners.message_id ?? null, p.target_id)) {
      return unknownValue("A tool call whose session or message belongs to another project is not imported (Tally keeps a project's work together)", { session_id: str(r.session_id) });
    }
    const id = newId('toolUsage');
    const raw = (v: unknown) => (v === null || v === undefined ? null : JSON.stringify(json(v)));
    return {
      targetId: id,
      values: {
        id,
        project_id: p.target_id,
        session_id: owners.session_id?.target_id,
        message_id: owners.message_id?.target_id ?? null,
        tool_name: String(r.tool_name),
        tool_action: str(r.tool_action),
        input_data: raw(r.input_data),
        output_data: raw(r.output_data),
        files_affected: JSON.stringify(files),
        lines_added: added ?? 0,
        lines_removed: removed ?? 0,
        duration_ms: duration,
        is_error: bool(r.is_error),
        error_message: str(r.error_message),
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const userRequests = mappedStep({
  table: 'user_requests',
  target: 'user_requests',
  columns: (t) =>
    `id, project_id, user_message_id, session_id, instruction, request_type, is_completed, is_successful, result_metadata, error_message, cli_type_used, model_used, created_at, started_at, completed_at,
     ${exists(t, 'user_requests', 'project_id', 'projects')} as owner_exists`,
  owners: [
    { column: 'project_id', table: 'projects', required: true },
    { column: 'user_message_id', table: 'messages', required: false },
    { column: 'session_id', table: 'sessions', required: false },
  ],
  conflictRule: 'Tally already has this request, or a request for its message: not imported',
  map(r, owners, ctx) {
    const p = project(owners);
    const completed = bool(r.is_completed);
    const successful = r.is_successful === null ? null : bool(r.is_successful);
    const completedAt = date(r.completed_at);
    if (!fits(r.instruction, 100_000, 1) || !fits(r.request_type, 16, 1) || !fits(r.error_message, 10_000) || !fits(r.cli_type_used, 32) || !fits(r.model_used, 128) || completed !== (completedAt !== null) || (!completed && successful !== null)) {
      return unknownValue('A request whose instruction or lengths Tally cannot take, or that is completed without a completion time (or the reverse), or successful without being completed, is not imported', { is_completed: r.is_completed, completed_at: str(r.completed_at) });
    }
    if (!sameProject(owners.session_id ?? null, p.target_id) || !sameProject(owners.user_message_id ?? null, p.target_id)) {
      return unknownValue("A request whose session or message belongs to another project is not imported (Tally keeps a project's work together)", { session_id: str(r.session_id) });
    }
    const id = newId('userRequest');
    return {
      targetId: id,
      values: {
        id,
        project_id: p.target_id,
        user_message_id: owners.user_message_id?.target_id ?? null,
        session_id: owners.session_id?.target_id ?? null,
        user_id: p.facts.user_id,
        instruction: String(r.instruction),
        request_type: String(r.request_type),
        is_completed: completed,
        is_successful: successful,
        result_metadata: r.result_metadata === null ? null : JSON.stringify(json(r.result_metadata)),
        error_message: str(r.error_message),
        cli_type_used: str(r.cli_type_used),
        model_used: str(r.model_used),
        started_at: date(r.started_at),
        completed_at: completedAt,
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const SHA = /^[0-9a-f]{7,64}$/;

const commits = mappedStep({
  table: 'commits',
  target: 'commits',
  columns: (t) =>
    `id, project_id, session_id, commit_sha, parent_sha, message, author_type, author_name, author_email, files_changed, stats, diff, committed_at, ${exists(t, 'commits', 'project_id', 'projects')} as owner_exists`,
  owners: [
    { column: 'project_id', table: 'projects', required: true },
    { column: 'session_id', table: 'sessions', required: false },
  ],
  conflictRule: 'Tally already has this commit in the project: not imported',
  map(r, owners, ctx) {
    const p = project(owners);
    const files = r.files_changed === null ? [] : json(r.files_changed);
    const stats = r.stats === null ? {} : json(r.stats);
    if (!SHA.test(String(r.commit_sha)) || (r.parent_sha !== null && !SHA.test(String(r.parent_sha))) || !fits(r.message, 100_000) || !fits(r.author_type, 32) || !fits(r.author_name, 128) || !fits(r.author_email, 320) || !fits(r.diff, 5_000_000)) {
      return unknownValue('A commit whose sha is not lower-case hex (7 to 64), or whose message, author or diff Tally cannot take as it is, is not imported', { commit_sha: r.commit_sha });
    }
    if (!sameProject(owners.session_id ?? null, p.target_id)) return unknownValue('A commit whose session belongs to another project is not imported', { session_id: str(r.session_id) });
    const id = newId('commit');
    const committed = date(r.committed_at) ?? ctx.now;
    return {
      targetId: id,
      values: {
        id,
        project_id: p.target_id,
        session_id: owners.session_id?.target_id ?? null,
        commit_sha: String(r.commit_sha),
        parent_sha: str(r.parent_sha),
        message: String(r.message),
        author_type: str(r.author_type),
        author_name: str(r.author_name),
        author_email: str(r.author_email),
        files_changed: JSON.stringify(files),
        stats: JSON.stringify(stats),
        diff: str(r.diff),
        committed_at: committed,
        created_at: committed,
      },
    };
  },
});

const CONNECTION_STATUS = new Set(['connected', 'disconnected', 'error', 'pending']);

const connections = mappedStep({
  table: 'project_service_connections',
  target: 'service_connections',
  columns: (t) => `id, project_id, provider, status, service_data, created_at, last_sync_at, ${exists(t, 'project_service_connections', 'project_id', 'projects')} as owner_exists`,
  owners: [{ column: 'project_id', table: 'projects', required: true }],
  conflictRule: 'Tally already has a connection of this provider for the project: not imported',
  map(r, owners, ctx) {
    const data = r.service_data === null ? {} : json(r.service_data);
    if (!/^[a-z0-9_.-]{1,32}$/.test(String(r.provider)) || !CONNECTION_STATUS.has(String(r.status)) || !objectOf(data)) {
      return unknownValue("A connection whose provider, status or data Tally cannot take as they are is not imported", { provider: r.provider, status: r.status });
    }
    const id = newId('serviceConnection');
    return {
      targetId: id,
      values: { id, project_id: project(owners).target_id, provider: String(r.provider), status: String(r.status), service_data: JSON.stringify(data), last_sync_at: date(r.last_sync_at), created_at: date(r.created_at) ?? ctx.now },
    };
  },
});

/** env_vars: read and counted, never written — each value is under 000's own key (`key_rotation`, from the scan). */
const envVars: TableStep = {
  table: 'env_vars',
  key: 'id',
  columns: () => 'id',
  write(_ctx, rows) {
    const tally = new Tally();
    tally.skip('rotation', rows.length);
    return Promise.resolve(tally.outcome);
  },
};

const WORK = ['sessions', 'messages', 'tools_usage', 'user_requests', 'commits', 'env_vars', 'project_service_connections'];

/** With `--owner`: env vars whose value Tally cannot open, and AI work whose project is missing. */
export async function scanWork(src: SourceDb, limit: number): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const out: Anomaly[] = [];
  const vars = await src.rows<Record<string, unknown>>(`select id, project_id, key, scope from ${t('env_vars')} order by id limit $1`, [limit]);
  for (const r of vars) {
    out.push({
      kind: 'key_rotation',
      table: 'env_vars',
      source_id: String(r.id),
      rule: "The value is encrypted under 000's own key, which Tally does not hold and will not store as a value: not imported; set it again through the secrets API",
      details: { project_id: str(r.project_id), key: str(r.key), scope: str(r.scope) },
    });
  }
  for (const table of WORK) {
    const rows = await src.rows<Record<string, unknown>>(`select c.id, c.project_id from ${t(table)} c left join ${t('projects')} p on p.id = c.project_id where p.id is null order by c.id limit $1`, [limit]);
    for (const r of rows) out.push({ kind: 'orphan', table, source_id: String(r.id), rule: 'A row whose project is not in projects belongs to nobody: it is not imported', details: { project_id: str(r.project_id) } });
  }
  return out;
}

/** The source users an `--owner` value names (id, or e-mail case-insensitively). */
export async function findSourceOwner(src: SourceDb, given: string): Promise<string[]> {
  const rows = await src.rows<{ id: unknown }>(`select id from ${src.t('users')} where id = $1 or lower(email) = $2 order by id limit 3`, [given, given.toLowerCase()]);
  return rows.map((r) => String(r.id));
}

export const ownerlessSteps: TableStep[] = [serviceTokens, projects, sessions, messages, toolsUsage, userRequests, commits, envVars, connections];
