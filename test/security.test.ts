/**
 * The shared security suite: the same authentication, authorization, tenancy and scope checks,
 * run over EVERY route the app documents in its own OpenAPI document, so a new route is covered
 * the moment it exists. Each route must also be classified below (who may call it, which API-key
 * scope it needs, and a request that succeeds for its owner); a test fails until it is.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SignJWT, UnsecuredJWT } from 'jose';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ERROR_CODES } from '../src/core/errors.js';
import { ERROR_STATUS } from '../src/http/errors.js';
import { SCOPES, type Scope } from '../src/modules/api-keys/api-keys.scopes.js';
import { client, type Res } from './support/client.js';
import { dbFingerprint, errorProblems, fingerprintDiff, rawRequest } from './support/db-fingerprint.js';
import { makeApiKey, makeUser, signUp } from './support/fixtures.js';
import { createTestApp, type TestApp } from './support/harness.js';

// Every route, every credential, every scope: on two shared cores this suite needs more than the
// default 30 s per test (it grows with each route added).
vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

// ---------------------------------------------------------------------------------------------
// The classification of every route. Keys are "METHOD /openapi/path".
// ---------------------------------------------------------------------------------------------

type Auth = 'public' | 'service' | 'user' | 'any';

interface Owner {
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

interface RouteSpec {
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

let app: TestApp;
const email = () => `sec_${randomBytes(6).toString('hex')}@example.com`;
const svc = () => client(app.server, app.serviceKey);

/** A fresh Idempotency-Key: every sample is a new request, never a replay. */
const idemKey = () => `sec-${randomBytes(12).toString('hex')}`;
const idem = () => ({ 'idempotency-key': idemKey() });

type MoneyOwner = { user_id: string } | { workspace_id: string };

/** A money movement as the service (fresh Idempotency-Key); throws unless it answers `status`. */
async function money(url: string, body: Record<string, unknown>, status = 201): Promise<any> {
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
  return (list.body.data as { id: string; status: string }[]).find((c) => c.status === 'pending')!.id;
}
const uniq = () => randomBytes(5).toString('hex');

const ROUTES: Record<string, RouteSpec> = {
  'GET /health': { auth: 'public' },
  'GET /ready': { auth: 'public' },
  'POST /v1/auth/signup': { auth: 'public' },
  'POST /v1/auth/login': { auth: 'public' },
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
  'POST /v1/admin/reconcile': { auth: 'service', sample: async () => ({ url: '/v1/admin/reconcile', status: 200 }) },
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
  'POST /v1/checkout-references': { auth: 'service', sample: async (o: Owner) => ({ url: '/v1/checkout-references', body: { user_id: o.user.id }, status: 201 }) },
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

/** Public whatever the OpenAPI document says: a route missing from here must demand credentials. */
// The job callback carries no bearer token: its HMAC signature is its credential (test/jobs.test.ts).
// A verification token is its own credential too (test/email-verification.test.ts).
const PUBLIC = new Set(['GET /health', 'GET /ready', 'GET /openapi.json', 'POST /v1/auth/signup', 'POST /v1/auth/login', 'POST /v1/auth/verify-email', 'POST /v1/webhooks/{provider}', 'POST /v1/jobs/{id}/callback']);
const isPublic = (op: string) => PUBLIC.has(op) || /^[A-Z]+ \/docs(\/|$)/.test(op);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

interface Op {
  key: string;
  method: string;
  path: string;
  operation: { security?: unknown[]; responses?: Record<string, unknown> };
}

let openapi: { paths: Record<string, Record<string, Op['operation']>> };
let ops: Op[];
/** The victim: user A, A's key, A's workspace with member C. */
let A: Owner;
let aKey: { id: string; key: string };
/** A's linked login. */
let aIdentity: { provider: string; providerUserId: string };
/** Open holds on A's own account and on A's workspace pool. */
let aHold: string;
/** A payment of A's (inserted as a webhook would record it). */
let aPayment: string;
let aWsHold: string;
/** A's subscription (to the free plan). */
let aSub: string;
/** A pending job of A's. */
let aJob: string;
/** A's project with one of each kind of row, and A's service token. */
let aProject: string;
let aSession: string;
let aRequest: string;
let aEnvVar: string;
let aToken: string;
let C: Awaited<ReturnType<typeof signUp>>;
/** The attacker: user B with a JWT and a full-scope key. */
let B: Owner;
let bKey: { id: string; key: string };
/** The owner the scope tests act as. */
let S: Owner;
/** The names of the bad-credential cases (one test each); beforeAll builds their header values. */
const CREDENTIAL_CASES = [
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
let badCredentials: Array<[string, string | undefined]>;

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function fillPath(path: string): string {
  return path.replace(/\{(\w+)\}/g, (_m, param: string, offset: number) => {
    if (param === 'provider') return aIdentity.provider;
    if (param === 'provider_user_id') return aIdentity.providerUserId;
    const segment = path.slice(0, offset).split('/').filter(Boolean).pop();
    if (segment === 'users') return A.user.id;
    if (segment === 'api-keys') return aKey.id;
    if (segment === 'workspaces') return A.workspaceId;
    if (segment === 'members') return C.user.id;
    if (segment === 'holds') return aHold;
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

interface Built {
  method: string;
  url: string;
  payload?: string;
  headers: Record<string, string>;
  /** The status the owner (or the service, on service routes) gets; null for unclassified routes. */
  status: number | null;
}

/** A fresh request for any documented operation, against `owner`'s resources (A by default). */
async function requestFor(op: Op, owner: Owner = A): Promise<Built> {
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

async function send(req: Built, authorization: string | undefined): Promise<Res> {
  return rawRequest(app, {
    method: req.method,
    url: req.url,
    headers: { ...req.headers, ...(authorization !== undefined ? { authorization } : {}) },
    ...(req.payload !== undefined ? { payload: req.payload } : {}),
  });
}

const bearer = (t: string) => `Bearer ${t}`;

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
async function freshJwt(o: { user: { email: string }; password: string }): Promise<string> {
  const res = await client(app.server, null).post('/v1/auth/login', { email: o.user.email, password: o.password });
  if (res.status !== 200) throw new Error(`login: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.access_token as string;
}

/** What the service sees of A's things: compared before and after every attack. */
async function victimView() {
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
  };
}

beforeAll(async () => {
  app = await createTestApp();
  const doc = await app.server.inject({ method: 'GET', url: '/openapi.json' });
  if (doc.statusCode !== 200) throw new Error(`openapi.json: ${doc.statusCode}`);
  openapi = JSON.parse(doc.body);
  ops = Object.entries(openapi.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([m]) => METHODS.includes(m))
      .map(([m, operation]) => ({ key: `${m.toUpperCase()} ${path}`, method: m.toUpperCase(), path, operation })),
  );

  A = await owner();
  aKey = await makeApiKey(app, A.user.id, { name: 'a-full' });
  C = await signUp(app);
  const add = await client(app.server, A.token).post(`/v1/workspaces/${A.workspaceId}/members`, { user_id: C.user.id, role: 'member' });
  if (add.status !== 201) throw new Error(`add C: ${add.status} ${JSON.stringify(add.body)}`);
  aIdentity = await freshIdentity(A.user.id);
  aHold = await freshHold({ user_id: A.user.id });
  aPayment = await freshPayment(A.user.id);
  aWsHold = await freshHold({ workspace_id: A.workspaceId });
  aSub = await freshSub(A.user.id);
  await svc().put(`/v1/users/${A.user.id}/budget-guard`, { monthly_cap: 500 });
  aJob = await freshJob(A.user.id);
  aProject = await projectOf(A);
  aSession = await asOwner(A, 'POST', `/v1/projects/${aProject}/sessions`);
  aRequest = await asOwner(A, 'POST', `/v1/projects/${aProject}/requests`, { instruction: 'x' });
  aEnvVar = await asOwner(A, 'POST', `/v1/projects/${aProject}/env-vars`, { key: 'A_SECRET', value: 'a-secret-value' });
  aToken = await asOwner(A, 'POST', '/v1/service-tokens', { provider: 'github', name: 'a', token: 'a-token' });
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
});

afterAll(async () => {
  await app?.close();
});

const protectedOps = () => ops.filter((op) => !isPublic(op.key));

// ---------------------------------------------------------------------------------------------

describe('every route is classified, and the classification matches the OpenAPI document', () => {
  it('the route table lists exactly the operations in /openapi.json (classify new routes here)', () => {
    expect(ops.length).toBeGreaterThan(10);
    const documented = ops.map((o) => o.key).sort();
    expect(documented).toEqual(Object.keys(ROUTES).sort());
  });

  it('the operations without a security requirement are exactly the public ones', () => {
    const unsecured = ops.filter((o) => !o.operation.security || o.operation.security.length === 0).map((o) => o.key).sort();
    expect(unsecured).toEqual(Object.entries(ROUTES).filter(([, r]) => r.auth === 'public').map(([k]) => k).sort());
    expect(unsecured.every(isPublic)).toBe(true);
  });

  it('every protected operation documents 401 and 403 with the Error schema', () => {
    const missing = protectedOps().flatMap((op) =>
      ['401', '403'].filter((s) => !(op.operation.responses && s in op.operation.responses)).map((s) => `${op.key} lacks ${s}`),
    );
    expect(protectedOps().length).toBeGreaterThan(0);
    expect(missing).toEqual([]);
  });

  it('public endpoints answer without credentials', async () => {
    for (const url of ['/health', '/openapi.json']) {
      expect((await app.server.inject({ method: 'GET', url })).statusCode, url).toBe(200);
    }
    expect((await app.server.inject({ method: 'GET', url: '/docs' })).statusCode).toBeLessThan(400);
  });
});

describe('authentication: every non-public route refuses missing or invalid credentials with 401', () => {
  it.each(CREDENTIAL_CASES)('every non-public route answers 401 unauthenticated to %s, and nothing changes', async (name) => {
    const entry = badCredentials.find(([n]) => n === name);
    expect(entry, `credential fixture "${name}"`).toBeDefined();
    const header = entry![1];
    const targets = protectedOps();
    expect(targets.length).toBeGreaterThan(0);
    const requests = [];
    for (const op of targets) requests.push({ op, req: await requestFor(op) });
    const before = await dbFingerprint(app);
    const problems: string[] = [];
    for (const { op, req } of requests) {
      problems.push(...errorProblems(await send(req, header), 401, 'unauthenticated', op.key));
    }
    problems.push(...fingerprintDiff(before, await dbFingerprint(app), name));
    expect(problems).toEqual([]);
  });

  it('the bad credentials the fixtures build are exactly the cases above (none silently skipped)', () => {
    expect(badCredentials.map(([n]) => n)).toEqual([...CREDENTIAL_CASES]);
  });

  it('a stranger gets 401 before the body is read: malformed, non-JSON and oversized bodies without credentials are 401', async () => {
    const withBody = protectedOps().filter((op) => ['POST', 'PUT', 'PATCH'].includes(op.method));
    expect(withBody.length).toBeGreaterThan(0);
    const bodies: Array<[string, string, string]> = [
      ['malformed JSON', '{"name": ', 'application/json'],
      ['text/plain', 'hello', 'text/plain'],
      ['oversized', JSON.stringify({ name: 'x'.repeat(70_000) }), 'application/json'],
    ];
    const problems: string[] = [];
    const before = await dbFingerprint(app);
    for (const op of withBody) {
      for (const [label, payload, type] of bodies) {
        const res = await rawRequest(app, { method: op.method, url: fillPath(op.path), payload, headers: { 'content-type': type } });
        problems.push(...errorProblems(res, 401, 'unauthenticated', `${op.key} ${label}`));
      }
    }
    problems.push(...fingerprintDiff(before, await dbFingerprint(app), 'stranger bodies'));
    expect(problems).toEqual([]);
  });
});

describe('authorization: who may call what', () => {
  const serviceOnly = () => ops.filter((op) => ROUTES[op.key]?.auth === 'service');
  const userOnly = () => ops.filter((op) => ROUTES[op.key]?.auth === 'user');
  const userRoutes = () => ops.filter((op) => ['user', 'any'].includes(ROUTES[op.key]?.auth ?? ''));

  it('service-only routes answer 403 forbidden to a user JWT and to a full-scope user API key, and accept the service key', async () => {
    const targets = serviceOnly();
    expect(targets.map((o) => o.key).sort()).toEqual([
      'DELETE /v1/credit-packages/{id}',
      'DELETE /v1/email-aliases/{id}',
      'DELETE /v1/users/{id}/budget-guard',
      'DELETE /v1/users/{id}/identities/{provider}',
      'GET /v1/admin/stats',
      'GET /v1/credit-packages',
      'GET /v1/credit-packages/{id}',
      'GET /v1/identities/{provider}/{provider_user_id}',
      'GET /v1/jobs',
      'GET /v1/payments',
      'GET /v1/users',
      'GET /v1/webhook-events',
      'PATCH /v1/cost-models/{metric}',
      'PATCH /v1/credit-packages/{id}',
      'PATCH /v1/plans/{id}',
      'PATCH /v1/subscriptions/{id}',
      'POST /v1/admin/reconcile',
      'POST /v1/check',
      'POST /v1/checkout-references',
      'POST /v1/cost-models',
      'POST /v1/credit-packages',
      'POST /v1/credits/adjust',
      'POST /v1/credits/debit',
      'POST /v1/credits/grant',
      'POST /v1/credits/refund',
      'POST /v1/events',
      'POST /v1/events/batch',
      'POST /v1/holds',
      'POST /v1/holds/{id}/capture',
      'POST /v1/holds/{id}/release',
      'POST /v1/jobs',
      'POST /v1/jobs/{id}/cancel',
      'POST /v1/jobs/{id}/complete',
      'POST /v1/jobs/{id}/fail',
      'POST /v1/jobs/{id}/start',
      'POST /v1/overage-charges/{id}/status',
      'POST /v1/payments/{id}/resolve',
      'POST /v1/plans',
      'POST /v1/subscriptions/{id}/activate',
      'POST /v1/subscriptions/{id}/change-plan',
      'POST /v1/subscriptions/{id}/past-due',
      'POST /v1/users',
      'POST /v1/users/{id}/email-aliases',
      'POST /v1/users/{id}/email-verification',
      'POST /v1/users/{id}/identities',
      'PUT /v1/users/{id}/budget-guard',
    ]);
    const problems: string[] = [];
    for (const op of targets) {
      for (const [who, header] of [['user JWT', bearer(A.token)], ['user API key', bearer(aKey.key)]] as const) {
        const req = await requestFor(op);
        const before = await dbFingerprint(app);
        problems.push(...errorProblems(await send(req, header), 403, 'forbidden', `${op.key} as ${who}`));
        problems.push(...fingerprintDiff(before, await dbFingerprint(app), `${op.key} as ${who}`));
      }
      const req = await requestFor(op);
      const ok = await send(req, bearer(app.serviceKey));
      if (ok.status !== req.status) problems.push(`${op.key} as service: expected ${req.status}, got ${ok.status} ${JSON.stringify(ok.body)}`);
    }
    expect(problems).toEqual([]);
  });

  it('a money route called by the service without an Idempotency-Key is 400 invalid_request and writes nothing', async () => {
    const targets = serviceOnly().filter((op) => /^POST \/v1\/(credits|holds|events)/.test(op.key) || op.key === 'POST /v1/jobs');
    expect(targets.length).toBe(10);
    const problems: string[] = [];
    for (const op of targets) {
      const req = await requestFor(op);
      expect(Object.keys(req.headers), op.key).toContain('idempotency-key');
      delete req.headers['idempotency-key'];
      const before = await dbFingerprint(app);
      const res = await send(req, bearer(app.serviceKey));
      problems.push(...errorProblems(res, 400, 'invalid_request', `${op.key} without Idempotency-Key`));
      const message = (res.body as { error?: { message?: string } } | null)?.error?.message ?? '';
      if (!/idempotency-key/i.test(message)) problems.push(`${op.key} without Idempotency-Key: message does not name the header: ${message}`);
      problems.push(...fingerprintDiff(before, await dbFingerprint(app), `${op.key} without Idempotency-Key`));
    }
    expect(problems).toEqual([]);
  });

  it('user-only routes answer 403 forbidden to the service key and serve the signed-in user', async () => {
    const targets = userOnly();
    expect(targets.length).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const op of targets) {
      const before = await dbFingerprint(app);
      problems.push(...errorProblems(await send(await requestFor(op), bearer(app.serviceKey)), 403, 'forbidden', `${op.key} as service`));
      problems.push(...fingerprintDiff(before, await dbFingerprint(app), `${op.key} as service`));
    }
    expect(problems).toEqual([]);
    const me = await client(app.server, A.token).get('/v1/me');
    expect(me.status).toBe(200);
    expect(me.body.id).toBe(A.user.id);
    // Logging out ends exactly the caller's session: another session of the same user still works.
    const one = await freshJwt(A);
    const two = await freshJwt(A);
    expect((await client(app.server, one).post('/v1/auth/logout')).status).toBe(200);
    expect(errorProblems(await client(app.server, one).get('/v1/me'), 401, 'unauthenticated', 'logged-out JWT')).toEqual([]);
    expect((await client(app.server, two).get('/v1/me')).status).toBe(200);
    expect((await client(app.server, A.token).get('/v1/me')).status).toBe(200);
    const meByKey = await client(app.server, bKey.key).get('/v1/me');
    expect(meByKey.status).toBe(200);
    expect(meByKey.body.id).toBe(B.user.id);
  });

  it("every user route accepts its owner's JWT and full-scope API key (the classification is not just 'deny all')", async () => {
    const targets = userRoutes();
    expect(targets.length).toBeGreaterThan(5);
    const full = await makeApiKey(app, S.user.id, { name: 's-full', scopes: ['*'] });
    const problems: string[] = [];
    for (const op of targets) {
      for (const who of ['JWT', 'API key *'] as const) {
        const header = bearer(who === 'JWT' ? await freshJwt(S) : full.key);
        const req = await requestFor(op, S);
        const expected = who === 'JWT' ? req.status : (ROUTES[op.key]!.keyStatus ?? req.status);
        const res = await send(req, header);
        if (res.status !== expected) problems.push(`${op.key} as ${who}: expected ${expected}, got ${res.status} ${JSON.stringify(res.body)}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('a user cannot raise their own privileges (service-only fields, stronger keys) and nothing changes', async () => {
    const a = client(app.server, A.token);
    const problems: string[] = [];
    const attempts: Array<[string, () => Promise<Res>]> = [
      ['role admin', () => a.patch(`/v1/users/${A.user.id}`, { role: 'admin' })],
      ['level', () => a.patch(`/v1/users/${A.user.id}`, { level: 1_000_000 })],
      ['is_active', () => a.patch(`/v1/users/${A.user.id}`, { is_active: false })],
      ['is_email_verified', () => a.patch(`/v1/users/${A.user.id}`, { is_email_verified: true })],
      ['email', () => a.patch(`/v1/users/${A.user.id}`, { email: email() })],
      ['metadata', () => a.patch(`/v1/users/${A.user.id}`, { metadata: { plan: 'enterprise' } })],
    ];
    const narrow = await makeApiKey(app, A.user.id, { name: 'narrow', scopes: ['keys:write'] });
    const k = client(app.server, narrow.key);
    attempts.push(
      ['key mints a * key', () => k.post(`/v1/users/${A.user.id}/api-keys`, { name: 'wider' })],
      ['key mints a users:write key', () => k.post(`/v1/users/${A.user.id}/api-keys`, { name: 'wider', scopes: ['keys:write', 'users:write'] })],
    );
    const before = await victimView();
    const fp = await dbFingerprint(app);
    for (const [label, run] of attempts) problems.push(...errorProblems(await run(), 403, 'forbidden', label));
    problems.push(...fingerprintDiff(fp, await dbFingerprint(app), 'privilege escalation'));
    expect(problems).toEqual([]);
    expect(await victimView()).toEqual(before);
  });
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
    { op: 'GET /v1/workspaces', method: 'GET', url: `/v1/workspaces?user_id=${A.user.id}` },
    { op: 'POST /v1/workspaces', method: 'POST', url: '/v1/workspaces', body: { name: 'squat', owner_id: A.user.id } },
    { op: 'GET /v1/users/{id}/identities', method: 'GET', url: `/v1/users/${A.user.id}/identities` },
    { op: 'POST /v1/users/{id}/identities', method: 'POST', url: `/v1/users/${A.user.id}/identities`, body: { provider: 'evil', provider_user_id: 'b' } },
    { op: 'DELETE /v1/users/{id}/identities/{provider}', method: 'DELETE', url: `/v1/users/${A.user.id}/identities/${aIdentity.provider}` },
    { op: 'GET /v1/identities/{provider}/{provider_user_id}', method: 'GET', url: `/v1/identities/${aIdentity.provider}/${aIdentity.providerUserId}` },
    { op: 'GET /v1/users/{id}/balance', method: 'GET', url: `/v1/users/${A.user.id}/balance` },
    { op: 'GET /v1/users/{id}/transactions', method: 'GET', url: `/v1/users/${A.user.id}/transactions` },
    { op: 'GET /v1/users/{id}/holds', method: 'GET', url: `/v1/users/${A.user.id}/holds` },
    { op: 'GET /v1/workspaces/{id}/balance', method: 'GET', url: `/v1/workspaces/${A.workspaceId}/balance` },
    { op: 'GET /v1/workspaces/{id}/transactions', method: 'GET', url: `/v1/workspaces/${A.workspaceId}/transactions` },
    { op: 'GET /v1/workspaces/{id}/holds', method: 'GET', url: `/v1/workspaces/${A.workspaceId}/holds` },
    { op: 'GET /v1/holds/{id}', method: 'GET', url: `/v1/holds/${aHold}` },
    { op: 'GET /v1/holds/{id}', method: 'GET', url: `/v1/holds/${aWsHold}` },
    { op: 'POST /v1/subscriptions', method: 'POST', url: '/v1/subscriptions', body: { user_id: A.user.id, plan_id: 'secfree' } },
    { op: 'GET /v1/subscriptions/{id}', method: 'GET', url: `/v1/subscriptions/${aSub}` },
    { op: 'POST /v1/subscriptions/{id}/cancel', method: 'POST', url: `/v1/subscriptions/${aSub}/cancel`, body: { at_period_end: false } },
    { op: 'GET /v1/users/{id}/subscriptions', method: 'GET', url: `/v1/users/${A.user.id}/subscriptions` },
    { op: 'GET /v1/users/{id}/usage', method: 'GET', url: `/v1/users/${A.user.id}/usage` },
    { op: 'GET /v1/users/{id}/events', method: 'GET', url: `/v1/users/${A.user.id}/events` },
    { op: 'GET /v1/users/{id}/budget-guard', method: 'GET', url: `/v1/users/${A.user.id}/budget-guard` },
    { op: 'GET /v1/users/{id}/overage-charges', method: 'GET', url: `/v1/users/${A.user.id}/overage-charges` },
    { op: 'GET /v1/payments/{id}', method: 'GET', url: `/v1/payments/${aPayment}` },
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

describe('API-key scopes: a key reaches exactly the routes its scopes allow', () => {
  const narrowScopes = SCOPES.filter((s): s is Exclude<Scope, '*'> => s !== '*');

  it('every scope a route requires is a known scope, and every narrow scope guards at least one route', () => {
    const used = new Set(Object.values(ROUTES).flatMap((r) => (r.scope ? [r.scope] : [])));
    for (const s of used) expect(SCOPES).toContain(s);
    expect(narrowScopes.filter((s) => !used.has(s))).toEqual([]);
  });

  it.each(narrowScopes)('a key with only ["%s"] is accepted where that scope (or none) is needed and gets 403 forbidden elsewhere', async (scope) => {
    const key = await makeApiKey(app, S.user.id, { name: `only ${scope}`, scopes: [scope] });
    const targets = ops.filter((op) => ['user', 'any'].includes(ROUTES[op.key]?.auth ?? ''));
    expect(targets.length).toBeGreaterThan(5);
    const problems: string[] = [];
    let allowed = 0;
    for (const op of targets) {
      const spec = ROUTES[op.key]!;
      const req = await requestFor(op, S);
      if (!spec.scope || spec.scope === scope) {
        allowed++;
        const expected = spec.keyStatus ?? req.status;
        const res = await send(req, bearer(key.key));
        if (res.status !== expected) problems.push(`${op.key} with [${scope}]: expected ${expected}, got ${res.status} ${JSON.stringify(res.body)}`);
      } else {
        const before = await dbFingerprint(app);
        const res = await send(req, bearer(key.key));
        problems.push(...errorProblems(res, 403, 'forbidden', `${op.key} with [${scope}]`));
        const message = (res.body as { error?: { message?: string } } | null)?.error?.message ?? '';
        if (res.status === 403 && !message.includes(spec.scope)) problems.push(`${op.key} with [${scope}]: 403 message does not name the missing scope ${spec.scope}: ${message}`);
        problems.push(...fingerprintDiff(before, await dbFingerprint(app), `${op.key} with [${scope}]`));
      }
    }
    expect(allowed).toBeGreaterThan(0); // GET /v1/me needs no scope
    expect(problems).toEqual([]);
  });

  it('a users:read key can read its user and /v1/me but not change the user', async () => {
    const key = await makeApiKey(app, S.user.id, { name: 'reader', scopes: ['users:read'] });
    const k = client(app.server, key.key);
    expect((await k.get('/v1/me')).body.id).toBe(S.user.id);
    expect((await k.get(`/v1/users/${S.user.id}`)).status).toBe(200);
    const res = await k.patch(`/v1/users/${S.user.id}`, { name: 'nope' });
    expect(errorProblems(res, 403, 'forbidden', 'users:read PATCH')).toEqual([]);
  });
});

describe('the error catalogue is one closed list, the same in code, spec and OpenAPI', () => {
  const specPath = fileURLToPath(new URL('../../shared/spec/API.md', import.meta.url));
  const specExists = existsSync(specPath);

  it.skipIf(!specExists)(
    specExists
      ? 'every code in ERROR_STATUS appears in ../shared/spec/API.md with the same status, and nothing else does'
      : `SKIPPED: ../shared/spec/API.md not found at ${specPath}; cannot compare the error catalogue with the spec`,
    () => {
      const text = readFileSync(specPath, 'utf8');
      const table: Record<string, number> = {};
      for (const m of text.matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|\s*$/gm)) table[m[1]!] = Number(m[2]);
      expect(Object.keys(table).length).toBeGreaterThan(5);
      expect(table).toEqual({ ...ERROR_STATUS });
    },
  );

  it("the OpenAPI Error schema's code enum equals the catalogue, on every documented error response", () => {
    const enumOf = (schema: unknown): string[] | null => {
      const s = schema as { enum?: unknown[]; const?: unknown; anyOf?: unknown[]; oneOf?: unknown[] } | undefined;
      if (!s) return null;
      if (Array.isArray(s.enum)) return s.enum.map(String);
      if (s.const !== undefined) return [String(s.const)];
      const parts = s.anyOf ?? s.oneOf;
      if (Array.isArray(parts)) return parts.flatMap((p) => enumOf(p) ?? ['<not an enum>']);
      return null;
    };
    const catalogue = [...ERROR_CODES].sort();
    const problems: string[] = [];
    let checked = 0;
    for (const op of ops) {
      for (const [status, response] of Object.entries(op.operation.responses ?? {})) {
        if (Number(status) < 400) continue;
        const schema = (response as { content?: Record<string, { schema?: Record<string, any> }> }).content?.['application/json']?.schema;
        if (!schema) {
          problems.push(`${op.key} ${status}: no application/json schema`);
          continue;
        }
        if (schema['title'] !== 'Error') problems.push(`${op.key} ${status}: schema is not the Error schema`);
        const codes = enumOf(schema['properties']?.error?.properties?.code);
        if (!codes) problems.push(`${op.key} ${status}: error.code has no enum`);
        else if (JSON.stringify([...codes].sort()) !== JSON.stringify(catalogue)) problems.push(`${op.key} ${status}: code enum ${codes.join(',')}`);
        // A documented error status must be the status of some code in the catalogue.
        if (!Object.values(ERROR_STATUS).includes(Number(status) as never)) problems.push(`${op.key}: documents ${status}, which no error code has`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(ops.length);
    expect(problems).toEqual([]);
  });
});
