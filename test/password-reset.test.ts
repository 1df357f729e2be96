import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from './support/client.js';
import { bodyOf, smtpSink } from './support/smtp-sink.js';
import { signUp } from './support/fixtures.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import { randomBytes } from 'node:crypto';
import { hashResetToken } from '../src/modules/auth/auth.password-reset.js';
import { SecretBox } from '../src/lib/secret-box.js';
import { mailAad } from '../src/modules/mail/mail.js';
import { rotateSecrets } from '../src/modules/secrets/secrets.rotate.js';

const tokenIn = (raw: string) => /tlyp_[A-Za-z0-9_-]{43}/.exec(bodyOf(raw))?.[0];

describe(`password reset and mail (${TARGET})`, () => {
  let app: TestApp;
  let sink: Awaited<ReturnType<typeof smtpSink>>;
  let anon: ReturnType<typeof client>;
  let offsetMs = 0;
  const clock = () => new Date(Date.now() + offsetMs);

  beforeAll(async () => {
    sink = await smtpSink();
    app = await createTestApp(
      {
        mail: { smtpUrl: sink.url, from: 'Tally <no-reply@tally.test>' },
        passwordReset: { ttlSeconds: 3600, urlTemplate: 'https://app.example/reset?t={token}' },
      },
      { clock },
    );
    anon = client(app.server, null);
  });
  afterAll(async () => {
    await app.close();
    await sink.close();
  });

  const deliver = () => app.services.queue.runDue(clock());
  const ask = (email: string) => anon.post('/v1/auth/password-reset', { email });
  const confirm = (token: string, password: string) => anon.post('/v1/auth/password-reset/confirm', { token, password });
  const mailsTo = (email: string) => sink.mails.filter((m) => m.to === email);

  it('asking answers the same for an unknown address; only the owner gets mail, with a link that works once', async () => {
    const s = await signUp(app, 'pr-owner@example.com', 'the old password');
    const known = await ask('PR-Owner@example.com');
    const unknown = await ask('pr-nobody@example.com');
    expect(known.status).toBe(202);
    expect(unknown.status).toBe(202);
    expect(unknown.body).toEqual(known.body);
    await deliver();
    expect(mailsTo('pr-nobody@example.com')).toHaveLength(0);
    const [mail] = mailsTo('pr-owner@example.com');
    expect(mail).toBeDefined();
    const body = bodyOf(mail?.raw ?? '');
    expect(body).toContain('https://app.example/reset?t=tlyp_');
    const token = tokenIn(mail?.raw ?? '') ?? '';
    // Stored as its hash only; the outbox dropped the body once SMTP took it.
    const outbox = await app.database.db.selectFrom('mail_outbox').selectAll().where('user_id', '=', s.user.id).execute();
    expect(outbox).toHaveLength(1);
    expect(outbox[0]).toMatchObject({ status: 'sent', transport: 'smtp', body_enc: null, template: 'auth.password_reset', attempts: 1 });
    const tokens = await app.database.db.selectFrom('password_reset_tokens').selectAll().where('user_id', '=', s.user.id).execute();
    expect(tokens.map((t) => t.token_hash)).toEqual([hashResetToken(token)]);

    const done = await confirm(token, 'a brand new password');
    expect(done.status).toBe(200);
    expect(done.body).toEqual({ reset: true, sessions_ended: 1 });
    expect((await client(app.server, s.token).get('/v1/me')).status).toBe(401); // signed out everywhere
    expect((await anon.post('/v1/auth/login', { email: 'pr-owner@example.com', password: 'the old password' })).status).toBe(401);
    expect((await anon.post('/v1/auth/login', { email: 'pr-owner@example.com', password: 'a brand new password' })).status).toBe(200);
    const again = await confirm(token, 'yet another password');
    expect(again.status).toBe(400);
    expect(again.body.error.details).toEqual({ field: 'token', reason: 'used' });
  });

  it('a refresh token of a session the reset ended is dead too', async () => {
    await signUp(app, 'pr-refresh@example.com', 'the old password');
    const login = await anon.post('/v1/auth/login', { email: 'pr-refresh@example.com', password: 'the old password' });
    await ask('pr-refresh@example.com');
    await deliver();
    const token = tokenIn(mailsTo('pr-refresh@example.com')[0]?.raw ?? '') ?? '';
    expect((await confirm(token, 'a brand new password')).body.sessions_ended).toBe(2);
    const r = await anon.post('/v1/auth/refresh', { refresh_token: login.body.refresh_token });
    expect(r.status).toBe(401);
    expect(r.body.error.details.reason).toBe('session_ended');
  });

  it('a newer request replaces the older token; an expired one or one for a changed address is refused and changes nothing', async () => {
    const s = await signUp(app, 'pr-tokens@example.com', 'the old password');
    await ask('pr-tokens@example.com');
    await ask('pr-tokens@example.com');
    await deliver();
    const [first, second] = mailsTo('pr-tokens@example.com').map((m) => tokenIn(m.raw) ?? '');
    expect((await confirm(first ?? '', 'a brand new password')).body.error.details.reason).toBe('invalid');

    offsetMs = 3601_000;
    expect((await confirm(second ?? '', 'a brand new password')).body.error.details.reason).toBe('expired');
    offsetMs = 0;

    await ask('pr-tokens@example.com');
    await deliver();
    const third = tokenIn(mailsTo('pr-tokens@example.com')[2]?.raw ?? '') ?? '';
    expect((await client(app.server, app.serviceKey).patch(`/v1/users/${s.user.id}`, { email: 'pr-moved@example.com' })).status).toBe(200);
    expect((await confirm(third, 'a brand new password')).body.error.details.reason).toBe('email_changed');
    expect((await anon.post('/v1/auth/login', { email: 'pr-moved@example.com', password: 'the old password' })).status).toBe(200);
    expect((await confirm('tlyp_nonsense', 'a brand new password')).body.error.details.reason).toBe('invalid');
    expect((await confirm(third, 'short')).status).toBe(400);
  });

  it('a disabled account gets no mail', async () => {
    const s = await signUp(app, 'pr-disabled@example.com', 'the old password');
    await client(app.server, app.serviceKey).patch(`/v1/users/${s.user.id}`, { is_active: false });
    expect((await ask('pr-disabled@example.com')).status).toBe(202);
    await deliver();
    expect(mailsTo('pr-disabled@example.com')).toHaveLength(0);
  });

  it('when the SMTP server refuses, the mail waits with the error and goes out on a later attempt', async () => {
    await signUp(app, 'pr-retry@example.com', 'the old password');
    sink.state.refuse = true;
    await ask('pr-retry@example.com');
    await deliver();
    const waiting = await app.database.db.selectFrom('mail_outbox').selectAll().where('to_address', '=', 'pr-retry@example.com').executeTakeFirstOrThrow();
    expect(waiting).toMatchObject({ status: 'pending', attempts: 1 });
    expect(waiting.last_error).toContain('mailbox unavailable');
    expect(waiting.body_enc).not.toBeNull();
    expect(waiting.body_enc).not.toContain('tlyp_'); // sealed
    sink.state.refuse = false;
    offsetMs = 60_000; // past the queue's backoff
    await deliver();
    offsetMs = 0;
    expect(mailsTo('pr-retry@example.com')).toHaveLength(1);
    const sent = await app.database.db.selectFrom('mail_outbox').selectAll().where('id', '=', waiting.id).executeTakeFirstOrThrow();
    expect(sent).toMatchObject({ status: 'sent', attempts: 2, last_error: null, body_enc: null });
  });

  it('the outbox is the operator’s: service only, and no body once SMTP took the mail', async () => {
    const list = await client(app.server, app.serviceKey).get('/v1/mail?template=auth.password_reset&to=pr-owner@example.com');
    expect(list.status).toBe(200);
    expect(list.body.data).toHaveLength(1);
    const one = await client(app.server, app.serviceKey).get(`/v1/mail/${list.body.data[0].id}`);
    expect(one.body).toMatchObject({ to: 'pr-owner@example.com', status: 'sent', transport: 'smtp', text: null });
    const user = await signUp(app);
    expect((await user.api.get('/v1/mail')).status).toBe(403);
  });
});

describe(`mail without SMTP (${TARGET})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp({
      rateLimits: {
        loginPerIp: null,
        loginPerEmail: null,
        signupPerIp: null,
        signupPerEmail: null,
        resetPerIp: null,
        resetPerEmail: { max: 2, windowSeconds: 600 },
        failuresPerIp: null,
        entries: 1000,
      },
    });
  });
  afterAll(async () => {
    await app.close();
  });

  it('goes to the log and stays readable (sealed) for the operator, who can follow the code', async () => {
    const s = await signUp(app, 'pr-log@example.com', 'the old password');
    const anon = client(app.server, null);
    expect((await anon.post('/v1/auth/password-reset', { email: 'pr-log@example.com' })).status).toBe(202);
    await app.services.queue.runDue();
    const svc = client(app.server, app.serviceKey);
    const list = await svc.get(`/v1/mail?user_id=${s.user.id}`);
    expect(list.body.data[0]).toMatchObject({ status: 'sent', transport: 'log' });
    const one = await svc.get(`/v1/mail/${list.body.data[0].id}`);
    const token = /tlyp_[A-Za-z0-9_-]{43}/.exec(one.body.text)?.[0] ?? '';
    expect((await anon.post('/v1/auth/password-reset/confirm', { token, password: 'a brand new password' })).status).toBe(200);
    // The kept body is a secret at rest like any other: `tally secrets rotate` re-seals it.
    const next = new SecretBox(randomBytes(32), [app.config.encryptionKey]);
    const report = await rotateSecrets(app.database.db, next);
    expect(report.mail_outbox).toBe(1);
    const row = await app.database.db.selectFrom('mail_outbox').selectAll().where('id', '=', list.body.data[0].id).executeTakeFirstOrThrow();
    expect(row.key_id).toBe(next.keyId);
    expect(next.open(row.body_enc ?? '', mailAad(row.id))).toContain(token);
  });

  it('asking is limited per e-mail (each ask may send a mail)', async () => {
    const anon = client(app.server, null);
    expect((await anon.post('/v1/auth/password-reset', { email: 'pr-limit@example.com' })).status).toBe(202);
    expect((await anon.post('/v1/auth/password-reset', { email: 'PR-limit@example.com' })).status).toBe(202);
    const third = await anon.post('/v1/auth/password-reset', { email: 'pr-limit@example.com' });
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('rate_limited');
  });
});
