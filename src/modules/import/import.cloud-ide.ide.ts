import { newId } from '../../lib/ids.js';
import { GIT_PROVIDERS, SYNC_STATUSES } from '../ide/ide.lifecycles.js';
import type { Anomaly, TableStep } from './import.js';
import { date, int, json, str } from './import.rows.js';
import type { SourceDb } from './import.source.js';
import { fits, type Mapped, mappedStep, unknownValue } from './import.steps.js';
import { fileSteps } from './import.cloud-ide.files.js';
import { importMapFind, type MapRow } from './import.repository.js';

/**
 * Seed 002's projects and IDE tables (docs/import.md, cloud-ide; docs/ide.md for where each goes):
 * projects (owned by their workspace), their files and versions (import.cloud-ide.files.ts), then
 * the six IDE resources of issue 19 (editor sessions linked to the files) and the users'
 * OAuth connections (tokens sealed on the way in). Each value is taken as it is or refused by the
 * `unknown_value` rule — the import never bends a value to fit a check.
 */
type T = (n: string) => string;
const has = (t: T, table: string, column: string, parent: string) => `exists (select 1 from ${t(parent)} p where p.id = ${t(table)}.${column})`;
/** `owner_exists` for a row that needs its project (and, for sessions and runs, its user). */
const ownerExists = (t: T, table: string, withUser: boolean) =>
  `${has(t, table, 'project_id', 'projects')}${withUser ? ` and ${has(t, table, 'user_id', 'users')}` : ''} as owner_exists`;
const objectOf = (v: unknown): Record<string, unknown> | null => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null);
const MIB = 1_048_576;

const PROJECT_SLUG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const VISIBILITY = new Set(['public', 'private', 'team']);

const projects = mappedStep({
  table: 'projects',
  target: 'projects',
  columns: (t) => `id::text as id, workspace_id::text as workspace_id, name, slug, description, repository_url, language, framework, visibility, settings, last_accessed_at, created_at,
    ${has(t, 'projects', 'workspace_id', 'workspaces')} as owner_exists`,
  owners: [{ column: 'workspace_id', table: 'workspaces', required: true }],
  conflictRule: 'Tally already has a project with this id, or this slug in the workspace: it and its IDE rows are not imported',
  map(r, owners, ctx) {
    const visibility = str(r.visibility) ?? 'private';
    const settings = json(r.settings) ?? {};
    if (!PROJECT_SLUG.test(String(r.slug)) || !fits(r.name, 255, 1) || !fits(r.description, 5000) || !fits(r.repository_url, 2048) || !fits(r.language, 64) || !fits(r.framework, 64) || !VISIBILITY.has(visibility) || !objectOf(settings)) {
      return unknownValue('A project whose slug, name, visibility or settings Tally cannot take as they are is not imported (nor its IDE rows)', { slug: r.slug, visibility: r.visibility });
    }
    const id = String(r.id);
    return {
      targetId: id,
      values: {
        id,
        workspace_id: owners.workspace_id?.target_id,
        name: String(r.name),
        slug: String(r.slug),
        description: str(r.description),
        repository_url: str(r.repository_url),
        language: str(r.language),
        framework: str(r.framework),
        visibility,
        settings: JSON.stringify(settings),
        last_active_at: date(r.last_accessed_at),
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

/** An editor session's `open_files` entry names a file by `file_id` (the seed's comment; Tally's the same). */
const openFileId = (e: unknown): string | null => str(objectOf(e)?.file_id ?? null);

const editorSessions = mappedStep<Map<string, MapRow>>({
  table: 'editor_sessions',
  target: 'editor_sessions',
  columns: (t) => `id::text as id, user_id::text as user_id, project_id::text as project_id, open_files, active_file_id::text as active_file_id, layout_state, last_active_at, created_at, ${ownerExists(t, 'editor_sessions', true)}`,
  owners: [
    { column: 'project_id', table: 'projects', required: true },
    { column: 'user_id', table: 'users', required: true },
  ],
  // The files the batch's sessions name, as imported (one lookup a batch): files keep their source ids.
  lookup: (ctx, rows) => {
    const ids = rows.flatMap((r) => {
      const open = json(r.open_files);
      return [...(Array.isArray(open) ? open.map(openFileId) : []), str(r.active_file_id)].flatMap((id) => (id === null ? [] : [id]));
    });
    return importMapFind(ctx.trx, ctx.source, 'files', ids);
  },
  conflictRule: 'Tally already has an open editor session for this user and project: not imported',
  map(r, owners, ctx, files) {
    const open = json(r.open_files) ?? [];
    const layout = json(r.layout_state) ?? {};
    if (!Array.isArray(open) || !objectOf(layout)) return unknownValue('An editor session whose open_files is not a list or layout_state not an object is not imported', { open_files: typeof open });
    const project = owners.project_id?.target_id;
    // A file Tally has in this session's project (Tally refuses a session naming any other, as its API does).
    const inProject = (id: string | null) => (id === null ? null : files.get(id)?.facts.project_id === project ? (files.get(id)?.target_id ?? null) : null);
    const kept = open.filter((e) => inProject(openFileId(e)) !== null);
    const active = inProject(str(r.active_file_id));
    const dropped = [...open.filter((e) => !kept.includes(e)).map((e) => openFileId(e) ?? JSON.stringify(e)), ...(r.active_file_id !== null && active === null ? [String(r.active_file_id)] : [])];
    if (dropped.length > 0) {
      ctx.anomaly({ kind: 'unlinked_file', table: 'editor_sessions', source_id: String(r.id), rule: "An editor session's open or active file that is not a file imported into its project (a folder, a file in the trash or not imported, another project's, or no file) is left out; the session is imported with the others", details: { files: [...new Set(dropped)] } });
    }
    const id = newId('editorSession');
    // 002 kept one session per user and project, the editor's state: it stays open (Tally's one open session).
    return {
      targetId: id,
      values: {
        id,
        project_id: project,
        user_id: owners.user_id?.target_id,
        status: 'open',
        open_files: JSON.stringify(kept),
        active_file_id: active,
        layout_state: JSON.stringify(layout),
        last_active_at: date(r.last_active_at) ?? ctx.now,
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const terminalSessions = mappedStep({
  table: 'terminal_sessions',
  target: 'terminal_sessions',
  columns: (t) => `id::text as id, user_id::text as user_id, project_id::text as project_id, command, output, exit_code, duration_ms, working_directory, created_at, ${ownerExists(t, 'terminal_sessions', true)}`,
  owners: [
    { column: 'project_id', table: 'projects', required: true },
    { column: 'user_id', table: 'users', required: true },
  ],
  conflictRule: 'Tally already has this terminal session: not imported',
  map(r, owners, ctx) {
    const duration = r.duration_ms === null ? null : int(r.duration_ms);
    if (!fits(r.command, 65536) || !fits(r.output, MIB) || !fits(r.working_directory, 4096) || (r.duration_ms !== null && (duration === null || duration < 0))) {
      return unknownValue('A terminal session whose command, output or directory exceeds Tally\'s bounds, or whose duration is negative, is not imported', { duration_ms: r.duration_ms });
    }
    const started = date(r.created_at) ?? ctx.now;
    const id = newId('terminalSession');
    // A 002 row is a command that ran: an ended session, `exited` with its exit code as recorded.
    return {
      targetId: id,
      values: {
        id,
        project_id: owners.project_id?.target_id,
        user_id: owners.user_id?.target_id,
        working_directory: str(r.working_directory),
        command: str(r.command),
        status: 'exited',
        output: str(r.output),
        exit_code: r.exit_code === null ? null : int(r.exit_code),
        duration_ms: duration,
        started_at: started,
        ended_at: new Date(started.getTime() + (duration ?? 0)),
        created_at: started,
      },
    };
  },
});

/**
 * 002's execution status is free text (Judge0's words, or the app's own): each known word → Tally's
 * closed union, the word itself kept as `status_detail`. Anything else is `unknown_value`.
 */
const EXECUTION_WORDS: Record<string, string[]> = {
  queued: ['queued', 'in_queue', 'pending'],
  running: ['running', 'processing'],
  // "Wrong Answer": the program ran to its end; only its output differed from an expected one.
  completed: ['completed', 'accepted', 'success', 'succeeded', 'wrong_answer'],
  timed_out: ['timed_out', 'timeout', 'time_limit_exceeded'],
  canceled: ['canceled', 'cancelled'],
  failed: ['failed', 'error', 'compilation_error', 'internal_error', 'exec_format_error'],
};
/** Judge0's "Runtime Error (SIGSEGV)" and its kin: failed, whatever the signal. */
const RUNTIME_ERROR = 'runtime_error';

export function executionStatus(s: unknown): string | null {
  const w = String(s ?? '').trim().toLowerCase().replace(/[\s-]+/g, '_');
  if (w.startsWith(RUNTIME_ERROR)) return 'failed';
  return Object.entries(EXECUTION_WORDS).find(([, words]) => words.includes(w))?.[0] ?? null;
}
/** The same reading in SQL, for the scan (a million runs are counted in the source, not read here). */
const unreadableStatusSql = (column: string) => {
  const w = `regexp_replace(lower(trim(${column})), '[[:space:]-]+', '_', 'g')`;
  const words = Object.values(EXECUTION_WORDS).flat().map((x) => `'${x}'`).join(', ');
  return `(${column} is null or (${w} not in (${words}) and ${w} not like '${RUNTIME_ERROR}%'))`;
};

const codeExecutions = mappedStep({
  table: 'code_executions',
  target: 'code_executions',
  columns: (t) => `id::text as id, user_id::text as user_id, project_id::text as project_id, language, source_code, stdin, stdout, stderr, compile_output, status,
    exit_code, execution_time_ms::text as execution_time_ms, memory_kb, token, created_at, ${ownerExists(t, 'code_executions', true)}`,
  owners: [
    { column: 'project_id', table: 'projects', required: true },
    { column: 'user_id', table: 'users', required: true },
  ],
  conflictRule: 'Tally already has this code execution: not imported',
  map(r, owners, ctx) {
    const status = executionStatus(r.status);
    // The scan reported it (unknown_value): skipped here without a second report.
    if (!status) return { skip: 'unknown_value' };
    const memory = r.memory_kb === null ? null : int(r.memory_kb);
    const time = str(r.execution_time_ms);
    const texts = [r.source_code, r.stdin, r.stdout, r.stderr, r.compile_output].every((v) => fits(v, MIB));
    if (!texts || !fits(r.language, 64, 1) || !fits(r.status, 255) || !fits(r.token, 255) || (memory !== null && memory < 0) || (r.memory_kb !== null && memory === null) || (time !== null && !/^\d+(\.\d+)?$/.test(time))) {
      return unknownValue('A code execution whose texts exceed Tally\'s bounds, or whose time or memory is negative or unreadable, is not imported', { language: r.language, execution_time_ms: r.execution_time_ms, memory_kb: r.memory_kb });
    }
    const id = newId('codeExecution');
    return {
      targetId: id,
      values: {
        id,
        project_id: owners.project_id?.target_id,
        user_id: owners.user_id?.target_id,
        language: String(r.language),
        source_code: str(r.source_code),
        stdin: str(r.stdin),
        stdout: str(r.stdout),
        stderr: str(r.stderr),
        compile_output: str(r.compile_output),
        status,
        status_detail: str(r.status),
        exit_code: r.exit_code === null ? null : int(r.exit_code),
        execution_time_ms: time,
        memory_kb: memory,
        external_token: str(r.token),
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const ANALYSIS_TYPES = new Set(['explain', 'complexity', 'security', 'performance']);

const codeAnalyses = mappedStep({
  table: 'code_analyses',
  target: 'code_analyses',
  columns: (t) => `id::text as id, project_id::text as project_id, file_path, analysis_type, result, model, created_at, expires_at, ${ownerExists(t, 'code_analyses', false)}`,
  owners: [{ column: 'project_id', table: 'projects', required: true }],
  conflictRule: 'Tally already has this code analysis: not imported',
  map(r, owners, ctx) {
    const expires = date(r.expires_at);
    // Tally would not serve it and its sweep would delete it at once.
    if (expires && expires <= ctx.asOf) return { skip: 'expired' };
    const result = json(r.result);
    if (!ANALYSIS_TYPES.has(String(r.analysis_type)) || !fits(r.file_path, 1024, 1) || !fits(r.model, 255) || result === null) {
      return unknownValue('A code analysis whose type, path, model or result Tally cannot take as it is is not imported', { analysis_type: r.analysis_type });
    }
    const id = newId('codeAnalysis');
    return {
      targetId: id,
      values: { id, project_id: owners.project_id?.target_id, file_path: String(r.file_path), analysis_type: String(r.analysis_type), result: JSON.stringify(result), model: str(r.model), created_by: null, expires_at: expires, created_at: date(r.created_at) ?? ctx.now },
    };
  },
});

// Tally's own words for a repository (002's are the same): anything else is an unknown value.
const GIT_PROVIDER_SET = new Set<string>(GIT_PROVIDERS);
const SYNC_STATUS_SET = new Set<string>(SYNC_STATUSES);

const gitRepositories = mappedStep({
  table: 'git_repositories',
  target: 'git_repositories',
  columns: (t) => `id::text as id, project_id::text as project_id, provider, repo_url, repo_full_name, default_branch, last_sync_at, sync_status, created_at, ${ownerExists(t, 'git_repositories', false)}`,
  owners: [{ column: 'project_id', table: 'projects', required: true }],
  conflictRule: 'Tally already has a git repository for this project (one per project): not imported',
  map(r, owners, ctx) {
    const branch = str(r.default_branch) ?? 'main';
    if (!GIT_PROVIDER_SET.has(String(r.provider)) || !fits(r.repo_url, 2048, 1) || !fits(r.repo_full_name, 255) || !fits(branch, 255, 1) || (r.sync_status !== null && !SYNC_STATUS_SET.has(String(r.sync_status)))) {
      return unknownValue('A git repository whose provider, URL, branch or sync status Tally cannot take as it is is not imported', { provider: r.provider, sync_status: r.sync_status });
    }
    const id = newId('gitRepository');
    // 002 keeps no credentials with a repository (its git access was the user's OAuth connection,
    // imported sealed into user_identities): the repository arrives without any.
    return {
      targetId: id,
      values: { id, project_id: owners.project_id?.target_id, provider: String(r.provider), repo_url: String(r.repo_url), repo_full_name: str(r.repo_full_name), default_branch: branch, last_sync_at: date(r.last_sync_at), sync_status: str(r.sync_status), created_by: null, created_at: date(r.created_at) ?? ctx.now },
    };
  },
});

const ENVIRONMENTS = new Set(['development', 'staging', 'production']);
const IN_FLIGHT = new Set(['pending', 'building', 'deploying']);
const DEPLOY_STATUSES = new Set([...IN_FLIGHT, 'success', 'failed', 'canceled']);
/** The newest deployment of a (project, environment) among some statuses: the one Tally keeps in that state. */
const newest = (t: T, statuses: string) =>
  `(select d.id::text from ${t('deployments')} d where d.project_id = ${t('deployments')}.project_id and d.environment = ${t('deployments')}.environment
     and d.status in (${statuses}) order by coalesce(d.deployed_at, d.created_at) desc, d.id desc limit 1)`;
const IN_FLIGHT_SQL = "'pending', 'building', 'deploying'";

const deployments = mappedStep({
  table: 'deployments',
  target: 'deployments',
  columns: (t) => `id::text as id, project_id::text as project_id, environment, status, commit_sha, branch, deploy_url, logs, build_time_ms, deployed_by::text as deployed_by, deployed_at, created_at,
    ${newest(t, "'success'")} as live_id, ${newest(t, IN_FLIGHT_SQL)} as in_flight_id, ${ownerExists(t, 'deployments', false)}`,
  owners: [
    { column: 'project_id', table: 'projects', required: true },
    { column: 'deployed_by', table: 'users', required: false },
  ],
  conflictRule: 'Tally already has a deployment in flight or live for this project and environment: not imported',
  map(r, owners, ctx): Mapped {
    const sid = String(r.id);
    const source = String(r.status);
    const build = r.build_time_ms === null ? null : int(r.build_time_ms);
    if (!ENVIRONMENTS.has(String(r.environment)) || !DEPLOY_STATUSES.has(source) || !fits(r.commit_sha, 64) || !fits(r.branch, 255) || !fits(r.deploy_url, 2048) || !fits(r.logs, MIB) || (r.build_time_ms !== null && (build === null || build < 0))) {
      return unknownValue('A deployment whose environment, status or fields Tally cannot take as they are is not imported', { environment: r.environment, status: r.status });
    }
    // One live and one in flight per (project, environment) in Tally: an older success is what Tally
    // calls superseded; an older one still "in flight" (the scan reported it) never finished: canceled.
    let status = source;
    if (source === 'success' && str(r.live_id) !== sid) status = 'superseded';
    if (IN_FLIGHT.has(source) && str(r.in_flight_id) !== sid) status = 'canceled';
    const id = newId('deployment');
    const deployedAt = date(r.deployed_at);
    return {
      targetId: id,
      values: {
        id,
        project_id: owners.project_id?.target_id,
        environment: String(r.environment),
        status,
        commit_sha: str(r.commit_sha),
        branch: str(r.branch),
        deploy_url: str(r.deploy_url),
        logs: str(r.logs),
        build_time_ms: build,
        deployed_by: owners.deployed_by?.target_id ?? null,
        deployed_at: deployedAt,
        finished_at: IN_FLIGHT.has(status) ? null : (deployedAt ?? date(r.created_at) ?? ctx.now),
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const OAUTH_PROVIDERS = new Set(['github', 'google', 'gitlab', 'bitbucket']);

const oauthConnections = mappedStep({
  table: 'oauth_connections',
  target: 'user_identities',
  columns: (t) => `id::text as id, user_id::text as user_id, provider, provider_user_id, access_token, refresh_token, token_expires_at, scopes, metadata, created_at,
    ${has(t, 'oauth_connections', 'user_id', 'users')} as owner_exists`,
  owners: [{ column: 'user_id', table: 'users', required: true }],
  conflictRule: 'Tally already links this provider account, or this provider for the user: not imported',
  map(r, owners, ctx) {
    const provider = String(r.provider);
    const scopes = Array.isArray(r.scopes) ? r.scopes.map(String) : [];
    if (!OAUTH_PROVIDERS.has(provider) || !fits(r.provider_user_id, 255, 1)) return unknownValue('An OAuth connection whose provider or account id Tally cannot take is not imported', { provider: r.provider });
    const user = String(owners.user_id?.target_id);
    // Sealed exactly as Tally seals a linked identity's tokens (identities.service.ts): bound to the user and provider.
    const aad = `${user}\n${provider}`;
    const access = str(r.access_token);
    const refresh = str(r.refresh_token);
    const id = newId('identity');
    return {
      targetId: id,
      facts: { user_id: user, provider },
      values: {
        id,
        user_id: user,
        provider,
        provider_user_id: String(r.provider_user_id),
        access_token_enc: access ? ctx.seal(access, aad) : null,
        refresh_token_enc: refresh ? ctx.seal(refresh, aad) : null,
        token_expires_at: date(r.token_expires_at),
        scopes,
        metadata: JSON.stringify({ ...(objectOf(json(r.metadata)) ?? {}), imported_from: 'cloud-ide' }),
        linked_at: date(r.created_at) ?? ctx.now,
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const conversations = mappedStep({
  table: 'conversations',
  target: 'conversations',
  columns: (t) => `id::text as id, project_id::text as project_id, user_id::text as user_id, title, context, is_archived, created_at, ${ownerExists(t, 'conversations', true)}`,
  owners: [
    { column: 'project_id', table: 'projects', required: true },
    { column: 'user_id', table: 'users', required: true },
  ],
  conflictRule: 'Tally already has this conversation: not imported',
  map(r, owners, ctx) {
    const context = json(r.context) ?? {};
    if (!fits(r.title, 500) || !objectOf(context)) return unknownValue('A conversation whose title exceeds 500 characters or whose context is not an object is not imported (nor its messages)', {});
    const id = newId('conversation');
    const project = owners.project_id?.target_id;
    const user = owners.user_id?.target_id;
    return {
      targetId: id,
      facts: { project_id: project, user_id: user },
      values: { id, project_id: project, user_id: user, title: str(r.title), context: JSON.stringify(context), is_archived: r.is_archived === true, created_at: date(r.created_at) ?? ctx.now },
    };
  },
});

const ROLES = new Set(['user', 'assistant', 'system']);

const messages = mappedStep({
  table: 'messages',
  target: 'messages',
  columns: (t) => `id::text as id, conversation_id::text as conversation_id, role, content, metadata, tokens_used, model, created_at, ${has(t, 'messages', 'conversation_id', 'conversations')} as owner_exists`,
  owners: [{ column: 'conversation_id', table: 'conversations', required: true }],
  conflictRule: 'Tally already has this message: not imported',
  map(r, owners, ctx) {
    const tokens = r.tokens_used === null ? null : int(r.tokens_used);
    const metadata = json(r.metadata) ?? {};
    if (!ROLES.has(String(r.role)) || !fits(r.content, 1_000_000) || !fits(r.model, 128) || (r.tokens_used !== null && (tokens === null || tokens < 0)) || !objectOf(metadata)) {
      return unknownValue('A message whose role, content, model, token count or metadata Tally cannot take as it is is not imported', { role: r.role, tokens_used: r.tokens_used });
    }
    const conversation = owners.conversation_id as NonNullable<(typeof owners)['conversation_id']>;
    const id = newId('message');
    return {
      targetId: id,
      values: {
        id,
        project_id: conversation.facts.project_id,
        conversation_id: conversation.target_id,
        // 002's messages name no author: a user's message is the conversation's user's; the others are nobody's.
        user_id: r.role === 'user' ? conversation.facts.user_id : null,
        role: String(r.role),
        content: String(r.content),
        metadata: JSON.stringify(metadata),
        model: str(r.model),
        token_count: tokens,
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

const HOUR = 3_600_000;
/** 002's job statuses as Tally's (`running` is Tally's `processing`). */
const AI_JOB_STATUS: Record<string, string> = { pending: 'pending', running: 'processing', completed: 'completed', failed: 'failed', canceled: 'canceled' };
const FINAL = new Set(['completed', 'failed', 'canceled']);

const aiJobs = mappedStep({
  table: 'ai_jobs',
  target: 'jobs',
  columns: (t) => `id::text as id, user_id::text as user_id, project_id::text as project_id, job_type, status, input, output, error, tokens_used, model, duration_ms, started_at, completed_at, created_at,
    ${has(t, 'ai_jobs', 'user_id', 'users')} as owner_exists`,
  owners: [
    { column: 'user_id', table: 'users', required: true },
    { column: 'project_id', table: 'projects', required: false },
  ],
  conflictRule: 'Tally already has this job: not imported',
  map(r, owners, ctx) {
    const status = AI_JOB_STATUS[String(r.status ?? 'pending')];
    const tokens = r.tokens_used === null ? null : int(r.tokens_used);
    const duration = r.duration_ms === null ? null : int(r.duration_ms);
    const input = json(r.input);
    if (!status || !/^[A-Za-z0-9_.:-]{1,64}$/.test(String(r.job_type)) || !fits(r.error, 4000) || !fits(r.model, 128) || (r.tokens_used !== null && (tokens === null || tokens < 0)) || (r.duration_ms !== null && (duration === null || duration < 0)) || !objectOf(input)) {
      return unknownValue('An AI job whose status, type, error, model, counts or input Tally cannot take as they are is not imported', { status: r.status, job_type: r.job_type });
    }
    const created = date(r.created_at) ?? ctx.now;
    const done = FINAL.has(status) ? (date(r.completed_at) ?? date(r.started_at) ?? created) : null;
    const id = newId('job');
    // 002 never priced a job in credits: cost 0, no hold; an unfinished one gets the usual hour to report.
    return {
      targetId: id,
      values: {
        id,
        user_id: owners.user_id?.target_id,
        project_id: owners.project_id?.target_id ?? null,
        kind: String(r.job_type),
        model: str(r.model),
        status,
        input: JSON.stringify(input),
        output: r.output === null ? null : JSON.stringify(json(r.output)),
        error: str(r.error),
        tokens_used: tokens,
        cost: 0,
        metadata: JSON.stringify({ imported_from: 'cloud-ide', source_id: String(r.id), source_status: str(r.status) }),
        timeout_at: done ?? new Date(ctx.now.getTime() + HOUR),
        started_at: date(r.started_at),
        completed_at: done,
        duration_ms: duration,
        created_at: created,
      },
    };
  },
});

/** 002's background job statuses as Tally's queue's: `retrying` waits for its next attempt (`pending`). */
const QUEUE_STATUS: Record<string, string> = { pending: 'pending', running: 'running', completed: 'completed', failed: 'failed', retrying: 'pending' };

const backgroundJobs = mappedStep({
  table: 'background_jobs',
  target: 'background_jobs',
  columns: () => 'id::text as id, job_name, job_type, status, input, output, error, attempts, max_attempts, priority, scheduled_for, started_at, completed_at, created_at',
  owners: [],
  conflictRule: 'Tally already has this background job: not imported',
  map(r, _owners, ctx) {
    const status = QUEUE_STATUS[String(r.status ?? 'pending')];
    const attempts = int(r.attempts ?? 0);
    const max = int(r.max_attempts ?? 3);
    const input = json(r.input);
    if (!status || !/^[a-z0-9_.:-]{1,64}$/.test(String(r.job_type)) || !fits(r.job_name, 255) || !fits(r.error, 4000) || attempts === null || attempts < 0 || max === null || max < 1 || max > 100 || int(r.priority ?? 0) === null || !objectOf(input)) {
      return unknownValue('A background job whose status, type, name, error, attempts or input Tally cannot take as they are is not imported', { status: r.status, job_type: r.job_type });
    }
    // A job still waiting or running in 002 would be claimed by Tally's workers (a handler of the same
    // type would run 002's input): it is kept as history, canceled with the reason, never run.
    const live = status === 'pending' || status === 'running';
    const id = newId('backgroundJob');
    return {
      targetId: id,
      values: {
        id,
        type: String(r.job_type),
        name: str(r.job_name),
        status: live ? 'canceled' : status,
        input: JSON.stringify(input),
        output: r.output === null ? null : JSON.stringify(json(r.output)),
        last_error: live ? `imported from cloud-ide while ${String(r.status)}: not run by Tally` : str(r.error),
        attempts,
        max_attempts: max,
        priority: int(r.priority ?? 0),
        run_at: date(r.scheduled_for) ?? date(r.created_at) ?? ctx.now,
        started_at: date(r.started_at),
        completed_at: live ? ctx.now : date(r.completed_at),
        created_at: date(r.created_at) ?? ctx.now,
      },
    };
  },
});

export const ideSteps: TableStep[] = [projects, ...fileSteps, oauthConnections, editorSessions, terminalSessions, codeExecutions, codeAnalyses, gitRepositories, deployments, conversations, messages, aiJobs, backgroundJobs];

/** The IDE tables' anomalies, found before anything is written (so `--strict` refuses with nothing imported). */
export async function scanIde(src: SourceDb, limit: number): Promise<Anomaly[]> {
  const t = (n: string) => src.t(n);
  const out: Anomaly[] = [];
  const orphans: [string, string, string][] = [
    ['projects', 'workspace_id', 'workspaces'],
    ['oauth_connections', 'user_id', 'users'],
    ['editor_sessions', 'project_id', 'projects'],
    ['editor_sessions', 'user_id', 'users'],
    ['terminal_sessions', 'project_id', 'projects'],
    ['terminal_sessions', 'user_id', 'users'],
    ['code_executions', 'project_id', 'projects'],
    ['code_executions', 'user_id', 'users'],
    ['code_analyses', 'project_id', 'projects'],
    ['git_repositories', 'project_id', 'projects'],
    ['deployments', 'project_id', 'projects'],
    ['conversations', 'project_id', 'projects'],
    ['conversations', 'user_id', 'users'],
    ['messages', 'conversation_id', 'conversations'],
    ['ai_jobs', 'user_id', 'users'],
  ];
  const seen = new Set<string>();
  for (const [table, column, parent] of orphans) {
    const rows = await src.rows<{ id: string; parent: string | null }>(
      `select c.id::text as id, c.${column}::text as parent from ${t(table)} c left join ${t(parent)} p on p.id = c.${column} where p.id is null order by c.id limit $1`,
      [limit],
    );
    for (const r of rows) {
      if (seen.has(`${table}/${r.id}`)) continue;
      seen.add(`${table}/${r.id}`);
      // 002's code_executions.project_id is nullable; Tally's is not: a run without a project belongs nowhere.
      out.push({ kind: 'orphan', table, source_id: r.id, rule: 'A row whose project, workspace or user is not in the source (or, for a code execution, that has no project) belongs nowhere in Tally: it is not imported', details: { [column]: r.parent } });
    }
  }
  const unreadable = await src.rows<{ id: string; status: string | null }>(
    `select id::text as id, status from ${t('code_executions')} where ${unreadableStatusSql('status')} order by id limit $1`,
    [limit],
  );
  for (const r of unreadable) out.push({ kind: 'unknown_value', table: 'code_executions', source_id: r.id, rule: 'A code execution whose status Tally cannot read is not imported (the import does not guess how a run ended)', details: { status: r.status } });
  const stale = await src.rows<{ id: string; environment: string }>(
    `select d.id::text as id, d.environment from ${t('deployments')} d where d.status in (${IN_FLIGHT_SQL})
      and d.id::text <> (select x.id::text from ${t('deployments')} x where x.project_id = d.project_id and x.environment = d.environment and x.status in (${IN_FLIGHT_SQL})
                         order by coalesce(x.deployed_at, x.created_at) desc, x.id desc limit 1)
      order by d.id limit $1`,
    [limit],
  );
  for (const r of stale) out.push({ kind: 'duplicate_deployment', table: 'deployments', source_id: r.id, rule: 'One deployment in flight per project and environment in Tally: the newest keeps its status, this older one is imported as canceled', details: { environment: r.environment } });
  return out;
}
