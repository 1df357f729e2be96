import { randomUUID } from 'node:crypto';
import { createSource, type Source } from './import-source.js';

/**
 * Seed 002 (`cloud-ide`) as an import source: every SQL block of the seed (import-sources/cloud-ide.sql)
 * in a fixture schema. Changes, and only these: `public.` qualifies nothing (the fixture's schema is
 * first on the search path); `users.id` does not reference `auth.users`, and the four policies that
 * call `auth.uid()` and the trigger on `auth.users` are left out — Supabase's auth schema is not part
 * of the source the import reads.
 */
export function createCloudIdePostgres(): Promise<Source> {
  return createSource('cloud-ide', (sql) =>
    sql
      .replaceAll('public.', '')
      .replace('REFERENCES auth.users(id) ON DELETE CASCADE', '')
      .replace(/CREATE POLICY [\s\S]*?;\n/g, '')
      .replace(/CREATE TRIGGER on_auth_user_created[\s\S]*?;\n/, ''),
  );
}

export interface CloudIdeFixture {
  users: number;
  workspaces: number;
  members: number;
  customers: number;
  subscriptions: number;
  byStatus: Record<string, number>;
  invoices: number;
  amountPaid: number;
  usage: number;
  /** The user with two live subscriptions, and the workspace member who claimed to be a second owner. */
  twoLive: string;
  secondOwner: { workspace: string; user: string };
  ide: IdeFixture;
}

/** The projects and IDE rows (fillIde): what each table must import, and the tokens that must arrive sealed. */
export interface IdeFixture {
  projects: number;
  /** Files (one a project, with one version), each open and active in its project's editor session. */
  files: number;
  oauth: number;
  editorSessions: number;
  terminalSessions: number;
  executions: Record<string, number>;
  analyses: number;
  repositories: number;
  deployments: Record<string, number>;
  conversations: number;
  messages: number;
  aiJobs: Record<string, number>;
  backgroundJobs: Record<string, number>;
  /** Plain-text OAuth tokens in the source: none may appear in Tally. */
  tokens: string[];
}

/**
 * `users` users; six own a workspace with members of every role; two plans (one with Stripe prices);
 * nine Stripe customers with subscriptions in every status, invoices and usage records; then each
 * anomaly: a second "owner" in a workspace, a user with two live subscriptions, and orphans of every
 * owner relation (workspace, member, customer, subscription without customer or plan, invoice, usage).
 */
export async function fillCloudIde(src: Source, users: number): Promise<CloudIdeFixture> {
  await src.query('set session_replication_role = replica');
  const f: CloudIdeFixture = { users: 0, workspaces: 0, members: 0, customers: 0, subscriptions: 0, byStatus: {}, invoices: 0, amountPaid: 0, usage: 0, twoLive: '', secondOwner: { workspace: '', user: '' }, ide: { projects: 0, files: 0, oauth: 0, editorSessions: 0, terminalSessions: 0, executions: {}, analyses: 0, repositories: 0, deployments: {}, conversations: 0, messages: 0, aiJobs: {}, backgroundJobs: {}, tokens: [] } };
  const ids: string[] = [];
  for (let u = 0; u < users; u++) {
    const id = randomUUID();
    ids.push(id);
    await src.query('insert into users (id, email, full_name, github_username, preferences) values ($1, $2, $3, $4, $5)', [id, `c${u}@example.com`, `Coder ${u}`, `gh${u}`, JSON.stringify({ theme: 'dark' })]);
    f.users++;
    for (let k = 0; k < 2; k++) {
      await src.query("insert into usage_records (user_id, resource_type, amount, unit) values ($1, $2, $3, 'tokens')", [id, k ? 'ai_tokens' : 'executions', `${1234 + u}.5678`]);
      f.usage++;
    }
  }
  const user = (i: number) => ids[i] as string;
  const roles = ['admin', 'member', 'viewer'];
  for (let w = 0; w < 6; w++) {
    const [ws] = await src.query<{ id: string }>('insert into workspaces (name, slug, owner_id) values ($1, $2, $3) returning id::text as id', [`Space ${w}`, `space-${w}`, user(w)]);
    f.workspaces++;
    await src.query("insert into workspace_members (workspace_id, user_id, role) values ($1, $2, 'owner')", [ws?.id, user(w)]);
    f.members++;
    for (let m = 1; m <= 2; m++) {
      const member = (w + m + 5) % users;
      await src.query('insert into workspace_members (workspace_id, user_id, role, invited_by) values ($1, $2, $3, $4)', [ws?.id, user(member), roles[(w + m) % 3], user(w)]);
      f.members++;
    }
    if (w === 0) {
      f.secondOwner = { workspace: String(ws?.id), user: user(11) };
      await src.query("insert into workspace_members (workspace_id, user_id, role) values ($1, $2, 'owner')", [ws?.id, user(11)]);
      f.members++;
    }
  }
  const [free] = await src.query<{ id: string }>("insert into subscription_plans (name, slug, price_monthly, price_yearly) values ('Free', 'free', 0, 0) returning id::text as id");
  const [pro] = await src.query<{ id: string }>(
    `insert into subscription_plans (name, slug, price_monthly, price_yearly, stripe_price_id_monthly, stripe_price_id_yearly, features, limits, sort_order)
     values ('Pro', 'pro', 1900, 19000, 'price_pro_m', 'price_pro_y', '["ai"]', '{"projects": 10}', 1) returning id::text as id`,
  );
  const statuses = ['active', 'trialing', 'past_due', 'unpaid', 'canceled'];
  const tallyStatus = (s: string) => (s === 'unpaid' ? 'past_due' : s);
  const sub = async (customer: string | undefined, plan: string | undefined, status: string, n: string) => {
    await src.query(
      `insert into subscriptions (customer_id, plan_id, stripe_subscription_id, status, billing_interval, current_period_start, current_period_end, canceled_at)
       values ($1, $2, $3, $4, $5, now() - interval '3 days', now() + interval '27 days', $6)`,
      [customer, plan, `sub_${n}`, status, Number(n.replace(/\D/g, '') || 0) % 2 ? 'yearly' : 'monthly', status === 'canceled' ? new Date() : null],
    );
  };
  const customerIds: string[] = [];
  for (let c = 0; c < 9; c++) {
    const [cust] = await src.query<{ id: string }>('insert into customers (user_id, stripe_customer_id, email) values ($1, $2, $3) returning id::text as id', [user(c), `cus_${c}`, `c${c}@example.com`]);
    customerIds.push(String(cust?.id));
    f.customers++;
    if (c === 8) {
      // A live subscription whose plan is gone: an orphan, on a customer with no other subscription.
      await sub(cust?.id, randomUUID(), 'active', 'noplan');
      continue;
    }
    const status = statuses[c % 5] as string;
    await sub(cust?.id, c % 2 ? free?.id : pro?.id, status, String(c));
    f.subscriptions++;
    f.byStatus[tallyStatus(status)] = (f.byStatus[tallyStatus(status)] ?? 0) + 1;
    for (let i = 0; i < (c % 3) + 1; i++) {
      const paid = i === 0 ? 1900 : null;
      await src.query("insert into invoices (customer_id, stripe_invoice_id, amount_due, amount_paid, status) values ($1, $2, 1900, $3, $4)", [cust?.id, `in_${c}_${i}`, paid, paid ? 'paid' : 'open']);
      f.invoices++;
      f.amountPaid += paid ?? 0;
    }
  }
  // Two live subscriptions for one user: the lower source id is primary.
  await sub(customerIds[0], pro?.id, 'active', 'second');
  f.subscriptions++;
  f.byStatus.active = (f.byStatus.active ?? 0) + 1;
  f.twoLive = user(0);
  // Orphans.
  const ghost = randomUUID();
  await src.query("insert into workspaces (name, slug, owner_id) values ('Ghost', 'ghost', $1)", [ghost]);
  const [ws0] = await src.query<{ id: string }>("select id::text as id from workspaces where slug = 'space-0'");
  await src.query("insert into workspace_members (workspace_id, user_id, role) values ($1, $2, 'member')", [ws0?.id, ghost]);
  await src.query("insert into customers (user_id, stripe_customer_id) values ($1, 'cus_ghost')", [ghost]);
  await sub(randomUUID(), pro?.id, 'active', 'nocustomer');
  await src.query("insert into invoices (customer_id, stripe_invoice_id, amount_due, status) values ($1, 'in_ghost', 100, 'open')", [randomUUID()]);
  await src.query("insert into usage_records (user_id, resource_type, amount, unit) values ($1, 'api_calls', 1, 'calls')", [ghost]);
  f.ide = await fillIde(src, ids, ghost);
  return f;
}

/** Judge0's words as 002 stored them, and the status Tally must give each. */
const RUNS: [string, string][] = [
  ['Accepted', 'completed'],
  ['Wrong Answer', 'completed'],
  ['Runtime Error (SIGSEGV)', 'failed'],
  ['Time Limit Exceeded', 'timed_out'],
  ['In Queue', 'queued'],
  ['Processing', 'running'],
];

/** 002's AI job and queue statuses, and what Tally must make of each (docs/import.md). */
const AI_JOBS: [string, string][] = [
  ['pending', 'pending'],
  ['running', 'processing'],
  ['completed', 'completed'],
  ['failed', 'failed'],
  ['canceled', 'canceled'],
];
const QUEUE: [string, string][] = [
  ['pending', 'canceled'],
  ['retrying', 'canceled'],
  ['running', 'canceled'],
  ['completed', 'completed'],
  ['failed', 'failed'],
];

/**
 * A project in each workspace, each with a file open in an editor session, two terminal commands, a run, a live
 * analysis; repositories for three; deployments for two (two successes and two in flight in one
 * environment); OAuth connections with plain-text tokens. Then the anomalies: an orphan of every
 * owner relation (project, connection, session, run, repository, deployment; a run without a project),
 * a run whose status nobody knows, a project whose slug Tally cannot take, an expired analysis.
 */
async function fillIde(src: Source, users: string[], ghost: string): Promise<IdeFixture> {
  const f: IdeFixture = { projects: 0, files: 0, oauth: 0, editorSessions: 0, terminalSessions: 0, executions: {}, analyses: 0, repositories: 0, deployments: {}, conversations: 0, messages: 0, aiJobs: {}, backgroundJobs: {}, tokens: [] };
  const spaces = await src.query<{ id: string; owner_id: string }>("select id::text as id, owner_id::text as owner_id from workspaces where slug like 'space-%' order by slug");
  const projects: string[] = [];
  for (const [w, ws] of spaces.entries()) {
    const [p] = await src.query<{ id: string }>(
      "insert into projects (workspace_id, name, slug, language, framework, visibility, settings) values ($1, $2, $3, 'typescript', 'next', $4, '{\"tabs\": 2}') returning id::text as id",
      [ws.id, `App ${w}`, `app-${w}`, w % 2 ? 'team' : 'private'],
    );
    const project = String(p?.id);
    projects.push(project);
    f.projects++;
    // A file with a saved version, open and active in the owner's editor session.
    const [file] = await src.query<{ id: string }>("insert into files (project_id, path, name, type, content, language, created_by) values ($1, '/src/index.ts', 'index.ts', 'file', 'export {}', 'typescript', $2) returning id::text as id", [project, ws.owner_id]);
    await src.query("insert into file_versions (file_id, version_number, content, changed_by) values ($1, 1, 'export {}', $2)", [file?.id, ws.owner_id]);
    f.files++;
    await src.query(`insert into editor_sessions (user_id, project_id, open_files, active_file_id, layout_state) values ($1, $2, $3, $4, '{"sidebar": true}')`, [
      ws.owner_id, project, JSON.stringify([{ file_id: file?.id, cursor_position: { line: 3, column: 1 } }]), file?.id,
    ]);
    f.editorSessions++;
    for (let k = 0; k < 2; k++) {
      await src.query('insert into terminal_sessions (user_id, project_id, command, output, exit_code, duration_ms, working_directory) values ($1, $2, $3, $4, $5, 120, $6)', [ws.owner_id, project, k ? 'npm test' : 'ls', 'ok\n', k, '/app']);
      f.terminalSessions++;
    }
    const [word, status] = RUNS[w % RUNS.length] as [string, string];
    await src.query("insert into code_executions (user_id, project_id, language, source_code, stdout, status, exit_code, execution_time_ms, memory_kb, token) values ($1, $2, 'python', 'print(1)', '1', $3, 0, 12.345, 2048, $4)", [ws.owner_id, project, word, `tok-${w}`]);
    f.executions[status] = (f.executions[status] ?? 0) + 1;
    await src.query(`insert into code_analyses (project_id, file_path, analysis_type, result, model, expires_at) values ($1, 'src/index.ts', 'security', '{"issues": []}', 'claude', now() + interval '1 day')`, [project]);
    f.analyses++;
    const [c] = await src.query<{ id: string }>("insert into conversations (project_id, user_id, title, context) values ($1, $2, $3, '{\"branch\": \"main\"}') returning id::text as id", [project, ws.owner_id, `Chat ${w}`]);
    f.conversations++;
    await src.query("insert into messages (conversation_id, role, content) values ($1, 'user', 'Explain this')", [c?.id]);
    await src.query("insert into messages (conversation_id, role, content, tokens_used, model) values ($1, 'assistant', 'It adds.', 42, 'claude')", [c?.id]);
    f.messages += 2;
    const [jobStatus, tallyJob] = AI_JOBS[w % AI_JOBS.length] as [string, string];
    await src.query("insert into ai_jobs (user_id, project_id, job_type, status, input, tokens_used, completed_at) values ($1, $2, 'explain', $3, '{\"file\": \"a.ts\"}', 10, $4)", [ws.owner_id, project, jobStatus, ['completed', 'failed', 'canceled'].includes(jobStatus) ? new Date() : null]);
    f.aiJobs[tallyJob] = (f.aiJobs[tallyJob] ?? 0) + 1;
    const [queueStatus, tallyQueue] = QUEUE[w % QUEUE.length] as [string, string];
    await src.query("insert into background_jobs (job_name, job_type, status, input) values ($1, 'sync', $2, '{}')", [`sync ${w}`, queueStatus]);
    f.backgroundJobs[tallyQueue] = (f.backgroundJobs[tallyQueue] ?? 0) + 1;
    if (w < 3) {
      await src.query("insert into git_repositories (project_id, provider, repo_url, repo_full_name, sync_status) values ($1, 'github', $2, $3, 'idle')", [project, `https://github.com/acme/app-${w}`, `acme/app-${w}`]);
      f.repositories++;
    }
  }
  const [p0, p1] = projects;
  // An analysis already expired: skipped (Tally would not serve it).
  await src.query(`insert into code_analyses (project_id, file_path, analysis_type, result, expires_at) values ($1, 'old.ts', 'explain', '{}', now() - interval '1 day')`, [p0]);
  // Project 0, production: an older success (superseded), the live one; an older build still "in flight" (canceled) and the newest.
  const deploy = async (project: string | undefined, env: string, status: string, ago: number, by: string | null) =>
    src.query(`insert into deployments (project_id, environment, status, commit_sha, branch, deployed_by, deployed_at, created_at) values ($1, $2, $3, 'abc123', 'main', $4, now() - make_interval(mins => $5), now() - make_interval(mins => $5))`, [project, env, status, by, ago]);
  await deploy(p0, 'production', 'success', 50, users[0] as string);
  await deploy(p0, 'production', 'success', 40, users[0] as string);
  await deploy(p0, 'production', 'pending', 30, null);
  await deploy(p0, 'production', 'building', 20, users[0] as string);
  await deploy(p1, 'staging', 'failed', 10, ghost);
  f.deployments = { superseded: 1, success: 1, canceled: 1, building: 1, failed: 1 };
  for (let u = 0; u < 4; u++) {
    const access = `gho_plaintext_access_${u}_${randomUUID()}`;
    const refresh = u % 2 ? null : `ghr_plaintext_refresh_${u}_${randomUUID()}`;
    await src.query("insert into oauth_connections (user_id, provider, provider_user_id, access_token, refresh_token, scopes) values ($1, 'github', $2, $3, $4, '{repo,read:user}')", [users[u], `gh-${u}`, access, refresh]);
    f.tokens.push(access, ...(refresh ? [refresh] : []));
    f.oauth++;
  }
  // The anomalies.
  const [ws0] = spaces;
  await src.query("insert into projects (workspace_id, name, slug) values ($1, 'Ghost app', 'ghost-app')", [randomUUID()]);
  await src.query("insert into projects (workspace_id, name, slug) values ($1, 'Bad', 'Bad Slug!')", [ws0?.id]);
  await src.query("insert into oauth_connections (user_id, provider, provider_user_id, access_token) values ($1, 'gitlab', 'gl-ghost', 'glpat-plaintext-ghost')", [ghost]);
  await src.query("insert into editor_sessions (user_id, project_id) values ($1, $2)", [ghost, p0]);
  await src.query("insert into code_executions (user_id, project_id, language, source_code, status) values ($1, null, 'python', 'print(2)', 'Accepted')", [users[0]]);
  await src.query("insert into code_executions (user_id, project_id, language, source_code, status) values ($1, $2, 'python', 'print(3)', 'Mystery')", [users[0], p0]);
  await src.query("insert into git_repositories (project_id, provider, repo_url) values ($1, 'github', 'https://github.com/acme/ghost')", [randomUUID()]);
  await src.query("insert into deployments (project_id, environment, status) values ($1, 'production', 'success')", [randomUUID()]);
  await src.query("insert into conversations (project_id, user_id) values ($1, $2)", [p0, ghost]);
  await src.query("insert into messages (conversation_id, role, content) values ($1, 'user', 'lost')", [randomUUID()]);
  await src.query("insert into ai_jobs (user_id, job_type, input) values ($1, 'chat', '{}')", [ghost]);
  return f;
}
