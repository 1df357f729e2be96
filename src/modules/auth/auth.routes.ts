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

const RefreshBody = Type.Object({ refresh_token: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false });

const toApi = (r: AuthResult) => ({
  user: userToApi(r.user),
  access_token: r.accessToken,
  token_type: 'bearer' as const,
  expires_in: r.expiresIn,
  refresh_token: r.refreshToken,
});

export function registerAuthRoutes(app: FastifyInstance, deps: RouteDeps, auth: AuthService): void {
  // Anonymous callers share no idempotency namespace, so these routes take no Idempotency-Key.
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/auth/signup',
    summary: 'Sign up with e-mail and password',
    tags: ['auth'],
    auth: 'none',
    runAsOwner: true,
    idempotency: 'none',
    body: Credentials,
    response: { 201: Session, 409: ErrorResponse, 429: ErrorResponse },
    handler: async (_ctx, { body, request }) => {
      // argon2id is the cost: every attempt counts, per address and per e-mail, before it runs.
      await deps.throttles?.signupPerIp?.hit(request);
      await deps.throttles?.signupPerEmail?.hit(request);
      return created(toApi(await auth.signup(deps.db, body.email, body.password, { ip: request.ip, userAgent: request.headers['user-agent'] })));
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
