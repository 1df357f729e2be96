import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inRequestTransaction } from '../src/db/request-role.js';
import type { Principal } from '../src/core/principal.js';
import { client } from './support/client.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

/**
 * Projects, agent work and secrets: workspace roles decide who reads and writes (service layer and
 * RLS), session totals are the sums of their messages and tool calls, and secrets never appear in
 * plain text in the database or in any answer but the audited reveal.
 */
describe(`projects, agent work and secrets (${TARGET})`, () => {
  let app: TestApp;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let viewer: Awaited<ReturnType<typeof signUp>>;
  let member: Awaited<ReturnType<typeof signUp>>;
  let stranger: Awaited<ReturnType<typeof signUp>>;
  let workspaceId: string;
  let projectId: string;
  const as = (userId: string): Principal => ({ kind: 'user', userId, email: null, via: 'jwt', keyId: null, scopes: ['*'], sessionId: null });

  beforeAll(async () => {
    app = await createTestApp();
    [owner, viewer, member, stranger] = [await signUp(app), await signUp(app), await signUp(app), await signUp(app)];
    workspaceId = (await owner.api.post('/v1/workspaces', { name: 'Studio' })).body.id;
    await owner.api.post(`/v1/workspaces/${workspaceId}/members`, { user_id: viewer.user.id, role: 'viewer' });
    await owner.api.post(`/v1/workspaces/${workspaceId}/members`, { user_id: member.user.id, role: 'member' });
    const p = await member.api.post('/v1/projects', { name: 'App', workspace_id: workspaceId, preferred_cli: 'claude', initial_prompt: 'build it' });
    expect(p.status).toBe(201);
    projectId = p.body.id;
  });
  afterAll(async () => {
    await app.close();
  });

  it('a project has an owner; a user project is the caller’s own', async () => {
    const mine = await stranger.api.post('/v1/projects', { name: 'Solo' });
    expect(mine.body).toMatchObject({ user_id: stranger.user.id, workspace_id: null, status: 'idle', fallback_enabled: true });
    expect((await stranger.api.post('/v1/projects', { name: 'x', user_id: owner.user.id })).status).toBe(403);
    expect((await client(app.server, app.serviceKey).post('/v1/projects', { name: 'orphan' })).status).toBe(400);
  });

  it('viewers read, members write, only the owner deletes; strangers see nothing', async () => {
    expect((await viewer.api.get(`/v1/projects/${projectId}`)).status).toBe(200);
    expect((await viewer.api.patch(`/v1/projects/${projectId}`, { name: 'mine' })).status).toBe(403);
    expect((await viewer.api.post(`/v1/projects/${projectId}/messages`, { role: 'user', content: 'hi' })).status).toBe(403);
    expect((await viewer.api.post(`/v1/projects/${projectId}/env-vars`, { key: 'K', value: 'v' })).status).toBe(403);
    expect((await member.api.patch(`/v1/projects/${projectId}`, { status: 'running', preview_port: 3000 })).body).toMatchObject({ status: 'running', preview_port: 3000 });
    expect((await member.api.del(`/v1/projects/${projectId}`)).status).toBe(403);
    for (const url of [`/v1/projects/${projectId}`, `/v1/projects/${projectId}/messages`, `/v1/projects/${projectId}/env-vars`, `/v1/projects/${projectId}/sessions`]) {
      expect((await stranger.api.get(url)).status, url).toBe(404);
    }
    expect((await stranger.api.get('/v1/projects')).body.data.map((p: { id: string }) => p.id)).not.toContain(projectId);
    expect((await viewer.api.get('/v1/projects')).body.data.map((p: { id: string }) => p.id)).toContain(projectId);
  });

  it('session totals equal the sums of their messages and tool calls, in the same transaction', async () => {
    const conv = (await member.api.post(`/v1/projects/${projectId}/conversations`, { title: 'Login' })).body;
    const s = (await member.api.post(`/v1/projects/${projectId}/sessions`, { cli_type: 'claude', model: 'sonnet', instruction: 'add login', conversation_id: conv.id })).body;
    const msgs = [
      { role: 'user', content: 'add login', token_count: 12 },
      { role: 'assistant', content: 'done', token_count: 340, cost_usd: 0.0125, duration_ms: 900, commit_sha: 'abc1234' },
      { role: 'assistant', content: 'tests too', token_count: 100, cost_usd: 0.5 },
    ];
    const ids: string[] = [];
    for (const m of msgs) {
      const r = await member.api.post(`/v1/projects/${projectId}/messages`, { ...m, session_id: s.id, ...(ids[0] ? { parent_message_id: ids[0] } : {}) });
      expect(r.status).toBe(201);
      ids.push(r.body.id);
    }
    for (const t of [{ tool_name: 'Edit', lines_added: 10, lines_removed: 2, files_affected: ['a.ts'] }, { tool_name: 'Bash', is_error: true, error_message: 'exit 1' }]) {
      expect((await member.api.post(`/v1/projects/${projectId}/tool-usage`, { ...t, session_id: s.id, message_id: ids[1] })).status).toBe(201);
    }
    const other = (await member.api.post(`/v1/projects/${projectId}/sessions`, {})).body;
    await member.api.post(`/v1/projects/${projectId}/messages`, { role: 'user', content: 'elsewhere', session_id: other.id, token_count: 5 });
    const sessions = (await viewer.api.get(`/v1/projects/${projectId}/sessions`)).body.data as Record<string, number & string>[];
    const mine = must(sessions.find((x) => x['id'] === s.id), 'a matching item');
    expect(mine).toMatchObject({ total_messages: 3, total_tools_used: 2, total_tokens: 452, total_cost_usd: 0.5125, total_credits: 0 });
    // Checked against the rows themselves, in SQL.
    const t = (n: string) => sql.table(`${app.database.schema}.${n}`);
    const sums = await sql<{ n: number; tokens: string; cost: string }>`select count(*)::int as n, sum(token_count)::text as tokens, sum(cost_usd)::text as cost from ${t('messages')} where session_id = ${s.id}`.execute(app.database.db);
    expect(sums.rows[0]).toMatchObject({ n: 3, tokens: '452' });
    expect(Number(must(sums.rows[0], 'sums.rows[0]').cost)).toBe(0.5125);
    // End users cannot write totals directly (no column grant).
    const direct = await inRequestTransaction(app.database.db, as(member.user.id), (trx) =>
      trx.updateTable('agent_sessions').set({ total_tokens: 0 }).where('id', '=', s.id).execute(),
    ).then(() => 'ok', (e: { code?: string }) => e.code);
    expect(direct).toBe('42501');
    // A session ends once.
    expect((await member.api.patch(`/v1/projects/${projectId}/sessions/${s.id}`, { status: 'completed', summary: 'ok' })).body).toMatchObject({ status: 'completed' });
    expect((await member.api.patch(`/v1/projects/${projectId}/sessions/${s.id}`, { status: 'failed' })).status).toBe(409);
    // A message cannot name a session of another project.
    const elsewhere = (await stranger.api.post('/v1/projects', { name: 'S2' })).body.id;
    expect((await stranger.api.post(`/v1/projects/${elsewhere}/messages`, { role: 'user', content: 'x', session_id: s.id })).status).toBe(400);
  });

  it('requests complete once; commits are unique per project', async () => {
    const msg = (await member.api.post(`/v1/projects/${projectId}/messages`, { role: 'user', content: 'deploy' })).body;
    const req = (await member.api.post(`/v1/projects/${projectId}/requests`, { instruction: 'deploy', user_message_id: msg.id, cli_type_used: 'claude' })).body;
    expect(req).toMatchObject({ is_completed: false, is_successful: null });
    const done = await member.api.post(`/v1/projects/${projectId}/requests/${req.id}/complete`, { is_successful: true, result_metadata: { url: 'x' } });
    expect(done.body).toMatchObject({ is_completed: true, is_successful: true });
    expect((await member.api.post(`/v1/projects/${projectId}/requests/${req.id}/complete`, { is_successful: false })).status).toBe(409);
    const c = { commit_sha: 'deadbeef01', message: 'init', files_changed: ['a.ts'], stats: { additions: 3 } };
    expect((await member.api.post(`/v1/projects/${projectId}/commits`, c)).status).toBe(201);
    expect((await member.api.post(`/v1/projects/${projectId}/commits`, c)).status).toBe(409);
  });

  it("a message with a charge pays through a usage event in the message's transaction; only the service may ask", async () => {
    const svc = client(app.server, app.serviceKey);
    expect((await svc.post('/v1/cost-models', { metric: 'ai.message', base_rate: '5' })).status).toBe(201);
    const solo = (await owner.api.post('/v1/projects', { name: 'Solo' })).body.id as string;
    await svc.post('/v1/credits/grant', { user_id: owner.user.id, amount: 50, reason: 'top-up' }, { idempotencyKey: `k-${solo}` });
    const balance = async () => (await svc.get(`/v1/users/${owner.user.id}/balance`)).body.balance as number;
    const before = await balance();
    const m = await svc.post(`/v1/projects/${solo}/messages`, { role: 'assistant', content: 'x', cost_usd: 0.2, charge: { metric: 'ai.message', quantity: 2 } });
    expect(m.status, JSON.stringify(m.body)).toBe(201);
    expect(m.body).toMatchObject({ charge_metric: 'ai.message', charge_quantity: 2, credits_charged: 10, cost_usd: 0.2 });
    expect(m.body.usage_event_id).toMatch(/^evt_/);
    expect(await balance()).toBe(before - 10);
    const events = (await svc.get(`/v1/users/${owner.user.id}/events`)).body.data;
    expect(events[0]).toMatchObject({ event_id: m.body.usage_event_id, metric: 'ai.message', action_hash: m.body.id, charged: 10 });
    // Too expensive: the message is refused with the charge, nothing is written.
    const tooMuch = await svc.post(`/v1/projects/${solo}/messages`, { role: 'assistant', content: 'y', charge: { metric: 'ai.message', quantity: 1000 } });
    expect(tooMuch.status).toBe(402);
    expect(await balance()).toBe(before - 10);
    // A workspace project's pool cannot be charged through usage events yet: a clear 400.
    const ws = await svc.post(`/v1/projects/${projectId}/messages`, { role: 'assistant', content: 'x', charge: { metric: 'ai.message', quantity: 1 } });
    expect(ws.status).toBe(400);
    expect((await member.api.post(`/v1/projects/${projectId}/messages`, { role: 'user', content: 'x', charge: { metric: 'ai.message', quantity: 1 } })).status).toBe(403);
  });

  it('secrets are sealed at rest, masked in every answer, revealed only to writers and audited', async () => {
    const value = 'sk_live_0123456789abcdefSECRET';
    const created = await member.api.post(`/v1/projects/${projectId}/env-vars`, { key: 'OPENAI_API_KEY', value, environment: 'production', description: 'llm' });
    expect(created.status).toBe(201);
    expect(JSON.stringify(created.body)).not.toContain(value);
    expect(created.body.masked_value).toBe('••••••••CRET');
    const token = 'ghp_tokenvalue_1234567890_abcdef';
    const tok = await owner.api.post('/v1/service-tokens', { provider: 'github', name: 'deploy', token, workspace_id: workspaceId });
    expect(tok.status).toBe(201);
    expect(JSON.stringify(tok.body)).not.toContain(token);
    expect((await member.api.call('PUT', `/v1/projects/${projectId}/connections/github`, { body: { service_data: { repo: 'acme/app' }, service_token_id: tok.body.id } })).status).toBe(200);
    for (const api of [owner.api, viewer.api, member.api]) {
      const lists = [await api.get(`/v1/projects/${projectId}/env-vars`), await api.get('/v1/service-tokens'), await api.get(`/v1/projects/${projectId}/connections`)];
      for (const l of lists) {
        expect(l.status).toBe(200);
        expect(JSON.stringify(l.body)).not.toContain(value);
        expect(JSON.stringify(l.body)).not.toContain(token);
      }
    }
    // Nowhere in the database in plain text.
    const dump = await sql<{ t: string }>`select string_agg(row_to_json(x)::text, ' ') as t from (
      select * from ${sql.table(`${app.database.schema}.env_vars`)}) x`.execute(app.database.db);
    expect(must(dump.rows[0], 'dump.rows[0]').t).not.toContain(value);
    const dump2 = await sql<{ t: string }>`select string_agg(row_to_json(x)::text, ' ') as t from (
      select * from ${sql.table(`${app.database.schema}.service_tokens`)}) x`.execute(app.database.db);
    expect(must(dump2.rows[0], 'dump2.rows[0]').t).not.toContain(token);
    const idem = await sql<{ t: string | null }>`select string_agg(coalesce(response_body, ''), ' ') as t from ${sql.table(`${app.database.schema}.idempotency_keys`)}`.execute(app.database.db);
    expect(must(idem.rows[0], 'idem.rows[0]').t ?? '').not.toContain(value);

    // Reveal: viewers and strangers cannot; writers can, and each reveal is audited.
    const url = `/v1/projects/${projectId}/env-vars/${created.body.id}/reveal`;
    expect((await viewer.api.post(url)).status).toBe(403);
    expect((await stranger.api.post(url)).status).toBe(404);
    const revealed = await member.api.post(url);
    expect(revealed.status).toBe(200);
    expect(revealed.body).toEqual({ id: created.body.id, key: 'OPENAI_API_KEY', value });
    expect((await member.api.post(`/v1/service-tokens/${tok.body.id}/reveal`)).status).toBe(403);
    expect((await owner.api.post(`/v1/service-tokens/${tok.body.id}/reveal`)).body.token).toBe(token);
    const audit = await app.database.db.selectFrom('secret_reveals').selectAll().orderBy('created_at').execute();
    expect(audit.map((a) => [a.actor, a.target_type, a.target_id])).toEqual([
      [`user:${member.user.id}`, 'env_var', created.body.id],
      [`user:${owner.user.id}`, 'service_token', tok.body.id],
    ]);
    expect(must(audit[0], 'audit[0]').request_id).toBe(revealed.headers['x-request-id']);
  });

  it("row-level security alone refuses another user's project, messages and secrets (service check bypassed)", async () => {
    const asStranger = <T>(fn: Parameters<typeof inRequestTransaction<T>>[2]) => inRequestTransaction(app.database.db, as(stranger.user.id), fn);
    // The service layer fooled into treating the stranger as the service: RLS still hides the project.
    const viaService = await asStranger((trx) => app.services.projects.get(trx, { kind: 'service' }, projectId)).then(() => 'ok', (e: { code?: string }) => e.code);
    expect(viaService).toBe('not_found');
    expect(await asStranger((trx) => trx.selectFrom('projects').select('id').where('id', '=', projectId).execute())).toEqual([]);
    for (const table of ['messages', 'agent_sessions', 'tool_usages', 'env_vars', 'service_connections', 'commits', 'user_requests', 'conversations'] as const) {
      const everywhere = await app.database.db.selectFrom(table).select('id').where('project_id', '=', projectId).execute();
      expect(everywhere.length, `${table} has rows to hide`).toBeGreaterThan(0);
      const rows = await asStranger((trx) => trx.selectFrom(table).select('id').where('project_id', '=', projectId).execute());
      expect(rows, table).toEqual([]);
    }
    expect(await asStranger((trx) => trx.selectFrom('service_tokens').select('id').where('workspace_id', '=', workspaceId).execute())).toEqual([]);
    const forged = await asStranger((trx) =>
      trx.insertInto('messages').values({ id: 'msg_forged', project_id: projectId, role: 'user', content: 'x' }).execute(),
    ).then(() => 'ok', (e: { code?: string }) => e.code);
    expect(forged).toBe('42501');
    const asViewer = <T>(fn: Parameters<typeof inRequestTransaction<T>>[2]) => inRequestTransaction(app.database.db, as(viewer.user.id), fn);
    const viewerWrite = await asViewer((trx) =>
      trx.insertInto('env_vars').values({ id: 'env_forged', project_id: projectId, key: 'X', value_enc: 'x', key_id: 'x' }).execute(),
    ).then(() => 'ok', (e: { code?: string }) => e.code);
    expect(viewerWrite).toBe('42501');
    // Members cannot read ciphertexts directly either.
    const cipher = await inRequestTransaction(app.database.db, as(member.user.id), (trx) => sql`select value_enc from ${sql.table(`${app.database.schema}.env_vars`)}`.execute(trx)).then(() => 'ok', (e: { code?: string }) => e.code);
    expect(cipher).toBe('42501');
  });
});
