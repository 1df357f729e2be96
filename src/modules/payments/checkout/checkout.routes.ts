import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { IdParam } from '../../../core/schemas.js';
import { created, defineRoute, ok, type RouteDeps } from '../../../http/route.js';
import { ErrorResponse } from '../../../http/schemas.js';
import { Checkout, CheckoutCapture, CheckoutCreate } from './checkout.js';
import type { CheckoutService } from './checkout.service.js';

export function registerCheckoutRoutes(app: FastifyInstance, deps: RouteDeps, checkouts: CheckoutService): void {
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/checkout',
    summary:
      "Create a provider checkout (Stripe, Lemon Squeezy, Creem, PayPal) for a credit package or a plan, with metadata Tally signs: the webhook that follows buys exactly that, once, at that price (service, or a user for themself)",
    tags: ['payments'],
    auth: 'any',
    scope: 'billing:write',
    // The provider is called outside any transaction; the service opens its own short ones and
    // checks the caller itself (a user buys only for themself). Tally's checkout id is the
    // provider's idempotency key, so a retried create never makes two provider checkouts.
    runAsOwner: true,
    idempotency: 'none',
    body: CheckoutCreate,
    response: { 201: Checkout, 400: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse },
    handler: async (ctx, { body, request }) => {
      // Each checkout asks the provider's API: a signed-in user gets a budget (the service none).
      if (ctx.principal.kind === 'user') await deps.throttles?.checkoutPerUser?.hit(request);
      return created(await checkouts.create(ctx.principal, body));
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/checkouts/:id/capture',
    summary:
      'Capture an approved PayPal order (service, or its buyer, back from PayPal): the money is taken, and the capture webhook that follows grants what was signed',
    tags: ['payments'],
    auth: 'any',
    scope: 'billing:write',
    // An HTTP call to the provider: outside any transaction; the service checks the caller.
    runAsOwner: true,
    idempotency: 'none',
    params: Type.Object({ id: IdParam }, { additionalProperties: false }),
    response: { 200: CheckoutCapture, 404: ErrorResponse, 409: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse },
    handler: async (ctx, { params, request }) => {
      if (ctx.principal.kind === 'user') await deps.throttles?.checkoutPerUser?.hit(request);
      return ok(await checkouts.capture(ctx.principal, params.id));
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/checkouts/:id',
    summary: 'A checkout Tally created (service, or its buyer)',
    tags: ['payments'],
    auth: 'any',
    scope: 'billing:read',
    params: Type.Object({ id: IdParam }, { additionalProperties: false }),
    response: { 200: Checkout, 403: ErrorResponse, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await checkouts.get(ctx.db, ctx.principal, params.id)),
  });
}
