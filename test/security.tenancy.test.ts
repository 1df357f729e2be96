/**
 * Tenancy: user B can never read or change user A's resources (every user route that names a
 * resource by id), and workspace members see the pool but not the owner's own money.
 *
 * Part of the shared security suite: its set-up and the classification of every route are in
 * test/support/security-suite.ts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { dbFingerprint, errorProblems, fingerprintDiff, rawRequest } from './support/db-fingerprint.js';
import {
  A, aCheckout, aEnvVar, aHold, aIdentity, aJob, aKey, app, aPayment, aProject, aRequest, aSession, aSub, aToken, aObject, aFile,
  aWsHold, aHook, aHookDelivery, B, bearer, bKey, C, ops, ROUTES,
  useSecuritySuite, victimView,
} from './support/security-suite.js';

useSecuritySuite();

/** A's IDE resources in A's project (docs/ide.md), made after the suite's own set-up. */
const IDE_BODIES: Record<string, Record<string, unknown>> = {
  'editor-sessions': {},
  'terminal-sessions': { command: 'ls' },
  'code-executions': { language: 'python', source_code: 'print(1)' },
  'code-analyses': { file_path: 'a.ts', analysis_type: 'explain', result: {} },
  'git-repositories': { provider: 'github', repo_url: 'https://github.com/a/app', credentials: 'ghp_a-credential-value' },
  deployments: { environment: 'production' },
};
const aIde: Record<string, string> = {};
beforeAll(async () => {
  for (const [kind, body] of Object.entries(IDE_BODIES)) {
    const res = await client(app.server, A.token).post(`/v1/projects/${aProject}/${kind}`, body);
    if (res.status !== 201) throw new Error(`${kind}: ${res.status} ${JSON.stringify(res.body)}`);
    aIde[kind] = res.body.id as string;
  }
});

describe("tenancy: a user can never read or change another user's resources", () => {
  /** B's attempts on A's things. Every 'any'/'user' route with a path id must appear here. */
  const attacks = (): Array<{ op: string; method: string; url: string; body?: unknown }> => [
    { op: 'GET /v1/users/{id}', method: 'GET', url: `/v1/users/${A.user.id}` },
    { op: 'PATCH /v1/users/{id}', method: 'PATCH', url: `/v1/users/${A.user.id}`, body: { name: 'pwned' } },
    { op: 'POST /v1/users/{id}/api-keys', method: 'POST', url: `/v1/users/${A.user.id}/api-keys`, body: { name: 'backdoor' } },
    { op: 'GET /v1/users/{id}/api-keys', method: 'GET', url: `/v1/users/${A.user.id}/api-keys` },
    { op: 'DELETE /v1/api-keys/{id}', method: 'DELETE', url: `/v1/api-keys/${aKey.id}` },
    { op: 'GET /v1/workspaces/{id}', method: 'GET', url: `/v1/workspaces/${A.workspaceId}` },
    { op: 'PATCH /v1/workspaces/{id}', method: 'PATCH', url: `/v1/workspaces/${A.workspaceId}`, body: { name: 'pwned' } },
    { op: 'DELETE /v1/workspaces/{id}', method: 'DELETE', url: `/v1/workspaces/${A.workspaceId}` },
    { op: 'GET /v1/workspaces/{id}/members', method: 'GET', url: `/v1/workspaces/${A.workspaceId}/members` },
    { op: 'POST /v1/workspaces/{id}/members', method: 'POST', url: `/v1/workspaces/${A.workspaceId}/members`, body: { user_id: B.user.id, role: 'admin' } },
    { op: 'PATCH /v1/workspaces/{id}/members/{user_id}', method: 'PATCH', url: `/v1/workspaces/${A.workspaceId}/members/${C.user.id}`, body: { role: 'admin' } },
    { op: 'DELETE /v1/workspaces/{id}/members/{user_id}', method: 'DELETE', url: `/v1/workspaces/${A.workspaceId}/members/${C.user.id}` },
    { op: 'GET /v1/workspaces/{id}/members/{user_id}/spend-cap', method: 'GET', url: `/v1/workspaces/${A.workspaceId}/members/${C.user.id}/spend-cap` },
    { op: 'PUT /v1/workspaces/{id}/members/{user_id}/spend-cap', method: 'PUT', url: `/v1/workspaces/${A.workspaceId}/members/${C.user.id}/spend-cap`, body: { amount: 0, period: 'lifetime' } },
    { op: 'DELETE /v1/workspaces/{id}/members/{user_id}/spend-cap', method: 'DELETE', url: `/v1/workspaces/${A.workspaceId}/members/${C.user.id}/spend-cap` },
    { op: 'GET /v1/workspaces', method: 'GET', url: `/v1/workspaces?user_id=${A.user.id}` },
    { op: 'POST /v1/workspaces', method: 'POST', url: '/v1/workspaces', body: { name: 'squat', owner_id: A.user.id } },
    { op: 'GET /v1/users/{id}/identities', method: 'GET', url: `/v1/users/${A.user.id}/identities` },
    { op: 'POST /v1/users/{id}/identities', method: 'POST', url: `/v1/users/${A.user.id}/identities`, body: { provider: 'evil', provider_user_id: 'b' } },
    { op: 'DELETE /v1/users/{id}/identities/{provider}', method: 'DELETE', url: `/v1/users/${A.user.id}/identities/${aIdentity.provider}` },
    { op: 'GET /v1/identities/{provider}/{provider_user_id}', method: 'GET', url: `/v1/identities/${aIdentity.provider}/${aIdentity.providerUserId}` },
    { op: 'GET /v1/users/{id}/balance', method: 'GET', url: `/v1/users/${A.user.id}/balance` },
    { op: 'GET /v1/users/{id}/transactions', method: 'GET', url: `/v1/users/${A.user.id}/transactions` },
    { op: 'GET /v1/users/{id}/gateway/usage', method: 'GET', url: `/v1/users/${A.user.id}/gateway/usage` },
    { op: 'GET /v1/users/{id}/holds', method: 'GET', url: `/v1/users/${A.user.id}/holds` },
    { op: 'GET /v1/workspaces/{id}/balance', method: 'GET', url: `/v1/workspaces/${A.workspaceId}/balance` },
    { op: 'GET /v1/workspaces/{id}/transactions', method: 'GET', url: `/v1/workspaces/${A.workspaceId}/transactions` },
    { op: 'GET /v1/workspaces/{id}/holds', method: 'GET', url: `/v1/workspaces/${A.workspaceId}/holds` },
    { op: 'GET /v1/holds/{id}', method: 'GET', url: `/v1/holds/${aHold}` },
    { op: 'GET /v1/holds/{id}', method: 'GET', url: `/v1/holds/${aWsHold}` },
    { op: 'GET /v1/webhook-endpoints/{id}', method: 'GET', url: `/v1/webhook-endpoints/${aHook}` },
    { op: 'PATCH /v1/webhook-endpoints/{id}', method: 'PATCH', url: `/v1/webhook-endpoints/${aHook}`, body: { url: 'https://attacker.example/hooks' } },
    { op: 'DELETE /v1/webhook-endpoints/{id}', method: 'DELETE', url: `/v1/webhook-endpoints/${aHook}` },
    { op: 'POST /v1/webhook-endpoints/{id}/rotate-secret', method: 'POST', url: `/v1/webhook-endpoints/${aHook}/rotate-secret`, body: {} },
    { op: 'POST /v1/webhook-endpoints/{id}/test', method: 'POST', url: `/v1/webhook-endpoints/${aHook}/test` },
    { op: 'GET /v1/webhook-endpoints/{id}/deliveries', method: 'GET', url: `/v1/webhook-endpoints/${aHook}/deliveries` },
    { op: 'POST /v1/webhook-deliveries/{id}/retry', method: 'POST', url: `/v1/webhook-deliveries/${aHookDelivery}/retry` },
    { op: 'GET /v1/webhook-endpoints', method: 'GET', url: `/v1/webhook-endpoints?workspace_id=${A.workspaceId}` },
    { op: 'POST /v1/webhook-endpoints', method: 'POST', url: '/v1/webhook-endpoints', body: { url: 'https://attacker.example/hooks', event_types: ['*'], workspace_id: A.workspaceId } },
    { op: 'POST /v1/subscriptions', method: 'POST', url: '/v1/subscriptions', body: { user_id: A.user.id, plan_id: 'secfree' } },
    { op: 'GET /v1/subscriptions/{id}', method: 'GET', url: `/v1/subscriptions/${aSub}` },
    { op: 'POST /v1/subscriptions/{id}/cancel', method: 'POST', url: `/v1/subscriptions/${aSub}/cancel`, body: { at_period_end: false } },
    { op: 'GET /v1/users/{id}/subscriptions', method: 'GET', url: `/v1/users/${A.user.id}/subscriptions` },
    { op: 'GET /v1/users/{id}/usage', method: 'GET', url: `/v1/users/${A.user.id}/usage` },
    { op: 'GET /v1/users/{id}/events', method: 'GET', url: `/v1/users/${A.user.id}/events` },
    { op: 'GET /v1/users/{id}/budget-guard', method: 'GET', url: `/v1/users/${A.user.id}/budget-guard` },
    { op: 'GET /v1/users/{id}/overage-charges', method: 'GET', url: `/v1/users/${A.user.id}/overage-charges` },
    { op: 'GET /v1/payments/{id}', method: 'GET', url: `/v1/payments/${aPayment}` },
    { op: 'GET /v1/checkouts/{id}', method: 'GET', url: `/v1/checkouts/${aCheckout}` },
    { op: 'POST /v1/checkouts/{id}/capture', method: 'POST', url: `/v1/checkouts/${aCheckout}/capture` },
    // A checkout bought for A, by B: a user creates checkouts for themself only.
    { op: 'POST /v1/checkout', method: 'POST', url: '/v1/checkout', body: { user_id: A.user.id, package_id: 'pkg_any', success_url: 'https://evil.example.com/' } },
    { op: 'GET /v1/users/{id}/payments', method: 'GET', url: `/v1/users/${A.user.id}/payments` },
    { op: 'GET /v1/users/{id}/invoices', method: 'GET', url: `/v1/users/${A.user.id}/invoices` },
    { op: 'GET /v1/users/{id}/customers', method: 'GET', url: `/v1/users/${A.user.id}/customers` },
    { op: 'GET /v1/users/{id}/email-aliases', method: 'GET', url: `/v1/users/${A.user.id}/email-aliases` },
    { op: 'GET /v1/jobs/{id}', method: 'GET', url: `/v1/jobs/${aJob}` },
    { op: 'GET /v1/users/{id}/jobs', method: 'GET', url: `/v1/users/${A.user.id}/jobs` },
    { op: 'GET /v1/projects/{id}', method: 'GET', url: `/v1/projects/${aProject}` },
    { op: 'PATCH /v1/projects/{id}', method: 'PATCH', url: `/v1/projects/${aProject}`, body: { name: 'pwned' } },
    { op: 'DELETE /v1/projects/{id}', method: 'DELETE', url: `/v1/projects/${aProject}` },
    { op: 'GET /v1/projects', method: 'GET', url: `/v1/projects?user_id=${A.user.id}` },
    { op: 'POST /v1/projects', method: 'POST', url: '/v1/projects', body: { name: 'squat', user_id: A.user.id } },
    { op: 'POST /v1/projects', method: 'POST', url: '/v1/projects', body: { name: 'squat', workspace_id: A.workspaceId } },
    ...['conversations', 'sessions', 'messages', 'tool-usage', 'requests', 'commits', 'connections', 'env-vars'].map((k) => ({
      op: `GET /v1/projects/{id}/${k}`, method: 'GET', url: `/v1/projects/${aProject}/${k}`,
    })),
    { op: 'POST /v1/projects/{id}/conversations', method: 'POST', url: `/v1/projects/${aProject}/conversations`, body: {} },
    { op: 'POST /v1/projects/{id}/sessions', method: 'POST', url: `/v1/projects/${aProject}/sessions`, body: {} },
    { op: 'PATCH /v1/projects/{id}/sessions/{session_id}', method: 'PATCH', url: `/v1/projects/${aProject}/sessions/${aSession}`, body: { status: 'failed' } },
    { op: 'POST /v1/projects/{id}/messages', method: 'POST', url: `/v1/projects/${aProject}/messages`, body: { role: 'user', content: 'x' } },
    { op: 'POST /v1/projects/{id}/tool-usage', method: 'POST', url: `/v1/projects/${aProject}/tool-usage`, body: { session_id: aSession, tool_name: 'x' } },
    { op: 'POST /v1/projects/{id}/requests', method: 'POST', url: `/v1/projects/${aProject}/requests`, body: { instruction: 'x' } },
    { op: 'POST /v1/projects/{id}/requests/{request_id}/complete', method: 'POST', url: `/v1/projects/${aProject}/requests/${aRequest}/complete`, body: { is_successful: false } },
    { op: 'POST /v1/projects/{id}/commits', method: 'POST', url: `/v1/projects/${aProject}/commits`, body: { commit_sha: 'abcdef1', message: 'x' } },
    { op: 'PUT /v1/projects/{id}/connections/{provider}', method: 'PUT', url: `/v1/projects/${aProject}/connections/github`, body: { status: 'error' } },
    { op: 'DELETE /v1/projects/{id}/connections/{provider}', method: 'DELETE', url: `/v1/projects/${aProject}/connections/github` },
    { op: 'POST /v1/projects/{id}/env-vars', method: 'POST', url: `/v1/projects/${aProject}/env-vars`, body: { key: 'EVIL', value: 'x' } },
    { op: 'DELETE /v1/projects/{id}/env-vars/{env_id}', method: 'DELETE', url: `/v1/projects/${aProject}/env-vars/${aEnvVar}` },
    { op: 'POST /v1/projects/{id}/env-vars/{env_id}/reveal', method: 'POST', url: `/v1/projects/${aProject}/env-vars/${aEnvVar}/reveal` },
    { op: 'GET /v1/service-tokens', method: 'GET', url: `/v1/service-tokens?user_id=${A.user.id}` },
    { op: 'POST /v1/service-tokens', method: 'POST', url: '/v1/service-tokens', body: { provider: 'x', name: 'x', token: 'x', workspace_id: A.workspaceId } },
    { op: 'DELETE /v1/service-tokens/{id}', method: 'DELETE', url: `/v1/service-tokens/${aToken}` },
    { op: 'POST /v1/service-tokens/{id}/reveal', method: 'POST', url: `/v1/service-tokens/${aToken}/reveal` },
    // Project files in A's project.
    { op: 'POST /v1/projects/{id}/files', method: 'POST', url: `/v1/projects/${aProject}/files`, body: { path: 'src/evil.ts', content: 'x' } },
    { op: 'GET /v1/projects/{id}/files', method: 'GET', url: `/v1/projects/${aProject}/files` },
    { op: 'GET /v1/projects/{id}/files/{file_id}', method: 'GET', url: `/v1/projects/${aProject}/files/${aFile}` },
    { op: 'GET /v1/projects/{id}/files/{file_id}/versions', method: 'GET', url: `/v1/projects/${aProject}/files/${aFile}/versions` },
    { op: 'GET /v1/projects/{id}/files/{file_id}/diff', method: 'GET', url: `/v1/projects/${aProject}/files/${aFile}/diff?from=1&to=1` },
    { op: 'POST /v1/projects/{id}/files/{file_id}/restore', method: 'POST', url: `/v1/projects/${aProject}/files/${aFile}/restore`, body: { version: 1 } },
    { op: 'DELETE /v1/projects/{id}/files/{file_id}', method: 'DELETE', url: `/v1/projects/${aProject}/files/${aFile}` },
    // IDE resources in A's project.
    ...Object.entries(IDE_BODIES).flatMap(([kind, body]) => [
      { op: `POST /v1/projects/{id}/${kind}`, method: 'POST', url: `/v1/projects/${aProject}/${kind}`, body },
      { op: `GET /v1/projects/{id}/${kind}`, method: 'GET', url: `/v1/projects/${aProject}/${kind}` },
      { op: `GET /v1/projects/{id}/${kind}/{rid}`, method: 'GET', url: `/v1/projects/${aProject}/${kind}/${aIde[kind]}` },
      { op: `DELETE /v1/projects/{id}/${kind}/{rid}`, method: 'DELETE', url: `/v1/projects/${aProject}/${kind}/${aIde[kind]}` },
      ...(kind === 'code-analyses' ? [] : [{ op: `PATCH /v1/projects/{id}/${kind}/{rid}`, method: 'PATCH', url: `/v1/projects/${aProject}/${kind}/${aIde[kind]}`, body: {} }]),
    ]),
    // Storage: A's folder in a bucket (the path's first segment is A's id).
    { op: 'PUT /v1/storage/objects/{bucket}/{*}', method: 'PUT', url: `/v1/storage/objects/sec-files/${aObject}`, body: { overwrite: true } },
    { op: 'PUT /v1/storage/objects/{bucket}/{*}', method: 'PUT', url: `/v1/storage/objects/sec-files/${A.user.id}/planted.json`, body: { planted: true } },
    { op: 'PUT /v1/storage/objects/{bucket}/{*}', method: 'PUT', url: `/v1/storage/objects/sec-files/${A.workspaceId}/planted.json`, body: { planted: true } },
    { op: 'GET /v1/storage/objects/{bucket}/{*}', method: 'GET', url: `/v1/storage/objects/sec-files/${aObject}` },
    { op: 'DELETE /v1/storage/objects/{bucket}/{*}', method: 'DELETE', url: `/v1/storage/objects/sec-files/${aObject}` },
    { op: 'GET /v1/storage/objects/{bucket}', method: 'GET', url: `/v1/storage/objects/sec-files?prefix=${A.user.id}/` },
    { op: 'GET /v1/storage/objects/{bucket}', method: 'GET', url: `/v1/storage/objects/sec-files?prefix=${A.workspaceId}/` },
    { op: 'POST /v1/storage/objects/{bucket}/copy', method: 'POST', url: '/v1/storage/objects/sec-files/copy', body: { from: aObject, to: `${B.user.id}/stolen.txt` } },
    { op: 'POST /v1/storage/objects/{bucket}/move', method: 'POST', url: '/v1/storage/objects/sec-files/move', body: { from: aObject, to: `${B.user.id}/stolen.txt` } },
    { op: 'POST /v1/storage/sign/{bucket}/{*}', method: 'POST', url: `/v1/storage/sign/sec-files/${aObject}`, body: { action: 'download', expires_in: 60 } },
    { op: 'POST /v1/storage/sign/{bucket}/{*}', method: 'POST', url: `/v1/storage/sign/sec-files/${A.user.id}/up.txt`, body: { action: 'upload', expires_in: 60 } },
  ];

  it('the attack list covers every user route that names a resource by id', () => {
    const covered = new Set(attacks().map((a) => a.op));
    const needed = ops
      .filter((op) => ['user', 'any'].includes(ROUTES[op.key]?.auth ?? '') && op.path.includes('{') && !ROUTES[op.key]?.shared)
      .map((op) => op.key);
    expect(needed.length).toBeGreaterThan(0);
    expect(needed.filter((k) => !covered.has(k))).toEqual([]);
    for (const a of attacks()) expect(ROUTES[a.op], a.op).toBeDefined();
  });

  it.each(['JWT', 'API key'] as const)(
    "user B's %s gets 403 or 404 on every one of user A's resources, and A's data is unchanged",
    async (via) => {
      const header = bearer(via === 'JWT' ? B.token : bKey.key);
      const before = await victimView();
      const fp = await dbFingerprint(app);
      const problems: string[] = [];
      for (const a of attacks()) {
        const res = await rawRequest(app, {
          method: a.method,
          url: a.url,
          headers: { authorization: header, ...(a.body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(a.body !== undefined ? { payload: JSON.stringify(a.body) } : {}),
        });
        const label = `${a.method} ${a.url} as B (${via})`;
        if (res.status === 404) problems.push(...errorProblems(res, 404, 'not_found', label));
        else problems.push(...errorProblems(res, 403, 'forbidden', label));
      }
      problems.push(...fingerprintDiff(fp, await dbFingerprint(app), `B (${via})`));
      expect(problems).toEqual([]);
      expect(await victimView()).toEqual(before);
    },
  );

  it("user B's own lists never contain user A's resources", async () => {
    for (const token of [B.token, bKey.key]) {
      const b = client(app.server, token);
      const ws = await b.get('/v1/workspaces?limit=200');
      expect(ws.status).toBe(200);
      expect(ws.body.data.map((w: { id: string }) => w.id)).not.toContain(A.workspaceId);
      expect(ws.body.data.map((w: { id: string }) => w.id)).toContain(B.workspaceId);
      const keys = await b.get(`/v1/users/${B.user.id}/api-keys?limit=200`);
      expect(keys.status).toBe(200);
      expect(keys.body.data.every((k: { user_id: string }) => k.user_id === B.user.id)).toBe(true);
      expect(keys.body.data.map((k: { id: string }) => k.id)).not.toContain(aKey.id);
      const holds = await b.get(`/v1/users/${B.user.id}/holds?limit=200`);
      expect(holds.status).toBe(200);
      expect(holds.body.data.map((h: { id: string }) => h.id)).not.toContain(aHold);
      const txns = await b.get(`/v1/users/${B.user.id}/transactions?limit=200`);
      expect(txns.status).toBe(200);
      expect(txns.body.data.every((t: { user_id: string }) => t.user_id === B.user.id)).toBe(true);
    }
  });

  it("a workspace's money is hidden from non-members (404) and readable by its members; a member cannot read the owner's own money", async () => {
    const wsReads = [
      `/v1/workspaces/${A.workspaceId}/balance`,
      `/v1/workspaces/${A.workspaceId}/transactions`,
      `/v1/workspaces/${A.workspaceId}/holds`,
      `/v1/holds/${aWsHold}`,
    ];
    const problems: string[] = [];
    // B is not a member: the workspace (and its holds) do not exist as far as B can tell.
    for (const [via, token] of [['JWT', B.token], ['API key', bKey.key]] as const) {
      for (const url of wsReads) problems.push(...errorProblems(await rawRequest(app, { method: 'GET', url, token }), 404, 'not_found', `GET ${url} as B (${via})`));
    }
    // C is a plain member: the pool is C's to read, A's personal money is not.
    const c = client(app.server, C.token);
    for (const url of wsReads) {
      const res = await c.get(url);
      if (res.status !== 200) problems.push(`GET ${url} as member C: expected 200, got ${res.status} ${JSON.stringify(res.body)}`);
    }
    const pool = await c.get(`/v1/workspaces/${A.workspaceId}/balance`);
    if (pool.body?.workspace_id !== A.workspaceId || pool.body?.held < 4) problems.push(`member C's pool balance: ${JSON.stringify(pool.body)}`);
    const wsHolds = await c.get(`/v1/workspaces/${A.workspaceId}/holds`);
    if (!wsHolds.body?.data?.some((h: { id: string }) => h.id === aWsHold)) problems.push(`member C's pool holds lack ${aWsHold}: ${JSON.stringify(wsHolds.body)}`);
    for (const url of [`/v1/users/${A.user.id}/balance`, `/v1/users/${A.user.id}/transactions`, `/v1/users/${A.user.id}/holds`]) {
      problems.push(...errorProblems(await c.get(url), 403, 'forbidden', `GET ${url} as member C`));
    }
    problems.push(...errorProblems(await c.get(`/v1/holds/${aHold}`), 404, 'not_found', `GET A's own hold as member C`));
    expect(problems).toEqual([]);
  });

  it('a plain member can read the workspace but cannot manage it or promote themself', async () => {
    const c = client(app.server, C.token);
    expect((await c.get(`/v1/workspaces/${A.workspaceId}`)).status).toBe(200);
    expect((await c.get(`/v1/workspaces/${A.workspaceId}/members`)).status).toBe(200);
    const before = await victimView();
    const fp = await dbFingerprint(app);
    const problems = [
      ...errorProblems(await c.patch(`/v1/workspaces/${A.workspaceId}`, { name: 'mine' }), 403, 'forbidden', 'member renames'),
      ...errorProblems(await c.del(`/v1/workspaces/${A.workspaceId}`), 403, 'forbidden', 'member deletes'),
      ...errorProblems(await c.post(`/v1/workspaces/${A.workspaceId}/members`, { user_id: B.user.id, role: 'member' }), 403, 'forbidden', 'member invites'),
      ...errorProblems(await c.patch(`/v1/workspaces/${A.workspaceId}/members/${C.user.id}`, { role: 'admin' }), 403, 'forbidden', 'member promotes self'),
    ];
    problems.push(...fingerprintDiff(fp, await dbFingerprint(app), 'member'));
    expect(problems).toEqual([]);
    expect(await victimView()).toEqual(before);
  });
});
