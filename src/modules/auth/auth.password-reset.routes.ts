import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { Email } from '../../core/schemas.js';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import type { PasswordResetService } from './auth.password-reset.js';

/** Anonymous, like sign-up and login: the mailed token is the credential. No Idempotency-Key. */
export function registerPasswordResetRoutes(app: FastifyInstance, deps: RouteDeps, resets: PasswordResetService): void {
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/auth/password-reset',
    summary: 'Ask for a password reset mail; the answer is the same whether or not the address has an account',
    tags: ['auth'],
    auth: 'none',
    runAsOwner: true,
    idempotency: 'none',
    body: Type.Object({ email: Email }, { additionalProperties: false }),
    response: { 202: Type.Object({ requested: Type.Literal(true) }), 429: ErrorResponse },
    handler: async (_ctx, { body, request }) => {
      // Each request may send a mail: counted per address and per e-mail before anything runs.
      await deps.throttles?.resetPerIp?.hit(request);
      await deps.throttles?.resetPerEmail?.hit(request);
      await resets.request(deps.db, body.email);
      return { status: 202, body: { requested: true as const } };
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/auth/password-reset/confirm',
    summary: 'Set a new password with a mailed reset token (once); every session of the account ends',
    tags: ['auth'],
    auth: 'none',
    runAsOwner: true,
    idempotency: 'none',
    body: Type.Object(
      { token: Type.String({ minLength: 1, maxLength: 256 }), password: Type.String({ minLength: 8, maxLength: 256 }) },
      { additionalProperties: false },
    ),
    response: { 200: Type.Object({ reset: Type.Literal(true), sessions_ended: Type.Integer() }), 400: ErrorResponse },
    handler: async (_ctx, { body }) => {
      const done = await resets.confirm(deps.db, body.token, body.password);
      return ok({ reset: true as const, sessions_ended: done.sessionsEnded });
    },
  });
}
