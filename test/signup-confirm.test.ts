import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { bodyOf, smtpSink } from './support/smtp-sink.js';

const tokenIn = (raw: string) => /tlyv_[A-Za-z0-9_-]{43}/.exec(bodyOf(raw))?.[0];

/**
 * Sign-up with confirmation (docs/auth.md): the answer never says whether an address is
 * registered; the mailbox learns what happened, and only a mailed token makes an account usable.
 */
describe(`sign-up with confirmation (${TARGET})`, () => {
  let app: TestApp;
  let sink: Awaited<ReturnType<typeof smtpSink>>;
  let anon: ReturnType<typeof client>;

  beforeAll(async () => {
    sink = await smtpSink();
    app = await createTestApp({
      mail: { smtpUrl: sink.url, from: 'Tally <no-reply@tally.test>' },
      emailVerification: { ttlSeconds: 3600, urlTemplate: 'https://app.example/verify?t={token}', confirmSignup: true },
    });
    anon = client(app.server, null);
  });
  afterAll(async () => {
    await app.close();
    await sink.close();
  });

  const address = () => `sc_${randomBytes(5).toString('hex')}@example.com`;
  const deliver = () => app.services.queue.runDue(new Date());
  const signup = (email: string, password: string) => anon.post('/v1/auth/signup', { email, password });
  const login = (email: string, password: string) => anon.post('/v1/auth/login', { email, password });
  const redeem = (token: string) => anon.post('/v1/auth/verify-email', { token });
  const mailsTo = (email: string) => sink.mails.filter((m) => m.to === email.toLowerCase());
  const templates = async (email: string) =>
    (await app.database.db.selectFrom('mail_outbox').select('template').where('to_address', '=', email).orderBy('created_at').execute()).map((r) => r.template);
  const usersWith = async (email: string) =>
    (await app.database.db.selectFrom('users').select('id').where('email', 'ilike', email).execute()).length;

  /** Signs up and confirms by the mailed link: a working account. */
  async function confirmed(email: string, password: string) {
    expect((await signup(email, password)).status).toBe(202);
    await deliver();
    const token = tokenIn(mailsTo(email).at(-1)?.raw ?? '');
    expect(token).toBeDefined();
    expect((await redeem(token ?? '')).status).toBe(200);
  }

  it('a new address gets 202 and a mailed link; the account cannot log in until the link is used, then logs in with the password chosen at sign-up', async () => {
    const email = address();
    const res = await signup(email, 'chosen at sign-up');
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ confirmation_sent: true });
    expect((await login(email, 'chosen at sign-up')).status).toBe(401);
    await deliver();
    const [mail] = mailsTo(email);
    expect(bodyOf(mail?.raw ?? '')).toContain('https://app.example/verify?t=tlyv_');
    const token = tokenIn(mail?.raw ?? '') ?? '';
    const ok = await redeem(token);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ verified: true, email });
    const session = await login(email, 'chosen at sign-up');
    expect(session.status).toBe(200);
    expect(session.body.user.is_email_verified).toBe(true);
    // The link works once.
    const again = await redeem(token);
    expect(again.status).toBe(400);
    expect(again.body.error.details.reason).toBe('used');
  });

  it('a registered address gets the very same answer; its owner gets a note, and nothing about the account changes', async () => {
    const email = address();
    await confirmed(email, 'the owner password');
    const fresh = await signup(address(), 'some password 1');
    const taken = await signup(email.toUpperCase(), 'a stranger password');
    expect(taken.status).toBe(fresh.status);
    expect(taken.body).toEqual(fresh.body);
    expect(Object.keys(taken.headers).sort()).toEqual(Object.keys(fresh.headers).sort());
    await deliver();
    expect(await templates(email)).toEqual(['auth.signup_confirm', 'auth.signup_existing']);
    const note = bodyOf(mailsTo(email).at(-1)?.raw ?? '');
    expect(note).toContain('already has an account');
    expect(tokenIn(note)).toBeUndefined();
    expect(await usersWith(email)).toBe(1);
    expect((await login(email, 'a stranger password')).status).toBe(401);
    expect((await login(email, 'the owner password')).status).toBe(200);
  });

  it('a stranger who signs up first with my address cannot get in: each sign-up has its own link, and the one I open sets my password', async () => {
    const victim = address();
    expect((await signup(victim, 'the stranger password')).status).toBe(202);
    expect((await signup(victim, 'my own password')).status).toBe(202);
    await deliver();
    const [strangers, mine] = mailsTo(victim).map((m) => tokenIn(m.raw) ?? '');
    expect(strangers).toBeDefined();
    expect(mine).toBeDefined();
    expect(mine).not.toBe(strangers);
    expect(await usersWith(victim)).toBe(1);
    expect((await redeem(mine ?? '')).status).toBe(200);
    expect((await login(victim, 'my own password')).status).toBe(200);
    expect((await login(victim, 'the stranger password')).status).toBe(401);
    // The stranger's link died with the confirmation.
    const late = await redeem(strangers ?? '');
    expect(late.status).toBe(400);
    expect((await login(victim, 'the stranger password')).status).toBe(401);
  });

  it('concurrent sign-ups with one new address make one account and answer 202 to each', async () => {
    const email = address();
    const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => signup(email, `password number ${i}`)));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202]);
    expect(await usersWith(email)).toBe(1);
    expect(await templates(email)).toEqual(['auth.signup_confirm', 'auth.signup_confirm', 'auth.signup_confirm', 'auth.signup_confirm']);
  });

  it('a disabled account gets the same answer and no mail', async () => {
    const email = address();
    await confirmed(email, 'soon disabled');
    const user = await app.database.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirstOrThrow();
    const svc = client(app.server, app.config.auth.serviceKey);
    expect((await svc.patch(`/v1/users/${user.id}`, { is_active: false })).status).toBe(200);
    const res = await signup(email, 'anything at all');
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ confirmation_sent: true });
    expect(await templates(email)).toEqual(['auth.signup_confirm']);
  });
});
