import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { IdParam, iso, Timestamp } from '../../core/schemas.js';
import type { EmailVerificationService } from './auth.email-verification.js';

const IssueBody = Type.Object(
  {
    /** Default TALLY_EMAIL_VERIFY_TTL_SECONDS (24 hours). */
    expires_in_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 604_800 })),
  },
  { additionalProperties: false },
);

const Issued = Type.Object(
  {
    user_id: Type.String(),
    /** The address the token proves: mail it here, and nowhere else. */
    email: Type.String(),
    token: Type.String(),
    expires_at: Timestamp,
    /** TALLY_EMAIL_VERIFY_URL with the token filled in; null when not configured. */
    verify_url: Type.Union([Type.String(), Type.Null()]),
  },
  { title: 'EmailVerificationToken' },
);

const RedeemBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false },
);

const Verified = Type.Object(
  { verified: Type.Literal(true), email: Type.String(), email_verified_at: Timestamp },
  { title: 'EmailVerified' },
);

export function registerEmailVerificationRoutes(app: FastifyInstance, deps: RouteDeps, verification: EmailVerificationService): void {
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/users/:id/email-verification',
    summary: "Issue a token proving the user's e-mail address, for the app to mail (service only; replaces the user's unused token)",
    tags: ['auth'],
    auth: 'service',
    // The answer carries the token: its idempotency record is sealed.
    sensitiveResponse: true,
    optionalBody: true,
    params: Type.Object({ id: IdParam }),
    body: IssueBody,
    response: { 201: Issued, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params, body }) => {
      const r = await verification.issue(ctx.db, params.id, body.expires_in_seconds);
      return created({ user_id: r.userId, email: r.email, token: r.token, expires_at: iso(r.expiresAt), verify_url: r.verifyUrl });
    },
  });

  // Anonymous: the link in the mail is opened by whoever reads that mailbox, signed in or not.
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/auth/verify-email',
    summary: 'Redeem an e-mail verification token: marks the address it was issued for verified (once)',
    tags: ['auth'],
    auth: 'none',
    runAsOwner: true,
    idempotency: 'none',
    body: RedeemBody,
    response: { 200: Verified },
    handler: async (_ctx, { body }) => {
      const r = await verification.redeem(deps.db, body.token);
      return ok({ verified: true as const, email: r.email, email_verified_at: iso(r.emailVerifiedAt) });
    },
  });
}
