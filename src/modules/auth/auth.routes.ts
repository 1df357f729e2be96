import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { requireUser } from '../../core/principal.js';
import { errors } from '../../core/errors.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { sessionRevoke } from './auth.sessions.repository.js';
import { Email } from '../../core/schemas.js';
import { ErrorResponse } from '../../http/schemas.js';
import { User, userToApi } from '../users/users.js';
import type { AuthResult, AuthService } from './auth.service.js';
import type { SignupConfirmation } from './auth.signup-confirm.js';

const Credentials = Type.Object(
  { email: Email, password: Type.String({ minLength: 8, maxLength: 256 }) },
  { additionalProperties: false },
);

const Session = Type.Object({
  user: User,
  access_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer(),
  refresh_token: Type.String({ description: 'Exchange once at POST /v1/auth/refresh for the next pair; a reused one ends the session.' }),
});

const ConfirmationSent = Type.Object(
  { confirmation_sent: Type.Literal(true, { description: 'The same answer for every address: what happened is told only to its mailbox.' }) },
  { additionalProperties: false },
);

const RefreshBody = Type.Object({ refresh_token: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false });

const toApi = (r: AuthResult) => ({
  user: userToApi(r.user),
  access_token: r.accessToken,
  token_type: 'bearer' as const,
  expires_in: r.expiresIn,
  refresh_token: r.refreshToken,
});

export function registerAuthRoutes(app: FastifyInstance, deps: RouteDeps, auth: AuthService, confirmation: SignupConfirmation | null): void {
  // Anonymous callers share no idempotency namespace, so these routes take no Idempotency-Key.
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/auth/signup',
    // With TALLY_SIGNUP_CONFIRM_EMAIL on: 202 whatever the address, and only its mailbox learns
    // what happened; off: a session at once (201), and 409 to a registered address.
    summary: 'Sign up with e-mail and password (202 and a confirmation mail when TALLY_SIGNUP_CONFIRM_EMAIL is on)',
    tags: ['auth'],
    auth: 'none',
    runAsOwner: true,
    idempotency: 'none',
    body: Credentials,
    response: { 201: Session, 202: ConfirmationSent, 409: ErrorResponse, 429: ErrorResponse },
    handler: async (_ctx, { body, request }) => {
      // argon2id is the cost: every attempt counts, per address and per e-mail, before it runs.
      await deps.throttles?.signupPerIp?.hit(request);
      await deps.throttles?.signupPerEmail?.hit(request);
      if (confirmation) {
        await confirmation.begin(deps.db, body.email, body.password);
        return { status: 202, body: { confirmation_sent: true as const } };
      }
      return created(toApi(await auth.signup(deps.db, body.email, body.password, { ip: request.ip, userAgent: request.headers['user-agent'] }, request.id)));
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/auth/logout',
    summary: "End the caller's session; its tokens stop working",
    tags: ['auth'],
    auth: 'user',
    idempotency: 'none',
    response: { 200: Type.Object({ logged_out: Type.Literal(true) }) },
    handler: async (ctx) => {
      const me = requireUser(ctx.principal);
      if (me.via !== 'jwt' || !me.sessionId) throw errors.invalidRequest('Only a session token (from /v1/auth/login) can log out');
      await sessionRevoke(ctx.db, me.userId, me.sessionId);
      return ok({ logged_out: true as const });
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/auth/login',
    summary: 'Log in with e-mail and password',
    tags: ['auth'],
    auth: 'none',
    runAsOwner: true,
    idempotency: 'none',
    body: Credentials,
    response: { 200: Session, 401: ErrorResponse, 403: ErrorResponse, 429: ErrorResponse },
    handler: async (_ctx, { body, request }) => {
      // Every attempt counts (so parallel guesses cannot slip past), per address and per account.
      await deps.throttles?.loginPerIp?.hit(request);
      await deps.throttles?.loginPerEmail?.hit(request);
      return ok(toApi(await auth.login(deps.db, body.email, body.password, { ip: request.ip, userAgent: request.headers['user-agent'] })));
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/auth/refresh',
    summary: 'Exchange a refresh token for a new access token and refresh token (rotation)',
    tags: ['auth'],
    auth: 'none',
    runAsOwner: true,
    idempotency: 'none',
    body: RefreshBody,
    response: { 200: Session, 401: ErrorResponse, 403: ErrorResponse, 429: ErrorResponse },
    // Each refresh token works once; presenting one that was already exchanged ends its session
    // (every token of it), since two parties hold it (docs/auth.md, "Refresh").
    handler: async (_ctx, { body }) => ok(toApi(await auth.refresh(deps.db, body.refresh_token))),
  });
}
