/**
 * E-mail verification and what it protects: payments are matched to a user by e-mail only when
 * that user's address is verified (issue 13, item 7). A stranger who signs up with a payer's
 * address first must never receive that payer's payments; the verified owner of the address does.
 * Verification tokens are random, stored hashed, single use, expiring, and bound to the user and
 * the address they were issued for; only the service obtains one.
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.js';
import { inRequestTransaction } from '../src/db/request-role.js';
import { verificationLink } from '../src/modules/auth/auth.email-verification.js';
import type { Principal } from '../src/core/principal.js';
import { userUpdate } from '../src/modules/users/users.repository.js';
import { client, type Json } from './support/client.js';
import { stripeCheckout } from './support/payment-webhooks.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { must } from '../src/lib/must.js';

const STRIPE_SECRET = `whsec_${randomBytes(16).toString('hex')}`;
const stripe = new Stripe('sk_test_unused');
const VERIFY_URL = 'https://app.example.com/verify?token={token}&next=%2Fbilling';
const TTL_SECONDS = 3600;

let app: TestApp;
/** The clock every service reads: real time plus an offset the expiry test moves. */
let offsetMs = 0;
const svc = () => client(app.server, app.serviceKey);
const anon = () => client(app.server, null);
const hex = () => randomBytes(5).toString('hex');
const address = () => `payer_${hex()}@example.com`;
const id = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;

beforeAll(async () => {
  app = await createTestApp(
    {
      payments: {
        stripe: { webhookSecrets: [STRIPE_SECRET] },
        lemonsqueezy: null,
        creem: null,
        paypal: null,
        toleranceSeconds: 300,
        // What a payment buys comes from server-side configuration only (docs/payments.md): 10 cents a credit.
        creditPrice: { unitAmount: 10, currency: 'usd' },
      },
      credits: { balanceCap: null, signupBonus: 3 },
      emailVerification: { ttlSeconds: TTL_SECONDS, urlTemplate: VERIFY_URL },
    },
    { clock: () => new Date(Date.now() + offsetMs) },
  );
});
afterAll(async () => {
  await app?.close();
});

/** A Stripe Checkout that names no user: only the payer's e-mail (and a new customer) identify them. */
async function payByEmail(email: string, credits = 50, customer: string | null = id('cus')) {
  const pi = id('pi');
  const event = stripeCheckout({ amount: credits * 10, customer, email, pi });
  const raw = JSON.stringify(event);
  const res = await app.server.inject({
    method: 'POST',
    url: '/v1/webhooks/stripe',
    headers: { 'content-type': 'application/json', 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: raw, secret: STRIPE_SECRET }) },
    payload: raw,
  });
  expect(res.statusCode).toBe(200);
  const list = await svc().get('/v1/payments?provider=stripe&limit=200');
  const payment = must((list.body.data as Array<Record<string, Json>>).find((p) => p.provider_payment_id === pi), 'a matching item');
  return { outcome: JSON.parse(res.body).outcome as string, payment };
}

const balanceOf = async (userId: string) => ((await svc().get(`/v1/users/${userId}/balance`)).body as { balance: number }).balance;
const userOf = async (userId: string) => (await svc().get(`/v1/users/${userId}`)).body as { email: string; is_email_verified: boolean; email_verified_at: string | null };
const issue = (userId: string, body?: Record<string, unknown>) => svc().post(`/v1/users/${userId}/email-verification`, body);
const redeem = (token: unknown) => anon().post('/v1/auth/verify-email', { token });
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe(`payments match by e-mail only to a verified address (${TARGET})`, () => {
  it("a stranger who signs up with a payer's e-mail never receives that payer's payment", async () => {
    const payerEmail = address();
    // The stranger signs up first, with the payer's address (nobody checks they own it).
    const stranger = await signUp(app, payerEmail.toUpperCase());
    expect(stranger.user).toMatchObject({ is_email_verified: false, email_verified_at: null });
    // The payer pays with that address; nothing but the address identifies them.
    const customer = id('cus');
    const first = await payByEmail(payerEmail, 50, customer);
    expect(first.outcome).toContain('unmatched');
    expect(first.payment).toMatchObject({ match_status: 'unmatched', user_id: null, credits: 50, grant_transaction_id: null });
    // And the payment did not link the payer's customer to the stranger for later payments either.
    expect((await svc().get(`/v1/users/${stranger.user.id}/customers`)).body.data).toEqual([]);
    const second = await payByEmail(payerEmail, 20, customer);
    expect(second.payment).toMatchObject({ match_status: 'unmatched', user_id: null });
    expect(await balanceOf(stranger.user.id)).toBe(3); // the sign-up bonus only
    // The stranger cannot make the address look verified: not at sign-up, not by editing themselves.
    const selfVerify = await stranger.api.patch(`/v1/users/${stranger.user.id}`, { is_email_verified: true });
    expect(selfVerify.status).toBe(403);
    const signupVerified = await anon().post('/v1/auth/signup', { email: address(), password: 'long enough pw', is_email_verified: true });
    expect(signupVerified.status).toBe(400);
    expect(signupVerified.body.error.code).toBe('invalid_request');
    // Nor ask Tally for a verification token: that is the service's call, and the token goes to the address.
    const own = await stranger.api.post(`/v1/users/${stranger.user.id}/email-verification`);
    expect(own.status).toBe(403);
    expect(own.body.error.code).toBe('forbidden');
    expect(await userOf(stranger.user.id)).toMatchObject({ is_email_verified: false });
    // The queued payment still goes to whoever the operator decides.
    expect((await svc().get('/v1/payments?match_status=unmatched&limit=200')).body.data.map((p: { id: string }) => p.id)).toContain(first.payment.id);
  });

  it('a verified owner of the address does: created verified by the service, or verified with a token', async () => {
    const vouched = await makeUser(app, { email: address(), is_email_verified: true });
    const a = await payByEmail(vouched.email.toUpperCase(), 40);
    expect(a.payment).toMatchObject({ match_status: 'matched', user_id: vouched.id, credits: 40 });
    expect(await balanceOf(vouched.id)).toBe(43);

    const s = await signUp(app, address());
    const before = await payByEmail(s.user.email, 10, null);
    expect(before.payment).toMatchObject({ match_status: 'unmatched', user_id: null });
    const issued = await issue(s.user.id);
    expect(issued.status).toBe(201);
    expect((await redeem(issued.body.token)).status).toBe(200);
    const after = await payByEmail(s.user.email, 25, null);
    expect(after.outcome).toContain(`granted 25 credits to ${s.user.id}`);
    expect(after.payment).toMatchObject({ match_status: 'matched', user_id: s.user.id });
    expect(await balanceOf(s.user.id)).toBe(28);
  });

  it('service-added aliases are trusted: an alias wins over an unverified account holding that address', async () => {
    const payerEmail = address();
    const owner = await makeUser(app);
    expect((await svc().post(`/v1/users/${owner.id}/email-aliases`, { email: payerEmail })).status).toBe(201);
    const stranger = await signUp(app, payerEmail);
    const paid = await payByEmail(payerEmail, 30);
    expect(paid.payment).toMatchObject({ match_status: 'matched', user_id: owner.id });
    expect(await balanceOf(owner.id)).toBe(33);
    expect(await balanceOf(stranger.user.id)).toBe(3);
    // Aliases are the service's alone: the stranger cannot add one.
    const add = await stranger.api.post(`/v1/users/${stranger.user.id}/email-aliases`, { email: address() });
    expect(add.status).toBe(403);
  });

  it('changing an e-mail clears its verification (a case-only change does not); the service may vouch for the new one', async () => {
    const u = await makeUser(app, { email: address(), is_email_verified: true });
    const verifiedAt = (await userOf(u.id)).email_verified_at;
    expect(verifiedAt).not.toBeNull();
    const upper = await svc().patch(`/v1/users/${u.id}`, { email: u.email.toUpperCase() });
    expect(upper.body).toMatchObject({ is_email_verified: true, email_verified_at: verifiedAt });
    const moved = await svc().patch(`/v1/users/${u.id}`, { email: address() });
    expect(moved.body).toMatchObject({ is_email_verified: false, email_verified_at: null });
    // The old address no longer matches this user; the new one does not yet.
    expect((await payByEmail(u.email, 5)).payment.user_id).toBeNull();
    expect((await payByEmail(moved.body.email, 5)).payment.user_id).toBeNull();
    // Changed and vouched for in one request: verified, stamped now.
    const vouched = await svc().patch(`/v1/users/${u.id}`, { email: address(), is_email_verified: true });
    expect(vouched.body.is_email_verified).toBe(true);
    expect(vouched.body.email_verified_at).not.toBeNull();
    expect(new Date(vouched.body.email_verified_at).getTime()).toBeGreaterThan(new Date(must(verifiedAt, 'verifiedAt')).getTime());
    // The database holds the line whatever the caller: a raw address change unverifies too.
    const schema = app.database.schema;
    await sql`update ${sql.table(`${schema}.users`)} set email = ${address()} where id = ${u.id}`.execute(app.database.root);
    expect(await userOf(u.id)).toMatchObject({ is_email_verified: false, email_verified_at: null });
  });
});

describe(`verification tokens (${TARGET})`, () => {
  it('the service gets a token and a ready link; redeeming it verifies the address; the token is stored hashed', async () => {
    const s = await signUp(app, address());
    const res = await issue(s.user.id);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ user_id: s.user.id, email: s.user.email });
    expect(res.body.token).toMatch(/^tlyv_[A-Za-z0-9_-]{43}$/);
    const expiresIn = new Date(res.body.expires_at).getTime() - Date.now();
    expect(expiresIn).toBeGreaterThan((TTL_SECONDS - 60) * 1000);
    expect(expiresIn).toBeLessThanOrEqual(TTL_SECONDS * 1000);
    expect(res.body.verify_url).toBe(`https://app.example.com/verify?token=${encodeURIComponent(res.body.token)}&next=%2Fbilling`);
    const rows = await app.database.db.selectFrom('email_verification_tokens').selectAll().where('user_id', '=', s.user.id).execute();
    expect(rows).toHaveLength(1);
    expect(must(rows[0], 'rows[0]').token_hash).toBe(sha256(res.body.token));
    expect(JSON.stringify(rows)).not.toContain(res.body.token);

    const ok = await redeem(res.body.token);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ verified: true, email: s.user.email });
    expect(ok.body.email_verified_at).toEqual(expect.any(String));
    expect(await userOf(s.user.id)).toMatchObject({ is_email_verified: true });
    expect((await s.api.get('/v1/me')).body.is_email_verified).toBe(true);
    // Already verified: nothing to send.
    const again = await issue(s.user.id);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('invalid_state');
  });

  it('is never handed to the user who signed up: not by sign-up, login, /v1/me, nor the database', async () => {
    const password = 'correct horse battery';
    const signup = await anon().post('/v1/auth/signup', { email: address(), password });
    expect(signup.status).toBe(201);
    expect(Object.keys(signup.body).sort()).toEqual(['access_token', 'expires_in', 'refresh_token', 'token_type', 'user']);
    const me = client(app.server, signup.body.access_token);
    const issued = await issue(signup.body.user.id);
    const token = issued.body.token as string;
    const seen = [
      signup,
      await anon().post('/v1/auth/login', { email: signup.body.user.email, password }),
      await me.get('/v1/me'),
      await me.get(`/v1/users/${signup.body.user.id}`),
    ];
    for (const r of seen) expect(JSON.stringify(r.body)).not.toContain(token);
    // Asking for one as the user (JWT or a full-scope API key) is refused, and issues nothing.
    const key = await svc().post(`/v1/users/${signup.body.user.id}/api-keys`, { name: 'k' });
    for (const caller of [me, client(app.server, key.body.key)]) {
      const r = await caller.post(`/v1/users/${signup.body.user.id}/email-verification`);
      expect(r.status).toBe(403);
    }
    expect(await app.database.db.selectFrom('email_verification_tokens').select('id').where('user_id', '=', signup.body.user.id).execute()).toHaveLength(1);
    // Row-level security: the end user's role reads and writes no token, and never their own flag.
    const asUser: Principal = { kind: 'user', userId: signup.body.user.id, email: null, via: 'jwt', keyId: null, scopes: ['*'], sessionId: null };
    const failure = async (fn: () => Promise<unknown>) => {
      try {
        await fn();
        return 'ok';
      } catch (err) {
        return (err as { code?: string }).code ?? String(err);
      }
    };
    const t = sql.table(`${app.database.schema}.email_verification_tokens`);
    expect(await failure(() => inRequestTransaction(app.database.db, asUser, (trx) => sql`select token_hash from ${t}`.execute(trx)))).toBe('42501');
    expect(await failure(() => inRequestTransaction(app.database.db, asUser, (trx) => sql`update ${t} set used_at = now()`.execute(trx)))).toBe('42501');
    for (const patch of [{ is_email_verified: true }, { email: address() }]) {
      expect(await failure(() => inRequestTransaction(app.database.db, asUser, (trx) => userUpdate(trx, signup.body.user.id, patch)))).toBe('42501');
    }
    expect(await failure(() => inRequestTransaction(app.database.db, asUser, (trx) =>
      sql`update ${sql.table(`${app.database.schema}.users`)} set email_verified_at = now() where id = ${signup.body.user.id}`.execute(trx)))).toBe('42501');
    expect(await userOf(signup.body.user.id)).toMatchObject({ is_email_verified: false, email_verified_at: null });
    // A replayed issue (same Idempotency-Key) answers the same token; the stored answer is sealed.
    const idem = `ev-${hex()}`;
    const one = await svc().post(`/v1/users/${signup.body.user.id}/email-verification`, undefined, { idempotencyKey: idem });
    const two = await svc().post(`/v1/users/${signup.body.user.id}/email-verification`, undefined, { idempotencyKey: idem });
    expect(two.headers['idempotent-replayed']).toBe('true');
    expect(two.body.token).toBe(one.body.token);
    const stored = await app.database.db.selectFrom('idempotency_keys').select('response_body').where('key', '=', idem).executeTakeFirstOrThrow();
    expect(stored.response_body).not.toContain(one.body.token);
  });

  it('is single use, even under concurrent redemptions', async () => {
    const s = await signUp(app, address());
    const { token } = (await issue(s.user.id)).body;
    const all = await Promise.all([1, 2, 3].map(() => redeem(token)));
    expect(all.map((r) => r.status).sort()).toEqual([200, 400, 400]);
    const again = await redeem(token);
    expect(again.status).toBe(400);
    expect(again.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'token', reason: 'used' } });
  });

  it('a wrong, malformed or missing token is a clear 400 invalid_request, and verifies nobody', async () => {
    const s = await signUp(app, address());
    const { token } = (await issue(s.user.id)).body as { token: string };
    const flipped = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    for (const bad of [flipped, `tlyv_${randomBytes(32).toString('base64url')}`, 'nonsense']) {
      const r = await redeem(bad);
      expect(r.status, bad).toBe(400);
      expect(r.body.error, bad).toMatchObject({ code: 'invalid_request', details: { field: 'token', reason: 'invalid' } });
      expect(r.body.error.message).toMatch(/token/i);
    }
    for (const body of [{}, { token: '' }, { token: 42 }, { token: 'x'.repeat(1000) }, { token, extra: 1 }]) {
      const r = await anon().post('/v1/auth/verify-email', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe('invalid_request');
    }
    expect(await userOf(s.user.id)).toMatchObject({ is_email_verified: false });
    // An unknown user, or one without anything to verify.
    expect((await issue('usr_nobody')).status).toBe(404);
  });

  it('expires', async () => {
    const s = await signUp(app, address());
    const short = await issue(s.user.id, { expires_in_seconds: 120 });
    expect(new Date(short.body.expires_at).getTime() - Date.now()).toBeLessThanOrEqual(120_000);
    offsetMs = 121_000;
    try {
      const r = await redeem(short.body.token);
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'token', reason: 'expired' } });
    } finally {
      offsetMs = 0;
    }
    expect(await userOf(s.user.id)).toMatchObject({ is_email_verified: false });
    for (const bad of [59, 604_801, 1.5]) expect((await issue(s.user.id, { expires_in_seconds: bad })).status, String(bad)).toBe(400);
  });

  it('is bound to the address it was issued for: changing the e-mail (even back again) invalidates it', async () => {
    const first = address();
    const s = await signUp(app, first);
    const { token } = (await issue(s.user.id)).body;
    await svc().patch(`/v1/users/${s.user.id}`, { email: address() });
    const moved = await redeem(token);
    expect(moved.status).toBe(400);
    expect(moved.body.error.code).toBe('invalid_request');
    await svc().patch(`/v1/users/${s.user.id}`, { email: first });
    expect((await redeem(token)).status).toBe(400);
    expect(await userOf(s.user.id)).toMatchObject({ email: first, is_email_verified: false });
    // Bound in the token row itself too: a token whose address is not the user's is refused as such.
    const next = (await issue(s.user.id)).body.token as string;
    await app.database.db.updateTable('email_verification_tokens').set({ email: address() }).where('token_hash', '=', sha256(next)).execute();
    const r = await redeem(next);
    expect(r.status).toBe(400);
    expect(r.body.error.details).toMatchObject({ reason: 'email_changed' });
    expect(await userOf(s.user.id)).toMatchObject({ is_email_verified: false });
  });

  it('is bound to its user, and a newer token replaces an older one', async () => {
    const a = await signUp(app, address());
    const b = await signUp(app, address());
    const older = (await issue(a.user.id)).body.token as string;
    const newer = (await issue(a.user.id)).body.token as string;
    expect(newer).not.toBe(older);
    expect((await redeem(older)).body.error.details).toMatchObject({ reason: 'invalid' });
    expect((await redeem(newer)).status).toBe(200);
    expect(await userOf(a.user.id)).toMatchObject({ is_email_verified: true });
    expect(await userOf(b.user.id)).toMatchObject({ is_email_verified: false });
  });
});

describe('verification settings', () => {
  it('TALLY_EMAIL_VERIFY_TTL_SECONDS defaults to a day and TALLY_EMAIL_VERIFY_URL must be http(s); the link carries the token', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tally-ev-'));
    try {
      expect(loadConfig({ TALLY_DATA_DIR: dir }).config.emailVerification).toEqual({ ttlSeconds: 86_400, urlTemplate: null, confirmSignup: false });
      const set = loadConfig({ TALLY_DATA_DIR: dir, TALLY_EMAIL_VERIFY_TTL_SECONDS: '600', TALLY_EMAIL_VERIFY_URL: 'https://app.example.com/verify' });
      expect(set.config.emailVerification).toEqual({ ttlSeconds: 600, urlTemplate: 'https://app.example.com/verify', confirmSignup: false });
      // Sign-up by confirmation: on in production unless turned off, off elsewhere unless turned on.
      const prod = { TALLY_DATA_DIR: dir, NODE_ENV: 'production', TALLY_JWT_SECRET: 'j'.repeat(40), TALLY_ENCRYPTION_KEY: 'a'.repeat(64) };
      expect(loadConfig(prod).config.emailVerification?.confirmSignup).toBe(true);
      expect(loadConfig({ ...prod, TALLY_SIGNUP_CONFIRM_EMAIL: 'false' }).config.emailVerification?.confirmSignup).toBe(false);
      expect(loadConfig({ TALLY_DATA_DIR: dir, TALLY_SIGNUP_CONFIRM_EMAIL: 'true' }).config.emailVerification?.confirmSignup).toBe(true);
      expect(() => loadConfig({ TALLY_DATA_DIR: dir, TALLY_SIGNUP_CONFIRM_EMAIL: 'yes' })).toThrow(/TALLY_SIGNUP_CONFIRM_EMAIL/);
      expect(() => loadConfig({ TALLY_DATA_DIR: dir, TALLY_EMAIL_VERIFY_URL: 'javascript:alert(1)' })).toThrow(/TALLY_EMAIL_VERIFY_URL/);
      expect(() => loadConfig({ TALLY_DATA_DIR: dir, TALLY_EMAIL_VERIFY_TTL_SECONDS: '5' })).toThrow(/TALLY_EMAIL_VERIFY_TTL_SECONDS/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(verificationLink('https://app.example.com/verify?from=mail', 'tlyv_a-b_c')).toBe('https://app.example.com/verify?from=mail&token=tlyv_a-b_c');
    expect(verificationLink('https://app.example.com/#/verify/{token}', 'tlyv_x+y')).toBe('https://app.example.com/#/verify/tlyv_x%2By');
  });
});
