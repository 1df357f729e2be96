/**
 * The shared security suite's set-up (test/security.*.test.ts): the classification of every route
 * the app documents in its own OpenAPI document (who may call it, which API-key scope it needs, and
 * a request that succeeds for its owner), and the fixtures the checks attack — so a new route is
 * covered by every file the moment it exists, and a test fails until it is classified here.
 */
import { randomBytes } from 'node:crypto';
import { SignJWT, UnsecuredJWT } from 'jose';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { SCOPES, type Scope } from '../../src/modules/api-keys/api-keys.scopes.js';
import { client, type Json, type Res } from './client.js';
import { dbFingerprint, errorProblems, fingerprintDiff, rawRequest } from './db-fingerprint.js';
import { makeApiKey, makeUser, signUp } from './fixtures.js';
import { fakeCheckoutProviders, type FakeProviders } from './fake-checkout-providers.js';
import { createTestApp, type TestApp } from './harness.js';
import { must } from '../../src/lib/must.js';

// ---------------------------------------------------------------------------------------------
// The classification of every route. Keys are "METHOD /openapi/path".
// ---------------------------------------------------------------------------------------------

type Auth = 'public' | 'service' | 'user' | 'any';

export interface Owner {
  user: { id: string; email: string };
  token: string;
  password: string;
  workspaceId: string;
}

/** A request that succeeds for `owner` (or for the service, on service routes). */
interface Sample {
  url: string;
  body?: unknown;
  /** Extra request headers (money routes: a fresh Idempotency-Key). */
  headers?: Record<string, string>;
  status: number;
}

export interface RouteSpec {
  /** public: no credentials; service: the service key only; user: signed-in users only; any: both. */
  auth: Auth;
  /** The scope an API key needs (none: every key may call it). */
  scope?: Scope;
  /** Builds a fresh request that succeeds (may create throwaway resources first). */
  sample?: (owner: Owner) => Promise<Sample>;
  /** The status when an API key (rather than a session JWT) makes the sample request, if different. */
  keyStatus?: number;
  /** Names a shared catalogue entry (plans, cost models), not a resource any user owns. */
  shared?: boolean;
}

export let app: TestApp;
export const email = () => `sec_${randomBytes(6).toString('hex')}@example.com`;
const svc = () => client(app.server, app.serviceKey);

/** A fresh Idempotency-Key: every sample is a new request, never a replay. */
const idemKey = () => `sec-${randomBytes(12).toString('hex')}`;
const idem = () => ({ 'idempotency-key': idemKey() });

type MoneyOwner = { user_id: string } | { workspace_id: string };

/** A money movement as the service (fresh Idempotency-Key); throws unless it answers `status`. */
async function money(url: string, body: Record<string, unknown>, status = 201): Promise<Json> {
  const res = await svc().post(url, body, { idempotencyKey: idemKey() });
  if (res.status !== status) throw new Error(`${url}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Credits for a sample that spends them (debit, hold, capture, refund). */
const grantTo = (owner: MoneyOwner, amount = 10) => money('/v1/credits/grant', { ...owner, amount, reason: 'sample credits' });
/** A fresh open hold (granting its credits first); capture and release each need their own. */
async function freshHold(owner: MoneyOwner, amount = 4): Promise<string> {
  await grantTo(owner, amount);
  return (await money('/v1/holds', { ...owner, amount })).id as string;
}
/** A fresh debit (granting its credits first), for a refund that names it. */
async function freshDebit(owner: MoneyOwner, amount = 3): Promise<string> {
  await grantTo(owner, amount);
  return (await money('/v1/credits/debit', { ...owner, amount, reason: 'sample debit' })).transaction.id as string;
}

/** Links a fresh provider login to a user (as the service) and returns its provider and id. */
async function freshIdentity(userId: string): Promise<{ provider: string; providerUserId: string }> {
  const provider = `p${randomBytes(4).toString('hex')}`;
  const providerUserId = `pu-${randomBytes(6).toString('hex')}`;
  const res = await svc().post(`/v1/users/${userId}/identities`, { provider, provider_user_id: providerUserId, access_token: 'sample-token' });
  if (res.status !== 200) throw new Error(`freshIdentity: ${res.status} ${JSON.stringify(res.body)}`);
  return { provider, providerUserId };
}

/** A fresh pending job of `userId` (granting its cost first). */
async function freshJob(userId: string, cost = 2): Promise<string> {
  await grantTo({ user_id: userId }, cost);
  return (await money('/v1/jobs', { user_id: userId, kind: 'sample', input: { prompt: 'x' }, cost })).id as string;
}

/** As `o` (JWT): create something and return its id; throws unless 201/200. */
async function asOwner(o: { token: string }, method: string, url: string, body: unknown = {}): Promise<string> {
  const res = await client(app.server, o.token).call(method, url, { body });
  if (res.status !== 201 && res.status !== 200) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}
const hex = () => randomBytes(6).toString('hex');
const projects = new Map<string, string>();
/** One project per owner for the samples that only add to it (a fresh one where it is consumed). */
async function projectOf(o: { token: string; user: { id: string } }): Promise<string> {
  let id = projects.get(o.user.id);
  if (!id) projects.set(o.user.id, (id = await asOwner(o, 'POST', '/v1/projects', { name: 'Sample project' })));
  return id;
}

async function freshMember(workspaceId: string): Promise<string> {
  const u = await makeUser(app);
  const res = await svc().post(`/v1/workspaces/${workspaceId}/members`, { user_id: u.id, role: 'member' });
  if (res.status !== 201) throw new Error(`freshMember: ${res.status} ${JSON.stringify(res.body)}`);
  return u.id;
}

/** A fresh member with a spend cap (set by the service): the URL of that cap. */
async function cappedMember(workspaceId: string): Promise<string> {
  const url = `/v1/workspaces/${workspaceId}/members/${await freshMember(workspaceId)}/spend-cap`;
  const res = await svc().put(url, { amount: 100, period: 'month' });
  if (res.status !== 200) throw new Error(`cappedMember: ${res.status} ${JSON.stringify(res.body)}`);
  return url;
}

/** Billing fixtures: a free plan, a pay-as-you-go plan and a metric, made once. */
let catalogReady: Promise<void> | null = null;
function catalog(): Promise<void> {
  catalogReady ??= (async () => {
    const s = svc();
    const plans = [
      { slug: 'secfree', name: 'Sec free', trial_days: 0, allowances: [{ class: 'Usage', amount: 5 }] },
      { slug: 'secpayg', name: 'Sec PAYG', trial_days: 0, pay_as_you_go: true, overage_unit_amount: '1' },
    ];
    for (const p of plans) if ((await s.post('/v1/plans', p)).status !== 201) throw new Error(`plan ${p.slug}`);
    if ((await s.post('/v1/cost-models', { metric: 'sec_tokens' })).status !== 201) throw new Error('cost model');
  })();
  return catalogReady;
}
/** Ends a user's live subscriptions (so a sample may subscribe them again). */
async function endSubs(userId: string): Promise<void> {
  for (const sub of (await svc().get(`/v1/users/${userId}/subscriptions`)).body.data as { id: string; status: string }[]) {
    if (sub.status !== 'canceled') await svc().post(`/v1/subscriptions/${sub.id}/cancel`, { at_period_end: false });
  }
}
async function freshSub(userId: string, plan = 'secfree'): Promise<string> {
  await catalog();
  await endSubs(userId);
  const res = await svc().post('/v1/subscriptions', { user_id: userId, plan_id: plan });
  if (res.status !== 201) throw new Error(`freshSub: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}
/** An overage charge: a PAYG subscription and an event larger than the balance. */
async function freshOverage(userId: string): Promise<string> {
  await svc().del(`/v1/users/${userId}/budget-guard`);
  await freshSub(userId, 'secpayg');
  const ev = await svc().post('/v1/events', { user_id: userId, metric: 'sec_tokens', quantity: 500, action_hash: idemKey() }, { idempotencyKey: idemKey() });
  if (ev.status !== 201) throw new Error(`freshOverage: ${ev.status} ${JSON.stringify(ev.body)}`);
  const list = await svc().get(`/v1/users/${userId}/overage-charges`);
  return must((list.body.data as { id: string; status: string }[]).find((c) => c.status === 'pending'), 'a matching item').id;
}
const uniq = () => randomBytes(5).toString('hex');
/** A fresh outgoing-webhook endpoint of o's workspace (never delivered to: the queue does not run here). */
async function hookEndpoint(o: Owner): Promise<string> {
  const res = await svc().post('/v1/webhook-endpoints', { url: 'https://example.com/hooks', event_types: ['webhook.test'], workspace_id: o.workspaceId });
  if (res.status !== 201) throw new Error(`hookEndpoint: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}
/** A new workspace o owns. */
async function freshWorkspace(o: Owner): Promise<string> {
  const res = await client(app.server, o.token).post('/v1/workspaces', { name: `hooks ${uniq()}` });
  if (res.status !== 201) throw new Error(`freshWorkspace: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}
/** A delivery of o's workspace endpoint that has given up (the queue does not run in these tests). */
async function settledDelivery(o: Owner): Promise<string> {
  const endpoint = await hookEndpoint(o);
  await svc().post(`/v1/webhook-endpoints/${endpoint}/test`, {});
  const delivery = await app.database.db.selectFrom('webhook_deliveries').select('id').where('endpoint_id', '=', endpoint).executeTakeFirstOrThrow();
  await app.database.db.updateTable('webhook_deliveries').set({ status: 'failed' }).where('id', '=', delivery.id).execute();
  return delivery.id;
}

const upstreamBody = () => ({ type: 'openai', base_url: 'http://127.0.0.1:9/v1', credentials: `sk-test-${hex()}`, models: ['*'] });
const anUpstream = async () => {
  const res = await svc().post('/v1/gateway/upstreams', upstreamBody());
  return res.body.id as string;
};

export const ROUTES: Record<string, RouteSpec> = {
  'GET /health': { auth: 'public' },
  'GET /ready': { auth: 'public' },
  'POST /v1/auth/signup': { auth: 'public' },
  'POST /v1/auth/login': { auth: 'public' },
  'POST /v1/auth/refresh': { auth: 'public' },
  'POST /v1/auth/password-reset': { auth: 'public' },
  'POST /v1/auth/password-reset/confirm': { auth: 'public' },
  // LLM gateway (issue 14): upstream accounts are the operator's, service key only.
  'POST /v1/gateway/upstreams': { auth: 'service', sample: async () => ({ url: '/v1/gateway/upstreams', body: upstreamBody(), status: 201 }) },
  'GET /v1/gateway/upstreams': { auth: 'service', sample: async () => ({ url: '/v1/gateway/upstreams', status: 200 }) },
  'GET /v1/gateway/upstreams/{id}': { auth: 'service', sample: async () => ({ url: `/v1/gateway/upstreams/${await anUpstream()}`, status: 200 }) },
  'PATCH /v1/gateway/upstreams/{id}': { auth: 'service', sample: async () => ({ url: `/v1/gateway/upstreams/${await anUpstream()}`, body: { weight: 7 }, status: 200 }) },
  'DELETE /v1/gateway/upstreams/{id}': { auth: 'service', sample: async () => ({ url: `/v1/gateway/upstreams/${await anUpstream()}`, status: 200 }) },
  'GET /v1/gateway/usage': { auth: 'service', sample: async () => ({ url: '/v1/gateway/usage', status: 200 }) },
  'GET /v1/users/{id}/gateway/usage': { auth: 'any', scope: 'credits:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/gateway/usage`, status: 200 }) },
  'GET /v1/mail': { auth: 'service', sample: async () => ({ url: '/v1/mail', status: 200 }) },
  'GET /v1/mail/{id}': {
    auth: 'service',
    sample: async (o) => {
      // A reset request for the owner's address puts a mail in the outbox.
      await client(app.server, null).post('/v1/auth/password-reset', { email: o.user.email });
      const list = await client(app.server, app.serviceKey).get(`/v1/mail?user_id=${o.user.id}`);
      return { url: `/v1/mail/${must(list.body.data[0], 'a mail in the outbox').id as string}`, status: 200 };
    },
  },
  // Ends the caller's session: only a session JWT can; an API key gets 400 by design.
  'POST /v1/auth/logout': { auth: 'user', sample: async () => ({ url: '/v1/auth/logout', status: 200 }), keyStatus: 400 },
  // Anonymous: the token mailed to the address is the credential (test/email-verification.test.ts).
  'POST /v1/auth/verify-email': { auth: 'public' },
  // The token goes to the app to mail, never to the end user (who could verify any address with it).
  'POST /v1/users/{id}/email-verification': {
    auth: 'service',
    sample: async (o) => ({ url: `/v1/users/${o.user.id}/email-verification`, status: 201 }),
  },

  'POST /v1/users': { auth: 'service', sample: async () => ({ url: '/v1/users', body: { email: email() }, status: 201 }) },
  'GET /v1/users': { auth: 'service', sample: async () => ({ url: '/v1/users', status: 200 }) },
  'GET /v1/users/{id}': { auth: 'any', scope: 'users:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}`, status: 200 }) },
  'PATCH /v1/users/{id}': {
    auth: 'any',
    scope: 'users:write',
    sample: async (o) => ({ url: `/v1/users/${o.user.id}`, body: { bio: `bio ${randomBytes(3).toString('hex')}` }, status: 200 }),
  },
  'GET /v1/me': { auth: 'user', sample: async () => ({ url: '/v1/me', status: 200 }) },

  'POST /v1/users/{id}/api-keys': {
    auth: 'any',
    scope: 'keys:write',
    sample: async (o) => ({ url: `/v1/users/${o.user.id}/api-keys`, body: { name: 'minted', scopes: ['keys:write'] }, status: 201 }),
  },
  'GET /v1/users/{id}/api-keys': { auth: 'any', scope: 'keys:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/api-keys`, status: 200 }) },
  'PATCH /v1/api-keys/{id}': {
    auth: 'service',
    sample: async (o) => ({ url: `/v1/api-keys/${(await makeApiKey(app, o.user.id, { name: 'limited' })).id}`, body: { rpm_limit: 60 }, status: 200 }),
  },
  'DELETE /v1/api-keys/{id}': {
    auth: 'any',
    scope: 'keys:write',
    sample: async (o) => ({ url: `/v1/api-keys/${(await makeApiKey(app, o.user.id, { name: 'doomed' })).id}`, status: 200 }),
  },

  'POST /v1/workspaces': { auth: 'any', scope: 'workspaces:write', sample: async () => ({ url: '/v1/workspaces', body: { name: 'Sample' }, status: 201 }) },
  'GET /v1/workspaces': { auth: 'any', scope: 'workspaces:read', sample: async () => ({ url: '/v1/workspaces', status: 200 }) },
  'GET /v1/workspaces/{id}': { auth: 'any', scope: 'workspaces:read', sample: async (o) => ({ url: `/v1/workspaces/${o.workspaceId}`, status: 200 }) },
  'PATCH /v1/workspaces/{id}': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o) => ({ url: `/v1/workspaces/${o.workspaceId}`, body: { description: `d ${randomBytes(3).toString('hex')}` }, status: 200 }),
  },
  'DELETE /v1/workspaces/{id}': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o) => {
      const ws = await svc().post('/v1/workspaces', { name: 'Doomed', owner_id: o.user.id });
      if (ws.status !== 201) throw new Error(`sample workspace: ${ws.status} ${JSON.stringify(ws.body)}`);
      return { url: `/v1/workspaces/${ws.body.id}`, status: 200 };
    },
  },
  'GET /v1/workspaces/{id}/members': {
    auth: 'any',
    scope: 'workspaces:read',
    sample: async (o) => ({ url: `/v1/workspaces/${o.workspaceId}/members`, status: 200 }),
  },
  'POST /v1/workspaces/{id}/members': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o) => ({
      url: `/v1/workspaces/${o.workspaceId}/members`,
      body: { user_id: (await makeUser(app)).id, role: 'member' },
      status: 201,
    }),
  },
  'PATCH /v1/workspaces/{id}/members/{user_id}': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o) => ({ url: `/v1/workspaces/${o.workspaceId}/members/${await freshMember(o.workspaceId)}`, body: { role: 'viewer' }, status: 200 }),
  },
  'DELETE /v1/workspaces/{id}/members/{user_id}': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o) => ({ url: `/v1/workspaces/${o.workspaceId}/members/${await freshMember(o.workspaceId)}`, status: 200 }),
  },
  // Spend caps on the pool: the owner (and admins, the service) on others; the member reads their own.
  'GET /v1/workspaces/{id}/members/{user_id}/spend-cap': {
    auth: 'any',
    scope: 'workspaces:read',
    sample: async (o) => ({ url: await cappedMember(o.workspaceId), status: 200 }),
  },
  'PUT /v1/workspaces/{id}/members/{user_id}/spend-cap': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o) => ({
      url: `/v1/workspaces/${o.workspaceId}/members/${await freshMember(o.workspaceId)}/spend-cap`,
      body: { amount: 100, period: 'month' },
      status: 200,
    }),
  },
  'DELETE /v1/workspaces/{id}/members/{user_id}/spend-cap': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o) => ({ url: await cappedMember(o.workspaceId), status: 200 }),
  },

  // Linked logins: the service links, finds and unlinks; a user may list their own.
  'POST /v1/users/{id}/identities': {
    auth: 'service',
    sample: async (o) => ({
      url: `/v1/users/${o.user.id}/identities`,
      body: { provider: 'github', provider_user_id: `gh-${randomBytes(6).toString('hex')}`, access_token: 'sample-token' },
      status: 200,
    }),
  },
  'GET /v1/users/{id}/identities': { auth: 'any', scope: 'users:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/identities`, status: 200 }) },
  'GET /v1/identities/{provider}/{provider_user_id}': {
    auth: 'service',
    sample: async (o) => {
      const { provider, providerUserId } = await freshIdentity(o.user.id);
      return { url: `/v1/identities/${provider}/${providerUserId}`, status: 200 };
    },
  },
  'DELETE /v1/users/{id}/identities/{provider}': {
    auth: 'service',
    sample: async (o) => ({ url: `/v1/users/${o.user.id}/identities/${(await freshIdentity(o.user.id)).provider}`, status: 200 }),
  },

  // Money movements: the service only, and an Idempotency-Key is required.
  'POST /v1/credits/grant': {
    auth: 'service',
    sample: async (o) => ({ url: '/v1/credits/grant', body: { user_id: o.user.id, amount: 5, reason: 'sample grant' }, headers: idem(), status: 201 }),
  },
  'POST /v1/credits/debit': {
    auth: 'service',
    sample: async (o) => {
      await grantTo({ user_id: o.user.id });
      return { url: '/v1/credits/debit', body: { user_id: o.user.id, amount: 2, reason: 'sample debit' }, headers: idem(), status: 201 };
    },
  },
  'POST /v1/credits/refund': {
    auth: 'service',
    sample: async (o) => {
      const transaction_id = await freshDebit({ user_id: o.user.id });
      return { url: '/v1/credits/refund', body: { user_id: o.user.id, amount: 3, reason: 'sample refund', transaction_id }, headers: idem(), status: 201 };
    },
  },
  'POST /v1/credits/adjust': {
    auth: 'service',
    sample: async (o) => ({ url: '/v1/credits/adjust', body: { user_id: o.user.id, amount: 2, reason: 'sample adjustment' }, headers: idem(), status: 201 }),
  },
  'POST /v1/holds': {
    auth: 'service',
    sample: async (o) => {
      await grantTo({ user_id: o.user.id });
      return { url: '/v1/holds', body: { user_id: o.user.id, amount: 4 }, headers: idem(), status: 201 };
    },
  },
  'POST /v1/holds/{id}/capture': {
    auth: 'service',
    sample: async (o) => ({ url: `/v1/holds/${await freshHold({ user_id: o.user.id })}/capture`, body: { amount: 3 }, headers: idem(), status: 200 }),
  },
  'POST /v1/holds/{id}/release': {
    auth: 'service',
    sample: async (o) => ({ url: `/v1/holds/${await freshHold({ user_id: o.user.id })}/release`, headers: idem(), status: 200 }),
  },

  // Reading money: the service, the user themself, or the workspace's members.
  'GET /v1/users/{id}/balance': { auth: 'any', scope: 'credits:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/balance`, status: 200 }) },
  'GET /v1/users/{id}/transactions': {
    auth: 'any',
    scope: 'credits:read',
    sample: async (o) => ({ url: `/v1/users/${o.user.id}/transactions`, status: 200 }),
  },
  'GET /v1/users/{id}/holds': { auth: 'any', scope: 'credits:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/holds`, status: 200 }) },
  'GET /v1/workspaces/{id}/balance': {
    auth: 'any',
    scope: 'credits:read',
    sample: async (o) => ({ url: `/v1/workspaces/${o.workspaceId}/balance`, status: 200 }),
  },
  'GET /v1/workspaces/{id}/transactions': {
    auth: 'any',
    scope: 'credits:read',
    sample: async (o) => ({ url: `/v1/workspaces/${o.workspaceId}/transactions`, status: 200 }),
  },
  'GET /v1/workspaces/{id}/holds': {
    auth: 'any',
    scope: 'credits:read',
    sample: async (o) => ({ url: `/v1/workspaces/${o.workspaceId}/holds`, status: 200 }),
  },
  'GET /v1/holds/{id}': {
    auth: 'any',
    scope: 'credits:read',
    sample: async (o) => ({ url: `/v1/holds/${await freshHold({ user_id: o.user.id })}`, status: 200 }),
  },

  // Billing: the catalogue is shared (any signed-in user reads it), the rest is per user.
  'POST /v1/plans': { auth: 'service', sample: async () => ({ url: '/v1/plans', body: { slug: `p${uniq()}`, name: `Plan ${uniq()}` }, status: 201 }) },
  'GET /v1/plans': { auth: 'any', scope: 'billing:read', sample: async () => ({ url: '/v1/plans', status: 200 }) },
  'GET /v1/credit-classes': { auth: 'any', scope: 'billing:read', sample: async () => ({ url: '/v1/credit-classes', status: 200 }) },
  'GET /v1/plans/{id}': { auth: 'any', scope: 'billing:read', shared: true, sample: async () => (await catalog(), { url: '/v1/plans/secfree', status: 200 }) },
  'PATCH /v1/plans/{id}': { auth: 'service', sample: async () => (await catalog(), { url: '/v1/plans/secfree', body: { description: 'x' }, status: 200 }) },
  'POST /v1/cost-models': { auth: 'service', sample: async () => ({ url: '/v1/cost-models', body: { metric: `m${uniq()}` }, status: 201 }) },
  'GET /v1/cost-models': { auth: 'any', scope: 'billing:read', sample: async () => ({ url: '/v1/cost-models', status: 200 }) },
  'GET /v1/cost-models/{metric}': {
    auth: 'any', scope: 'billing:read', shared: true, sample: async () => (await catalog(), { url: '/v1/cost-models/sec_tokens', status: 200 }),
  },
  'PATCH /v1/cost-models/{metric}': {
    auth: 'service', sample: async () => (await catalog(), { url: '/v1/cost-models/sec_tokens', body: { unit: 'token' }, status: 200 }),
  },
  'POST /v1/subscriptions': {
    auth: 'any', scope: 'billing:write',
    sample: async (o) => (await catalog(), await endSubs(o.user.id), { url: '/v1/subscriptions', body: { user_id: o.user.id, plan_id: 'secfree' }, status: 201 }),
  },
  'GET /v1/subscriptions/{id}': { auth: 'any', scope: 'billing:read', sample: async (o) => ({ url: `/v1/subscriptions/${await freshSub(o.user.id)}`, status: 200 }) },
  'GET /v1/users/{id}/subscriptions': { auth: 'any', scope: 'billing:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/subscriptions`, status: 200 }) },
  'PATCH /v1/subscriptions/{id}': {
    auth: 'service', sample: async (o) => ({ url: `/v1/subscriptions/${await freshSub(o.user.id)}`, body: { metadata: { a: 1 } }, status: 200 }),
  },
  'POST /v1/subscriptions/{id}/cancel': {
    auth: 'any', scope: 'billing:write', sample: async (o) => ({ url: `/v1/subscriptions/${await freshSub(o.user.id)}/cancel`, body: {}, status: 200 }),
  },
  'POST /v1/subscriptions/{id}/change-plan': {
    auth: 'service',
    sample: async (o) => ({ url: `/v1/subscriptions/${await freshSub(o.user.id)}/change-plan`, body: { plan_id: 'secpayg' }, status: 200 }),
  },
  'POST /v1/subscriptions/{id}/activate': { auth: 'service', sample: async (o) => ({ url: `/v1/subscriptions/${await freshSub(o.user.id)}/activate`, status: 200 }) },
  'POST /v1/subscriptions/{id}/past-due': { auth: 'service', sample: async (o) => ({ url: `/v1/subscriptions/${await freshSub(o.user.id)}/past-due`, status: 200 }) },
  'POST /v1/events': {
    auth: 'service',
    sample: async (o) => (await catalog(), await grantTo({ user_id: o.user.id }), {
      url: '/v1/events', body: { user_id: o.user.id, metric: 'sec_tokens', quantity: 1, action_hash: uniq() }, headers: idem(), status: 201,
    }),
  },
  'POST /v1/events/batch': {
    auth: 'service',
    sample: async (o) => (await catalog(), await grantTo({ user_id: o.user.id }), {
      url: '/v1/events/batch', body: { events: [{ user_id: o.user.id, metric: 'sec_tokens', quantity: 1, action_hash: uniq() }] }, headers: idem(), status: 200,
    }),
  },
  'POST /v1/check': { auth: 'service', sample: async (o) => (await catalog(), { url: '/v1/check', body: { user_id: o.user.id, metric: 'sec_tokens' }, status: 200 }) },
  'GET /v1/users/{id}/usage': { auth: 'any', scope: 'billing:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/usage`, status: 200 }) },
  'GET /v1/users/{id}/events': { auth: 'any', scope: 'billing:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/events`, status: 200 }) },
  'PUT /v1/users/{id}/low-balance-threshold': { auth: 'service', sample: async (o) => ({ url: `/v1/users/${o.user.id}/low-balance-threshold`, body: { threshold: 10 }, status: 200 }) },
  'PUT /v1/workspaces/{id}/low-balance-threshold': { auth: 'service', sample: async (o) => ({ url: `/v1/workspaces/${o.workspaceId}/low-balance-threshold`, body: { threshold: 10 }, status: 200 }) },
  'PUT /v1/users/{id}/budget-guard': { auth: 'service', sample: async (o) => ({ url: `/v1/users/${o.user.id}/budget-guard`, body: { monthly_cap: 100 }, status: 200 }) },
  'GET /v1/users/{id}/budget-guard': {
    auth: 'any', scope: 'billing:read',
    sample: async (o) => (await svc().put(`/v1/users/${o.user.id}/budget-guard`, { monthly_cap: 100 }), { url: `/v1/users/${o.user.id}/budget-guard`, status: 200 }),
  },
  'DELETE /v1/users/{id}/budget-guard': {
    auth: 'service',
    sample: async (o) => (await svc().put(`/v1/users/${o.user.id}/budget-guard`, { monthly_cap: 100 }), { url: `/v1/users/${o.user.id}/budget-guard`, status: 200 }),
  },
  'GET /v1/users/{id}/overage-charges': { auth: 'any', scope: 'billing:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/overage-charges`, status: 200 }) },
  'POST /v1/overage-charges/{id}/status': {
    auth: 'service', sample: async (o) => ({ url: `/v1/overage-charges/${await freshOverage(o.user.id)}/status`, body: { status: 'waived' }, status: 200 }),
  },
  // Jobs: the service creates and drives them; a provider calls back (signed, no bearer); the
  // user reads their own.
  'POST /v1/jobs': {
    auth: 'service',
    sample: async (o) => {
      await grantTo({ user_id: o.user.id }, 3);
      return { url: '/v1/jobs', body: { user_id: o.user.id, kind: 'sample', input: {}, cost: 3 }, headers: idem(), status: 201 };
    },
  },
  'POST /v1/jobs/{id}/start': { auth: 'service', sample: async (o) => ({ url: `/v1/jobs/${await freshJob(o.user.id)}/start`, body: {}, status: 200 }) },
  'POST /v1/jobs/{id}/complete': {
    auth: 'service',
    sample: async (o) => ({ url: `/v1/jobs/${await freshJob(o.user.id)}/complete`, body: { cost: 1 }, status: 200 }),
  },
  'POST /v1/jobs/{id}/fail': {
    auth: 'service',
    sample: async (o) => ({ url: `/v1/jobs/${await freshJob(o.user.id)}/fail`, body: { error: 'sample failure' }, status: 200 }),
  },
  'POST /v1/jobs/{id}/cancel': { auth: 'service', sample: async (o) => ({ url: `/v1/jobs/${await freshJob(o.user.id)}/cancel`, body: {}, status: 200 }) },
  'POST /v1/jobs/{id}/callback': { auth: 'public' },
  'GET /v1/jobs/{id}': { auth: 'any', scope: 'jobs:read', sample: async (o) => ({ url: `/v1/jobs/${await freshJob(o.user.id)}`, status: 200 }) },
  'GET /v1/jobs': { auth: 'service', sample: async () => ({ url: '/v1/jobs?status=pending', status: 200 }) },
  'GET /v1/admin/stats': { auth: 'service', sample: async () => ({ url: '/v1/admin/stats?bucket=hour', status: 200 }) },
  'POST /v1/analytics/events': {
    auth: 'any',
    scope: 'analytics:write',
    sample: async () => ({ url: '/v1/analytics/events', body: { events: [{ id: `e-${hex()}`, event: 'sample', anonymous_id: 'anon-sample' }] }, status: 200 }),
  },
  'GET /v1/analytics/events': { auth: 'service', sample: async () => ({ url: '/v1/analytics/events?limit=5', status: 200 }) },
  'GET /v1/analytics/events/counts': { auth: 'service', sample: async () => ({ url: '/v1/analytics/events/counts', status: 200 }) },
  'GET /v1/audit': { auth: 'service', sample: async () => ({ url: '/v1/audit?limit=5', status: 200 }) },
  'GET /v1/audit/verify': { auth: 'service', sample: async () => ({ url: '/v1/audit/verify', status: 200 }) },
  'POST /v1/admin/reconcile': { auth: 'service', sample: async () => ({ url: '/v1/admin/reconcile', status: 200 }) },
  // Observability (docs/observability.md): the operator's logs and latency.
  'GET /v1/logs/requests': { auth: 'service', sample: async () => ({ url: '/v1/logs/requests?status_class=2', status: 200 }) },
  'GET /v1/logs/errors': { auth: 'service', sample: async () => ({ url: '/v1/logs/errors', status: 200 }) },
  'GET /v1/metrics/latency': { auth: 'service', sample: async () => ({ url: '/v1/metrics/latency?minutes=5', status: 200 }) },
  'GET /v1/metrics/latency/minutes': { auth: 'service', sample: async () => ({ url: '/v1/metrics/latency/minutes', status: 200 }) },
  'GET /v1/users/{id}/jobs': { auth: 'any', scope: 'jobs:read', sample: async (o) => ({ url: `/v1/users/${o.user.id}/jobs`, status: 200 }) },

  // Projects and agent work: the owner (or workspace writers) write, members of every role read.
  'POST /v1/projects': { auth: 'any', scope: 'projects:write', sample: async () => ({ url: '/v1/projects', body: { name: 'Sample' }, status: 201 }) },
  'GET /v1/projects': { auth: 'any', scope: 'projects:read', sample: async () => ({ url: '/v1/projects', status: 200 }) },
  'GET /v1/projects/{id}': { auth: 'any', scope: 'projects:read', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}`, status: 200 }) },
  'PATCH /v1/projects/{id}': { auth: 'any', scope: 'projects:write', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}`, body: { description: `d ${hex()}` }, status: 200 }) },
  'DELETE /v1/projects/{id}': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o) => ({ url: `/v1/projects/${await asOwner(o, 'POST', '/v1/projects', { name: 'Doomed' })}`, status: 200 }),
  },
  'POST /v1/projects/{id}/conversations': { auth: 'any', scope: 'projects:write', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/conversations`, body: { title: 't' }, status: 201 }) },
  'GET /v1/projects/{id}/conversations': { auth: 'any', scope: 'projects:read', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/conversations`, status: 200 }) },
  'POST /v1/projects/{id}/sessions': { auth: 'any', scope: 'projects:write', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/sessions`, body: { cli_type: 'claude' }, status: 201 }) },
  'GET /v1/projects/{id}/sessions': { auth: 'any', scope: 'projects:read', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/sessions`, status: 200 }) },
  'PATCH /v1/projects/{id}/sessions/{session_id}': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o) => {
      const p = await projectOf(o);
      return { url: `/v1/projects/${p}/sessions/${await asOwner(o, 'POST', `/v1/projects/${p}/sessions`)}`, body: { summary: 's' }, status: 200 };
    },
  },
  'POST /v1/projects/{id}/messages': { auth: 'any', scope: 'projects:write', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/messages`, body: { role: 'user', content: 'hi' }, status: 201 }) },
  'GET /v1/projects/{id}/messages': { auth: 'any', scope: 'projects:read', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/messages`, status: 200 }) },
  'POST /v1/projects/{id}/tool-usage': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o) => {
      const p = await projectOf(o);
      return { url: `/v1/projects/${p}/tool-usage`, body: { session_id: await asOwner(o, 'POST', `/v1/projects/${p}/sessions`), tool_name: 'Edit' }, status: 201 };
    },
  },
  'GET /v1/projects/{id}/tool-usage': { auth: 'any', scope: 'projects:read', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/tool-usage`, status: 200 }) },
  'POST /v1/projects/{id}/requests': { auth: 'any', scope: 'projects:write', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/requests`, body: { instruction: 'do it' }, status: 201 }) },
  'GET /v1/projects/{id}/requests': { auth: 'any', scope: 'projects:read', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/requests`, status: 200 }) },
  'POST /v1/projects/{id}/requests/{request_id}/complete': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o) => {
      const p = await projectOf(o);
      const r = await asOwner(o, 'POST', `/v1/projects/${p}/requests`, { instruction: 'x' });
      return { url: `/v1/projects/${p}/requests/${r}/complete`, body: { is_successful: true }, status: 200 };
    },
  },
  'POST /v1/projects/{id}/commits': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/commits`, body: { commit_sha: `${hex()}0`, message: 'm' }, status: 201 }),
  },
  'GET /v1/projects/{id}/commits': { auth: 'any', scope: 'projects:read', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/commits`, status: 200 }) },
  'PUT /v1/projects/{id}/connections/{provider}': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/connections/vercel`, body: { service_data: { team: 't' } }, status: 200 }),
  },
  'GET /v1/projects/{id}/connections': { auth: 'any', scope: 'projects:read', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/connections`, status: 200 }) },
  'DELETE /v1/projects/{id}/connections/{provider}': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o) => {
      const p = await projectOf(o);
      const provider = `x${hex()}`;
      await asOwner(o, 'PUT', `/v1/projects/${p}/connections/${provider}`);
      return { url: `/v1/projects/${p}/connections/${provider}`, status: 200 };
    },
  },

  // Secrets: sealed, masked on every read, revealed (audited) to writers only.
  'POST /v1/projects/{id}/env-vars': { auth: 'any', scope: 'secrets:write', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/env-vars`, body: { key: `K_${hex()}`, value: 'v' }, status: 201 }) },
  'GET /v1/projects/{id}/env-vars': { auth: 'any', scope: 'secrets:read', sample: async (o) => ({ url: `/v1/projects/${await projectOf(o)}/env-vars`, status: 200 }) },
  'DELETE /v1/projects/{id}/env-vars/{env_id}': {
    auth: 'any',
    scope: 'secrets:write',
    sample: async (o) => {
      const p = await projectOf(o);
      return { url: `/v1/projects/${p}/env-vars/${await asOwner(o, 'POST', `/v1/projects/${p}/env-vars`, { key: `K_${hex()}`, value: 'v' })}`, status: 200 };
    },
  },
  'POST /v1/projects/{id}/env-vars/{env_id}/reveal': {
    auth: 'any',
    scope: 'secrets:write',
    sample: async (o) => {
      const p = await projectOf(o);
      return { url: `/v1/projects/${p}/env-vars/${await asOwner(o, 'POST', `/v1/projects/${p}/env-vars`, { key: `K_${hex()}`, value: 'v' })}/reveal`, status: 200 };
    },
  },
  'POST /v1/service-tokens': { auth: 'any', scope: 'secrets:write', sample: async () => ({ url: '/v1/service-tokens', body: { provider: 'github', name: `t-${hex()}`, token: 'tok' }, status: 201 }) },
  'GET /v1/service-tokens': { auth: 'any', scope: 'secrets:read', sample: async () => ({ url: '/v1/service-tokens', status: 200 }) },
  'DELETE /v1/service-tokens/{id}': {
    auth: 'any',
    scope: 'secrets:write',
    sample: async (o) => ({ url: `/v1/service-tokens/${await asOwner(o, 'POST', '/v1/service-tokens', { provider: 'github', name: `t-${hex()}`, token: 'tok' })}`, status: 200 }),
  },
  'POST /v1/service-tokens/{id}/reveal': {
    auth: 'any',
    scope: 'secrets:write',
    sample: async (o) => ({ url: `/v1/service-tokens/${await asOwner(o, 'POST', '/v1/service-tokens', { provider: 'github', name: `t-${hex()}`, token: 'tok' })}/reveal`, status: 200 }),
  },
};

// Payments: webhooks are public (the provider's signature is the credential); records are read by
// the service or the paying user; packages, aliases, the queue and the webhook log are the service's.
async function freshPayment(userId: string | null): Promise<string> {
  const id = `pay_sec${randomBytes(8).toString('hex')}`;
  await app.database.db
    .insertInto('payments')
    .values({ id, user_id: userId, provider: 'stripe', provider_payment_id: `pi_${randomBytes(8).toString('hex')}`, status: 'succeeded', amount: 100, currency: 'usd', match_status: userId ? 'matched' : 'unmatched' })
    .execute();
  return id;
}
/** A priced Stripe package the fake Stripe sells. */
async function freshCheckoutPackage(): Promise<string> {
  const price = `price_${randomBytes(8).toString('hex')}`;
  checkoutFake.stripePrices.set(price, { amount: 500, currency: 'usd' });
  const res = await svc().post('/v1/credit-packages', { name: 'Sample', provider: 'stripe', provider_price_id: price, credits: 10, price_amount: 500, currency: 'usd' });
  if (res.status !== 201) throw new Error(`freshCheckoutPackage: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}
/** A priced PayPal package (PayPal orders take any amount). */
async function freshPayPalPackage(): Promise<string> {
  const res = await svc().post('/v1/credit-packages', { name: 'Sample', provider: 'paypal', provider_price_id: `PP-${randomBytes(8).toString('hex')}`, credits: 10, price_amount: 500, currency: 'usd' });
  if (res.status !== 201) throw new Error(`freshPayPalPackage: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}
/** An open checkout of the user's (inserted as POST /v1/checkout records it). */
async function freshCheckout(userId: string): Promise<string> {
  const id = `chk_sec${randomBytes(8).toString('hex')}`;
  await app.database.db
    .insertInto('checkouts')
    .values({ id, user_id: userId, provider: 'stripe', package_id: 'pkg_x', amount: 500, currency: 'usd', credits: 10, status: 'open', expires_at: new Date(Date.now() + 86_400_000) })
    .execute();
  return id;
}
async function freshPackage(): Promise<string> {
  const res = await svc().post('/v1/credit-packages', { name: 'Sample', provider: 'stripe', provider_price_id: `price_${randomBytes(8).toString('hex')}`, credits: 10 });
  if (res.status !== 201) throw new Error(`freshPackage: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}
Object.assign(ROUTES, {
  'POST /v1/webhooks/{provider}': { auth: 'public' },
  'GET /v1/payments': { auth: 'service', sample: async () => ({ url: '/v1/payments', status: 200 }) },
  'GET /v1/payments/{id}': { auth: 'any', scope: 'credits:read', sample: async (o: Owner) => ({ url: `/v1/payments/${await freshPayment(o.user.id)}`, status: 200 }) },
  'POST /v1/payments/{id}/resolve': {
    auth: 'service',
    sample: async (o: Owner) => ({ url: `/v1/payments/${await freshPayment(null)}/resolve`, body: { user_id: o.user.id }, status: 200 }),
  },
  'GET /v1/users/{id}/payments': { auth: 'any', scope: 'credits:read', sample: async (o: Owner) => ({ url: `/v1/users/${o.user.id}/payments`, status: 200 }) },
  'GET /v1/users/{id}/invoices': { auth: 'any', scope: 'credits:read', sample: async (o: Owner) => ({ url: `/v1/users/${o.user.id}/invoices`, status: 200 }) },
  'GET /v1/users/{id}/customers': { auth: 'any', scope: 'credits:read', sample: async (o: Owner) => ({ url: `/v1/users/${o.user.id}/customers`, status: 200 }) },
  'GET /v1/webhook-events': { auth: 'service', sample: async () => ({ url: '/v1/webhook-events', status: 200 }) },
  // Outgoing webhooks: the operator's, and a workspace's owner/admin for its own (test/webhooks-out.test.ts, test/webhooks-workspace.test.ts).
  'POST /v1/webhook-endpoints': {
    auth: 'any',
    scope: 'workspaces:write',
    // In a fresh workspace of o's: its managers may create only a few endpoints per workspace.
    sample: async (o: Owner) => ({ url: '/v1/webhook-endpoints', body: { url: 'https://example.com/hooks', event_types: ['webhook.test'], workspace_id: await freshWorkspace(o) }, status: 201 }),
  },
  'GET /v1/webhook-endpoints': { auth: 'any', scope: 'workspaces:read', sample: async (o: Owner) => ({ url: `/v1/webhook-endpoints?workspace_id=${o.workspaceId}`, status: 200 }) },
  'GET /v1/webhook-endpoints/{id}': { auth: 'any', scope: 'workspaces:read', sample: async (o: Owner) => ({ url: `/v1/webhook-endpoints/${await hookEndpoint(o)}`, status: 200 }) },
  'PATCH /v1/webhook-endpoints/{id}': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o: Owner) => ({ url: `/v1/webhook-endpoints/${await hookEndpoint(o)}`, body: { description: 'patched' }, status: 200 }),
  },
  'DELETE /v1/webhook-endpoints/{id}': { auth: 'any', scope: 'workspaces:write', sample: async (o: Owner) => ({ url: `/v1/webhook-endpoints/${await hookEndpoint(o)}`, status: 200 }) },
  'POST /v1/webhook-endpoints/{id}/rotate-secret': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o: Owner) => ({ url: `/v1/webhook-endpoints/${await hookEndpoint(o)}/rotate-secret`, body: {}, status: 200 }),
  },
  'POST /v1/webhook-endpoints/{id}/test': { auth: 'any', scope: 'workspaces:write', sample: async (o: Owner) => ({ url: `/v1/webhook-endpoints/${await hookEndpoint(o)}/test`, status: 202 }) },
  'GET /v1/webhook-endpoints/{id}/deliveries': {
    auth: 'any',
    scope: 'workspaces:read',
    sample: async (o: Owner) => ({ url: `/v1/webhook-endpoints/${await hookEndpoint(o)}/deliveries`, status: 200 }),
  },
  'POST /v1/webhook-deliveries/{id}/retry': {
    auth: 'any',
    scope: 'workspaces:write',
    sample: async (o: Owner) => ({ url: `/v1/webhook-deliveries/${await settledDelivery(o)}/retry`, status: 202 }),
  },
  'POST /v1/checkout-references': { auth: 'service', sample: async (o: Owner) => ({ url: '/v1/checkout-references', body: { user_id: o.user.id }, status: 201 }) },
  // Checkouts Tally signs: the service, or a user for themself (the provider is a local fake).
  'POST /v1/checkout': {
    auth: 'any',
    scope: 'billing:write',
    sample: async (o: Owner) => ({ url: '/v1/checkout', body: { user_id: o.user.id, package_id: await freshCheckoutPackage(), success_url: 'https://app.example.com/ok' }, status: 201 }),
  },
  'POST /v1/checkouts/{id}/capture': {
    auth: 'any',
    scope: 'billing:write',
    sample: async (o: Owner) => {
      const made = await svc().post('/v1/checkout', { user_id: o.user.id, package_id: await freshPayPalPackage(), success_url: 'https://app.example.com/ok' });
      if (made.status !== 201) throw new Error(`paypal checkout: ${made.status} ${JSON.stringify(made.body)}`);
      checkoutFake.paypalApproved.add(String(made.body.provider_checkout_id));
      return { url: `/v1/checkouts/${made.body.id}/capture`, status: 200 };
    },
  },
  'GET /v1/checkouts/{id}': { auth: 'any', scope: 'billing:read', sample: async (o: Owner) => ({ url: `/v1/checkouts/${await freshCheckout(o.user.id)}`, status: 200 }) },
  'POST /v1/credit-packages': {
    auth: 'service',
    sample: async () => ({ url: '/v1/credit-packages', body: { name: 'P', provider: 'creem', provider_price_id: `prod_${randomBytes(8).toString('hex')}`, credits: 5 }, status: 201 }),
  },
  'GET /v1/credit-packages': { auth: 'service', sample: async () => ({ url: '/v1/credit-packages', status: 200 }) },
  'GET /v1/credit-packages/{id}': { auth: 'service', sample: async () => ({ url: `/v1/credit-packages/${await freshPackage()}`, status: 200 }) },
  'PATCH /v1/credit-packages/{id}': { auth: 'service', sample: async () => ({ url: `/v1/credit-packages/${await freshPackage()}`, body: { credits: 12 }, status: 200 }) },
  'DELETE /v1/credit-packages/{id}': { auth: 'service', sample: async () => ({ url: `/v1/credit-packages/${await freshPackage()}`, status: 200 }) },
  'POST /v1/users/{id}/email-aliases': {
    auth: 'service',
    sample: async (o: Owner) => ({ url: `/v1/users/${o.user.id}/email-aliases`, body: { email: email() }, status: 201 }),
  },
  'GET /v1/users/{id}/email-aliases': { auth: 'any', scope: 'users:read', sample: async (o: Owner) => ({ url: `/v1/users/${o.user.id}/email-aliases`, status: 200 }) },
  'DELETE /v1/email-aliases/{id}': {
    auth: 'service',
    sample: async (o: Owner) => {
      const res = await svc().post(`/v1/users/${o.user.id}/email-aliases`, { email: email() });
      return { url: `/v1/email-aliases/${res.body.id}`, status: 200 };
    },
  },
} satisfies Record<string, RouteSpec>);

// Storage: buckets are the service's; objects live under their owner's folder (user id first).
let storageReady: Promise<void> | null = null;
function storageBucket(): Promise<void> {
  storageReady ??= (async () => {
    const res = await svc().post('/v1/storage/buckets', { id: 'sec-files', allowed_mime_types: ['text/plain', 'application/json'], file_size_limit: 4096 });
    if (res.status !== 201) throw new Error(`storage bucket: ${res.status} ${JSON.stringify(res.body)}`);
  })();
  return storageReady;
}
/** A fresh object under `o`'s folder, uploaded with `o`'s JWT; returns its path. */
async function freshObject(o: Owner): Promise<string> {
  await storageBucket();
  const path = `${o.user.id}/sec/${uniq()}.txt`;
  const res = await app.server.inject({ method: 'PUT', url: `/v1/storage/objects/sec-files/${path}`, headers: { authorization: `Bearer ${o.token}`, 'content-type': 'text/plain' }, payload: 'sample' });
  if (res.statusCode !== 201) throw new Error(`freshObject: ${res.statusCode} ${res.body}`);
  return path;
}
async function freshBucket(): Promise<string> {
  const id = `sec-${uniq()}`;
  const res = await svc().post('/v1/storage/buckets', { id });
  if (res.status !== 201) throw new Error(`freshBucket: ${res.status} ${JSON.stringify(res.body)}`);
  return id;
}
Object.assign(ROUTES, {
  'POST /v1/storage/buckets': { auth: 'service', sample: async () => ({ url: '/v1/storage/buckets', body: { id: `sec-${uniq()}` }, status: 201 }) },
  'POST /v1/storage/check': { auth: 'service', sample: async () => ({ url: '/v1/storage/check', status: 200 }) },
  'GET /v1/storage/buckets': { auth: 'service', sample: async () => ({ url: '/v1/storage/buckets', status: 200 }) },
  'GET /v1/storage/buckets/{id}': { auth: 'service', sample: async () => ({ url: `/v1/storage/buckets/${await freshBucket()}`, status: 200 }) },
  'GET /v1/storage/buckets/{id}/usage': { auth: 'service', sample: async () => ({ url: `/v1/storage/buckets/${await freshBucket()}/usage`, status: 200 }) },
  'PATCH /v1/storage/buckets/{id}': { auth: 'service', sample: async () => ({ url: `/v1/storage/buckets/${await freshBucket()}`, body: { public: false }, status: 200 }) },
  'DELETE /v1/storage/buckets/{id}': { auth: 'service', sample: async () => ({ url: `/v1/storage/buckets/${await freshBucket()}`, status: 200 }) },
  'PUT /v1/storage/objects/{bucket}/{*}': {
    auth: 'any',
    scope: 'storage:write',
    sample: async (o: Owner) => {
      await storageBucket();
      return { url: `/v1/storage/objects/sec-files/${o.user.id}/sec/${uniq()}.txt`, body: 'sample text', headers: { 'content-type': 'text/plain' }, status: 201 };
    },
  },
  'GET /v1/storage/objects/{bucket}/{*}': { auth: 'any', scope: 'storage:read', sample: async (o: Owner) => ({ url: `/v1/storage/objects/sec-files/${await freshObject(o)}`, status: 200 }) },
  'DELETE /v1/storage/objects/{bucket}/{*}': { auth: 'any', scope: 'storage:write', sample: async (o: Owner) => ({ url: `/v1/storage/objects/sec-files/${await freshObject(o)}`, status: 200 }) },
  'GET /v1/storage/objects/{bucket}': {
    auth: 'any',
    scope: 'storage:read',
    sample: async (o: Owner) => {
      await storageBucket();
      return { url: `/v1/storage/objects/sec-files?prefix=${o.user.id}/`, status: 200 };
    },
  },
  'POST /v1/storage/objects/{bucket}/copy': {
    auth: 'any',
    scope: 'storage:write',
    sample: async (o: Owner) => ({ url: '/v1/storage/objects/sec-files/copy', body: { from: await freshObject(o), to: `${o.user.id}/sec/${uniq()}.txt` }, status: 201 }),
  },
  'POST /v1/storage/objects/{bucket}/move': {
    auth: 'any',
    scope: 'storage:write',
    sample: async (o: Owner) => ({ url: '/v1/storage/objects/sec-files/move', body: { from: await freshObject(o), to: `${o.user.id}/sec/${uniq()}.txt` }, status: 200 }),
  },
  'POST /v1/storage/sign/{bucket}/{*}': {
    auth: 'any',
    scope: 'storage:read',
    sample: async (o: Owner) => ({ url: `/v1/storage/sign/sec-files/${await freshObject(o)}`, body: { action: 'download', expires_in: 60 }, status: 200 }),
  },
  // Public bucket reads need no credential; a signed link's token is its own credential (test/storage-quota-links.test.ts).
  'GET /storage/public/{bucket}/{*}': { auth: 'public' },
  'GET /storage/signed/{bucket}/{*}': { auth: 'public' },
  'PUT /storage/signed/{bucket}/{*}': { auth: 'public' },
} satisfies Record<string, RouteSpec>);

// Project files (seed 002): follow the project's roles (projects:read / projects:write).
async function freshFile(o: Owner): Promise<{ project: string; file: string }> {
  const project = await projectOf(o);
  const res = await client(app.server, o.token).post(`/v1/projects/${project}/files`, { path: `src/${uniq()}.ts`, content: 'export {};' });
  if (res.status !== 201) throw new Error(`freshFile: ${res.status} ${JSON.stringify(res.body)}`);
  return { project, file: res.body.file.id as string };
}
Object.assign(ROUTES, {
  'POST /v1/projects/{id}/files': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o: Owner) => ({ url: `/v1/projects/${await projectOf(o)}/files`, body: { path: `src/${uniq()}.ts`, content: 'x' }, status: 201 }),
  },
  'GET /v1/projects/{id}/files': { auth: 'any', scope: 'projects:read', sample: async (o: Owner) => ({ url: `/v1/projects/${await projectOf(o)}/files`, status: 200 }) },
  'GET /v1/projects/{id}/files/{file_id}': {
    auth: 'any',
    scope: 'projects:read',
    sample: async (o: Owner) => {
      const f = await freshFile(o);
      return { url: `/v1/projects/${f.project}/files/${f.file}`, status: 200 };
    },
  },
  'GET /v1/projects/{id}/files/{file_id}/versions': {
    auth: 'any',
    scope: 'projects:read',
    sample: async (o: Owner) => {
      const f = await freshFile(o);
      return { url: `/v1/projects/${f.project}/files/${f.file}/versions`, status: 200 };
    },
  },
  'GET /v1/projects/{id}/files/{file_id}/diff': {
    auth: 'any',
    scope: 'projects:read',
    sample: async (o: Owner) => {
      const f = await freshFile(o);
      return { url: `/v1/projects/${f.project}/files/${f.file}/diff?from=1&to=1`, status: 200 };
    },
  },
  'POST /v1/projects/{id}/files/{file_id}/restore': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o: Owner) => {
      const f = await freshFile(o);
      return { url: `/v1/projects/${f.project}/files/${f.file}/restore`, body: { version: 1 }, status: 201 };
    },
  },
  'DELETE /v1/projects/{id}/files/{file_id}': {
    auth: 'any',
    scope: 'projects:write',
    sample: async (o: Owner) => {
      const f = await freshFile(o);
      return { url: `/v1/projects/${f.project}/files/${f.file}`, status: 200 };
    },
  },
} satisfies Record<string, RouteSpec>);

// IDE project resources (seed 002; docs/ide.md): follow the project's roles (projects:read / projects:write).
// Each sample uses a fresh project: repositories are one per project, deployments one in flight per
// environment, editor sessions one open per user.
const IDE_SAMPLES: Record<string, { body: Record<string, unknown>; patch?: Record<string, unknown> }> = {
  'editor-sessions': { body: { open_files: [] }, patch: { layout_state: { split: true } } },
  'terminal-sessions': { body: { command: 'ls' }, patch: { status: 'exited', exit_code: 0 } },
  'code-executions': { body: { language: 'python', source_code: 'print(1)' }, patch: { status: 'running' } },
  'code-analyses': { body: { file_path: 'a.ts', analysis_type: 'explain', result: {} } },
  'git-repositories': { body: { provider: 'github', repo_url: 'https://github.com/acme/app', credentials: 'ghp_sample-credential' }, patch: { sync_status: 'idle' } },
  deployments: { body: { environment: 'staging' }, patch: { status: 'canceled' } },
};
async function freshIde(o: Owner, kind: string): Promise<{ project: string; id: string }> {
  const project = await asOwner(o, 'POST', '/v1/projects', { name: `ide ${uniq()}` });
  return { project, id: await asOwner(o, 'POST', `/v1/projects/${project}/${kind}`, IDE_SAMPLES[kind]?.body) };
}
for (const [kind, sample] of Object.entries(IDE_SAMPLES)) {
  const read = { auth: 'any' as const, scope: 'projects:read' as const };
  const write = { auth: 'any' as const, scope: 'projects:write' as const };
  ROUTES[`POST /v1/projects/{id}/${kind}`] = {
    ...write,
    sample: async (o) => ({ url: `/v1/projects/${await asOwner(o, 'POST', '/v1/projects', { name: `ide ${uniq()}` })}/${kind}`, body: sample.body, status: 201 }),
  };
  ROUTES[`GET /v1/projects/{id}/${kind}`] = { ...read, sample: async (o) => ({ url: `/v1/projects/${(await freshIde(o, kind)).project}/${kind}`, status: 200 }) };
  ROUTES[`GET /v1/projects/{id}/${kind}/{rid}`] = { ...read, sample: async (o) => { const r = await freshIde(o, kind); return { url: `/v1/projects/${r.project}/${kind}/${r.id}`, status: 200 }; } };
  ROUTES[`DELETE /v1/projects/{id}/${kind}/{rid}`] = {
    ...write,
    sample: async (o) => { const r = await freshIde(o, kind); if (kind === 'deployments') await client(app.server, o.token).patch(`/v1/projects/${r.project}/${kind}/${r.id}`, { status: 'canceled' }); return { url: `/v1/projects/${r.project}/${kind}/${r.id}`, status: 200 }; },
  };
  if (sample.patch) {
    const patch = sample.patch;
    ROUTES[`PATCH /v1/projects/{id}/${kind}/{rid}`] = { ...write, sample: async (o) => { const r = await freshIde(o, kind); return { url: `/v1/projects/${r.project}/${kind}/${r.id}`, body: patch, status: 200 }; } };
  }
}

/** Public whatever the OpenAPI document says: a route missing from here must demand credentials. */
// The job callback carries no bearer token: its HMAC signature is its credential (test/jobs.test.ts).
// A verification token is its own credential too (test/email-verification.test.ts).
const PUBLIC = new Set(['GET /health', 'GET /ready', 'GET /openapi.json', 'POST /v1/auth/signup', 'POST /v1/auth/login', 'POST /v1/auth/refresh', 'POST /v1/auth/password-reset', 'POST /v1/auth/password-reset/confirm', 'POST /v1/auth/verify-email', 'POST /v1/webhooks/{provider}', 'POST /v1/jobs/{id}/callback', 'GET /storage/public/{bucket}/{*}', 'GET /storage/signed/{bucket}/{*}', 'PUT /storage/signed/{bucket}/{*}']);
export const isPublic = (op: string) => PUBLIC.has(op) || /^[A-Z]+ \/docs(\/|$)/.test(op);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

export interface Op {
  key: string;
  method: string;
  path: string;
  operation: { security?: unknown[]; responses?: Record<string, unknown> };
}

let openapi: { paths: Record<string, Record<string, Op['operation']>> };
export let ops: Op[];
/** The victim: user A, A's key, A's workspace with member C. */
export let A: Owner;
export let aKey: { id: string; key: string };
/** A's linked login. */
export let aIdentity: { provider: string; providerUserId: string };
/** Open holds on A's own account and on A's workspace pool. */
export let aHold: string;
/** A payment of A's (inserted as a webhook would record it). */
export let aPayment: string;
/** A checkout of A's. */
export let aCheckout: string;
/** The providers' checkout APIs, faked. */
let checkoutFake: FakeProviders;
export let aWsHold: string;
/** An outgoing-webhook endpoint of A's workspace, and a settled delivery of it. */
export let aHook: string;
export let aHookDelivery: string;
/** A's subscription (to the free plan). */
export let aSub: string;
/** A pending job of A's. */
export let aJob: string;
/** A's project with one of each kind of row, and A's service token. */
export let aProject: string;
export let aSession: string;
export let aRequest: string;
export let aEnvVar: string;
export let aToken: string;
/** A's object in the storage bucket `sec-files` (its path, under A's folder). */
export let aObject: string;
/** A file in A's project. */
export let aFile: string;
export let C: Awaited<ReturnType<typeof signUp>>;
/** The attacker: user B with a JWT and a full-scope key. */
export let B: Owner;
export let bKey: { id: string; key: string };
/** The owner the scope tests act as. */
export let S: Owner;
/** The names of the bad-credential cases (one test each); beforeAll builds their header values. */
export const CREDENTIAL_CASES = [
  'no Authorization header',
  'an empty Authorization header',
  'Bearer garbage',
  'Bearer without a token',
  'a Basic header ("Basic xxx")',
  'the service key sent as Basic',
  'the service key without a scheme',
  'the service key plus one character',
  'the service key minus one character',
  'two tokens in one header',
  'an unknown tly_ API key',
  'a revoked API key',
  'an expired API key',
  'a JWT signed with the wrong secret',
  'an expired JWT',
  'an unsigned JWT (alg: none)',
  'a JWT without exp',
  'a JWT with an unknown role',
  'an anon-role JWT (a Supabase anon key)',
  'a user JWT whose payload was edited (sub changed)',
  'a JWT whose session was logged out',
  "a disabled account's JWT",
  "a disabled account's API key",
] as const;
/** Authorization header values that must all be refused with 401 (undefined: no header). */
export let badCredentials: Array<[string, string | undefined]>;

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

export function fillPath(path: string): string {
  return path.replace(/\{(\w+)\}/g, (_m, param: string, offset: number) => {
    if (param === 'provider') return aIdentity.provider;
    if (param === 'provider_user_id') return aIdentity.providerUserId;
    const segment = path.slice(0, offset).split('/').filter(Boolean).pop();
    if (segment === 'users') return A.user.id;
    if (segment === 'api-keys') return aKey.id;
    if (segment === 'workspaces') return A.workspaceId;
    if (segment === 'members') return C.user.id;
    if (segment === 'holds') return aHold;
    if (segment === 'checkouts') return aCheckout;
    if (segment === 'subscriptions') return aSub;
    if (segment === 'plans') return 'secfree';
    if (segment === 'cost-models') return 'sec_tokens';
    if (segment === 'jobs') return aJob;
    if (segment === 'projects') return aProject;
    if (segment === 'sessions') return aSession;
    if (segment === 'requests') return aRequest;
    if (segment === 'env-vars') return aEnvVar;
    if (segment === 'service-tokens') return aToken;
    return `unknown_${param}`; // a route with a new kind of id is still checked (auth runs first)
  });
}

export interface Built {
  method: string;
  url: string;
  payload?: string;
  headers: Record<string, string>;
  /** The status the owner (or the service, on service routes) gets; null for unclassified routes. */
  status: number | null;
}

/** A fresh request for any documented operation, against `owner`'s resources (A by default). */
export async function requestFor(op: Op, owner: Owner = A): Promise<Built> {
  const spec = ROUTES[op.key];
  const sample: { url: string; body?: unknown; headers?: Record<string, string>; status: number | null } = spec?.sample
    ? await spec.sample(owner)
    : { url: fillPath(op.path), body: ['POST', 'PUT', 'PATCH'].includes(op.method) ? {} : undefined, status: null };
  return {
    method: op.method,
    url: sample.url,
    headers: { ...(sample.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(sample.headers ?? {}) },
    ...(sample.body !== undefined ? { payload: JSON.stringify(sample.body) } : {}),
    status: sample.status,
  };
}

const refusals = new Map<string, Promise<Built>>();

/**
 * One request per operation and owner, built once per file, for checks whose every credential must
 * be refused. A refused request changes nothing (each such check proves it with a fingerprint), so
 * it is still a valid request for the next credential; building a fresh one per credential (each
 * sample creates its own resources) was most of the security files' time. A credential that were
 * wrongly accepted still fails its own check, and any later one gets a status other than the refusal.
 */
export function refusedRequestFor(op: Op, owner: Owner = A): Promise<Built> {
  const key = `${owner.user.id} ${op.key}`;
  let req = refusals.get(key);
  if (!req) refusals.set(key, (req = requestFor(op, owner)));
  return req;
}

export async function send(req: Built, authorization: string | undefined): Promise<Res> {
  return rawRequest(app, {
    method: req.method,
    url: req.url,
    headers: { ...req.headers, ...(authorization !== undefined ? { authorization } : {}) },
    ...(req.payload !== undefined ? { payload: req.payload } : {}),
  });
}

export const bearer = (t: string) => `Bearer ${t}`;

async function signJwt(claims: Record<string, unknown>, secret: string, opts: { iat?: number; exp?: number | null } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt(opts.iat ?? now);
  if (opts.exp !== null) jwt = jwt.setExpirationTime(opts.exp ?? now + 3600);
  return jwt.sign(new TextEncoder().encode(secret));
}

async function owner(): Promise<Owner> {
  const s = await signUp(app);
  const ws = await s.api.post('/v1/workspaces', { name: 'Home' });
  if (ws.status !== 201) throw new Error(`workspace: ${ws.status} ${JSON.stringify(ws.body)}`);
  return { user: s.user, token: s.token, password: s.password, workspaceId: ws.body.id };
}

/** A new session JWT for `o` (so a test may log it out without ending o.token). */
export async function freshJwt(o: { user: { email: string }; password: string }): Promise<string> {
  const res = await client(app.server, null).post('/v1/auth/login', { email: o.user.email, password: o.password });
  if (res.status !== 200) throw new Error(`login: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.access_token as string;
}

/** What the service sees of A's things: compared before and after every attack. */
export async function victimView() {
  const s = svc();
  const keys = await s.get(`/v1/users/${A.user.id}/api-keys?limit=200`);
  return {
    user: (await s.get(`/v1/users/${A.user.id}`)).body,
    keys: (keys.body.data as Array<Record<string, unknown>>).map(({ last_used_at: _l, request_count: _r, ...k }) => k),
    workspace: (await s.get(`/v1/workspaces/${A.workspaceId}`)).body,
    members: (await s.get(`/v1/workspaces/${A.workspaceId}/members?limit=200`)).body,
    identities: (await s.get(`/v1/users/${A.user.id}/identities`)).body,
    balance: (await s.get(`/v1/users/${A.user.id}/balance`)).body,
    transactions: (await s.get(`/v1/users/${A.user.id}/transactions?limit=200`)).body,
    holds: (await s.get(`/v1/users/${A.user.id}/holds?limit=200`)).body,
    workspaceBalance: (await s.get(`/v1/workspaces/${A.workspaceId}/balance`)).body,
    workspaceTransactions: (await s.get(`/v1/workspaces/${A.workspaceId}/transactions?limit=200`)).body,
    workspaceHolds: (await s.get(`/v1/workspaces/${A.workspaceId}/holds?limit=200`)).body,
    jobs: (await s.get(`/v1/users/${A.user.id}/jobs?limit=200`)).body,
    hooks: (await s.get(`/v1/webhook-endpoints?workspace_id=${A.workspaceId}&limit=200`)).body,
    hookDeliveries: (await s.get(`/v1/webhook-endpoints/${aHook}/deliveries?limit=200`)).body,
  };
}

/** The app and its documented operations. */
async function buildApp(): Promise<void> {
  checkoutFake = await fakeCheckoutProviders();
  app = await createTestApp({ payments: { stripe: null, lemonsqueezy: null, creem: null, paypal: null, toleranceSeconds: 300, creditPrice: null, checkout: checkoutFake.config } });
  const doc = await app.server.inject({ method: 'GET', url: '/openapi.json' });
  if (doc.statusCode !== 200) throw new Error(`openapi.json: ${doc.statusCode}`);
  openapi = JSON.parse(doc.body);
  ops = Object.entries(openapi.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([m]) => METHODS.includes(m))
      .map(([m, operation]) => ({ key: `${m.toUpperCase()} ${path}`, method: m.toUpperCase(), path, operation })),
  );
}

/** The victim A (with one of every resource), member C, attacker B, scope owner S, and the bad credentials. */
async function buildFixtures(): Promise<void> {
  A = await owner();
  aKey = await makeApiKey(app, A.user.id, { name: 'a-full' });
  C = await signUp(app);
  const add = await client(app.server, A.token).post(`/v1/workspaces/${A.workspaceId}/members`, { user_id: C.user.id, role: 'member' });
  if (add.status !== 201) throw new Error(`add C: ${add.status} ${JSON.stringify(add.body)}`);
  aIdentity = await freshIdentity(A.user.id);
  aHold = await freshHold({ user_id: A.user.id });
  aPayment = await freshPayment(A.user.id);
  aCheckout = await freshCheckout(A.user.id);
  aWsHold = await freshHold({ workspace_id: A.workspaceId });
  aHook = await hookEndpoint(A);
  aHookDelivery = await settledDelivery(A);
  aSub = await freshSub(A.user.id);
  await svc().put(`/v1/users/${A.user.id}/budget-guard`, { monthly_cap: 500 });
  aJob = await freshJob(A.user.id);
  aProject = await projectOf(A);
  aSession = await asOwner(A, 'POST', `/v1/projects/${aProject}/sessions`);
  aRequest = await asOwner(A, 'POST', `/v1/projects/${aProject}/requests`, { instruction: 'x' });
  aEnvVar = await asOwner(A, 'POST', `/v1/projects/${aProject}/env-vars`, { key: 'A_SECRET', value: 'a-secret-value' });
  aToken = await asOwner(A, 'POST', '/v1/service-tokens', { provider: 'github', name: 'a', token: 'a-token' });
  aObject = await freshObject(A);
  aFile = (await freshFile(A)).file;
  await asOwner(A, 'PUT', `/v1/projects/${aProject}/connections/github`);
  B = await owner();
  bKey = await makeApiKey(app, B.user.id, { name: 'b-full' });
  S = await owner();

  const revoked = await makeApiKey(app, A.user.id, { name: 'revoked' });
  const del = await svc().del(`/v1/api-keys/${revoked.id}`);
  if (del.status !== 200) throw new Error(`revoke: ${del.status}`);
  const expired = await makeApiKey(app, A.user.id, { name: 'expired' });
  await app.database.db
    .updateTable('api_keys')
    .set({ expires_at: sql`now() - interval '1 hour'` })
    .where('id', '=', expired.id)
    .execute();

  // A session that was logged out, and an account that was disabled: both stop working at once.
  const loggedOut = await freshJwt(A);
  await client(app.server, loggedOut).post('/v1/auth/logout'); // if this fails, the 401 test for it says so
  const D = await signUp(app);
  const dKey = await makeApiKey(app, D.user.id, { name: 'd-full' });
  const disable = await svc().patch(`/v1/users/${D.user.id}`, { is_active: false });
  if (disable.status !== 200) throw new Error(`disable: ${disable.status} ${JSON.stringify(disable.body)}`);

  const secret = app.config.auth.jwtSecret;
  const now = Math.floor(Date.now() / 1000);
  const claimsA = { sub: A.user.id, role: 'authenticated', email: A.user.email, aud: 'authenticated' };
  const [head, , sig] = A.token.split('.');
  const tamperedPayload = Buffer.from(JSON.stringify({ ...claimsA, sub: B.user.id, exp: now + 3600 })).toString('base64url');

  badCredentials = [
    ['no Authorization header', undefined],
    ['an empty Authorization header', ''],
    ['Bearer garbage', 'Bearer garbage'],
    ['Bearer without a token', 'Bearer '],
    ['a Basic header ("Basic xxx")', 'Basic eHh4Onl5eQ=='],
    ['the service key sent as Basic', `Basic ${app.serviceKey}`],
    ['the service key without a scheme', app.serviceKey],
    ['the service key plus one character', bearer(`${app.serviceKey}x`)],
    ['the service key minus one character', bearer(app.serviceKey.slice(0, -1))],
    ['two tokens in one header', `Bearer ${A.token} ${B.token}`],
    ['an unknown tly_ API key', bearer(`tly_${randomBytes(36).toString('base64url')}`)],
    ['a revoked API key', bearer(revoked.key)],
    ['an expired API key', bearer(expired.key)],
    ['a JWT signed with the wrong secret', bearer(await signJwt(claimsA, randomBytes(32).toString('hex')))],
    ['an expired JWT', bearer(await signJwt(claimsA, secret, { iat: now - 7200, exp: now - 3600 }))],
    ['an unsigned JWT (alg: none)', bearer(new UnsecuredJWT(claimsA).setIssuedAt().setExpirationTime('1h').encode())],
    ['a JWT without exp', bearer(await signJwt(claimsA, secret, { exp: null }))],
    ['a JWT with an unknown role', bearer(await signJwt({ ...claimsA, role: 'superuser' }, secret))],
    ['an anon-role JWT (a Supabase anon key)', bearer(await signJwt({ role: 'anon', sub: 'anon', iss: 'supabase' }, secret))],
    ['a user JWT whose payload was edited (sub changed)', bearer(`${head}.${tamperedPayload}.${sig}`)],
    ['a JWT whose session was logged out', bearer(loggedOut)],
    ["a disabled account's JWT", bearer(D.token)],
    ["a disabled account's API key", bearer(dKey.key)],
  ];
}

export const protectedOps = () => ops.filter((op) => !isPublic(op.key));

/** Every scope but `*`. */
export const NARROW_SCOPES = SCOPES.filter((s): s is Exclude<Scope, '*'> => s !== '*');

/**
 * The LLM gateway's wire-format paths (docs/gateway.md): hidden from /openapi.json (their contract is
 * the providers' own), so classified here. A `tly_` key needs the `gateway` scope (or `*`); a refusal
 * comes in the client's own error shape. The model is priced by no one here: a key the scope admits
 * gets 400 (unpriced model) before any hold, so these requests never spend.
 */
export const RELAY_ROUTES: ReadonlyArray<{ key: string; scope: Scope; wire: 'openai' | 'anthropic'; req: Built; admitted: number }> = [
  { key: 'POST /gateway/v1/chat/completions', scope: 'gateway', wire: 'openai', admitted: 400, req: relayPost('/gateway/v1/chat/completions', { model: 'sec-unpriced', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }) },
  { key: 'POST /gateway/v1/embeddings', scope: 'gateway', wire: 'openai', admitted: 400, req: relayPost('/gateway/v1/embeddings', { model: 'sec-unpriced', input: 'hi' }) },
  { key: 'POST /gateway/anthropic/v1/messages', scope: 'gateway', wire: 'anthropic', admitted: 400, req: relayPost('/gateway/anthropic/v1/messages', { model: 'sec-unpriced', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] }) },
  { key: 'GET /gateway/v1/models', scope: 'gateway', wire: 'openai', admitted: 200, req: { method: 'GET', url: '/gateway/v1/models', headers: {}, status: 200 } },
];
function relayPost(url: string, body: unknown): Built {
  return { method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body), status: 400 };
}

/** Problems with a relay refusal: the status, and the wire's own error shape naming the missing scope. */
export function relayRefusalProblems(res: Res, wire: 'openai' | 'anthropic', needed: string, label: string): string[] {
  const p: string[] = [];
  if (res.status !== 403) p.push(`${label}: expected 403, got ${res.status} ${JSON.stringify(res.body)?.slice(0, 300)}`);
  const b = res.body as { type?: unknown; error?: { type?: unknown; code?: unknown; message?: unknown } } | null;
  const ok = wire === 'openai'
    ? b?.error?.type === 'permission_error' && b.error.code === 'forbidden'
    : b?.type === 'error' && b.error?.type === 'permission_error';
  if (!ok) p.push(`${label}: not a ${wire} permission error: ${JSON.stringify(b)?.slice(0, 300)}`);
  if (typeof b?.error?.message !== 'string' || !b.error.message.includes(needed)) p.push(`${label}: message does not name the missing scope ${needed}`);
  return p;
}

/**
 * The scope tests are the slowest (each scope sends every user route), so three files share them by
 * the scope's resource; the last also takes any scope no file names, so a new scope is never skipped.
 */
const SCOPE_FILES = {
  'users-keys': ['users', 'keys'],
  'workspaces-credits-billing': ['workspaces', 'credits', 'billing'],
  'jobs-projects-secrets': ['jobs', 'projects', 'secrets'],
} as const;
export function scopesOf(file: keyof typeof SCOPE_FILES): Array<Exclude<Scope, '*'>> {
  const named: readonly string[] = Object.values(SCOPE_FILES).flat();
  const mine: readonly string[] = SCOPE_FILES[file];
  return NARROW_SCOPES.filter((s) => {
    const resource = s.split(':')[0] ?? s;
    return mine.includes(resource) || (file === 'jobs-projects-secrets' && !named.includes(resource));
  });
}

/**
 * The scope test each scope file runs for its group (scopesOf): a key with only that scope is
 * accepted where the scope (or none) is needed, and refused with 403 naming it — changing nothing — elsewhere.
 * Call inside the file's describe.
 */
export function keyReachesExactlyItsScopes(file: keyof typeof SCOPE_FILES): void {
  const narrowScopes = scopesOf(file);
  it.each(narrowScopes)('a key with only ["%s"] is accepted where that scope (or none) is needed and gets 403 forbidden elsewhere', async (scope) => {
    const key = await makeApiKey(app, S.user.id, { name: `only ${scope}`, scopes: [scope] });
    const targets = ops.filter((op) => ['user', 'any'].includes(ROUTES[op.key]?.auth ?? ''));
    expect(targets.length).toBeGreaterThan(5);
    const problems: string[] = [];
    const allowed = targets.filter((op) => !ROUTES[op.key]?.scope || ROUTES[op.key]?.scope === scope);
    const refused = targets.filter((op) => !allowed.includes(op));
    // The refusals first, all between two fingerprints (nothing else writes in between): one
    // pair per scope instead of one per route, which was two thirds of these tests' time.
    const requests = [];
    for (const op of refused) requests.push({ op, req: await refusedRequestFor(op, S) });
    const relayRefused = RELAY_ROUTES.filter((r) => r.scope !== scope);
    const before = await dbFingerprint(app);
    for (const { op, req } of requests) {
      const needed = must(ROUTES[op.key]?.scope, 'a refused route needs a scope');
      const res = await send(req, bearer(key.key));
      problems.push(...errorProblems(res, 403, 'forbidden', `${op.key} with [${scope}]`));
      const message = (res.body as { error?: { message?: string } } | null)?.error?.message ?? '';
      if (res.status === 403 && !message.includes(needed)) problems.push(`${op.key} with [${scope}]: 403 message does not name the missing scope ${needed}: ${message}`);
    }
    // The gateway's paths too, in their wire's own error shape: nothing held, recorded or counted.
    for (const r of relayRefused) problems.push(...relayRefusalProblems(await send(r.req, bearer(key.key)), r.wire, r.scope, `${r.key} with [${scope}]`));
    const written = fingerprintDiff(before, await dbFingerprint(app), `a request refused to [${scope}]`);
    problems.push(...written);
    if (written.length > 0) {
      // Name the culprit: the refusals again, one fingerprint pair each, with fresh requests.
      for (const op of refused) {
        const req = await requestFor(op, S);
        const one = await dbFingerprint(app);
        await send(req, bearer(key.key));
        problems.push(...fingerprintDiff(one, await dbFingerprint(app), `${op.key} with [${scope}]`));
      }
    }
    // Then every route the scope (or none) allows, each with a fresh request (they consume).
    for (const op of allowed) {
      const req = await requestFor(op, S);
      const expected = must(ROUTES[op.key], 'ROUTES[op.key]').keyStatus ?? req.status;
      const res = await send(req, bearer(key.key));
      if (res.status !== expected) problems.push(`${op.key} with [${scope}]: expected ${expected}, got ${res.status} ${JSON.stringify(res.body)}`);
    }
    // The gateway scope's own paths: past the scope check (an unpriced model → 400, a model list → 200).
    for (const r of RELAY_ROUTES.filter((x) => x.scope === scope)) {
      const res = await send(r.req, bearer(key.key));
      if (res.status !== r.admitted) problems.push(`${r.key} with [${scope}]: expected ${r.admitted}, got ${res.status} ${JSON.stringify(res.body)}`);
    }
    expect(allowed.length).toBeGreaterThan(0); // GET /v1/me needs no scope
    expect(problems).toEqual([]);
  });
}

/**
 * Registers the file's set-up: a fresh app on a fresh database, its OpenAPI operations and (unless
 * `documentOnly`) every fixture above, built once per file in beforeAll and dropped in afterAll.
 * Files of one worker share this module (isolate: false), so beforeAll first forgets what the
 * previous file made (read the fixtures through the live `export let` bindings above, after beforeAll).
 */
export function useSecuritySuite(options: { documentOnly?: boolean } = {}): void {
  // Every route, every credential, every scope: on two shared cores these tests need more than the
  // default 30 s per test (they grow with each route added).
  vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });
  beforeAll(async () => {
    // A worker runs several files in one module instance (isolate: false, vitest.config.ts):
    // nothing made for the previous file's app may be taken as made for this one.
    projects.clear();
    refusals.clear();
    catalogReady = null;
    storageReady = null;
    await buildApp();
    if (!options.documentOnly) await buildFixtures();
  });
  afterAll(async () => {
    await app?.close();
    await checkoutFake?.close();
  });
}
