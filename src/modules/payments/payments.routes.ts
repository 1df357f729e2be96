import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { assertSelfOrService } from '../../core/principal.js';
import { DomainError } from '../../core/errors.js';
import { ListQuery } from '../../core/schemas.js';
import { pageRequest } from '../../core/paging.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { IdParam, listOf } from '../../core/schemas.js';
import {
  CheckoutReferenceBody,
  CheckoutReferenceCreate,
  CreditPackage,
  CreditPackageCreate,
  CreditPackagePatch,
  Customer,
  EmailAlias,
  EmailAliasCreate,
  Invoice,
  MATCH_STATUSES,
  Payment,
  PAYMENT_STATUSES,
  ProviderParam,
  ResolveBody,
  WEBHOOK_STATUSES,
  WebhookAck,
  WebhookEvent,
} from './payments.js';
import { PROVIDERS } from './payments.provider.js';
import type { PaymentsService } from './payments.service.js';

const Id = Type.Object({ id: IdParam }, { additionalProperties: false });
const lit = (xs: readonly string[]) => Type.Union(xs.map((x) => Type.Literal(x)));
const Deleted = Type.Object({ id: Type.String(), deleted: Type.Literal(true) });

export function registerPaymentRoutes(app: FastifyInstance, deps: RouteDeps, payments: PaymentsService): void {
  // Webhooks sign the exact bytes: in this scope only, every body is kept as a raw Buffer (any
  // content type), and nothing else in the app sees this parser.
  void app.register(async (scoped) => {
    scoped.removeAllContentTypeParsers();
    scoped.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    defineRoute(scoped, deps, {
      method: 'POST',
      url: '/v1/webhooks/:provider',
      summary: "A payment provider's webhook: verified with its own signature scheme, processed once per event id",
      tags: ['payments'],
      auth: 'none',
      idempotency: 'none',
      // Verification (PayPal: an HTTP call) happens before any transaction; the service opens its own.
      runAsOwner: true,
      params: ProviderParam,
      response: { 200: WebhookAck, 429: ErrorResponse, 503: ErrorResponse },
      handler: async (_ctx, { params, request }) => {
        // An address whose deliveries to this provider keep failing verification is refused before
        // anything is verified (PayPal: called), parsed or written (docs/payments.md).
        const throttle = deps.throttles?.webhookFailures ?? null;
        await throttle?.check(request);
        const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        try {
          const answer = await payments.webhooks.receive(params.provider, raw, request.headers);
          return { status: answer.status, body: answer.body };
        } catch (err) {
          // 400 is a delivery that failed verification (the only 4xx the webhook pipeline raises).
          if (throttle && err instanceof DomainError && err.code === 'invalid_request') {
            const spent = await throttle.fail(request);
            if (spent.exceeded) throw throttle.limited(spent.retryAfter);
          }
          throw err;
        }
      },
    });
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/payments',
    summary: 'List payments (service); ?match_status=unmatched is the unmatched-payments queue',
    tags: ['payments'],
    auth: 'service',
    query: Type.Object(
      {
        ...ListQuery.properties,
        user_id: Type.Optional(IdParam),
        status: Type.Optional(lit(PAYMENT_STATUSES)),
        match_status: Type.Optional(lit(MATCH_STATUSES)),
        provider: Type.Optional(lit(PROVIDERS)),
      },
      { additionalProperties: false },
    ),
    response: { 200: listOf(Payment) },
    handler: async (ctx, { query }) => {
      const { user_id, status, match_status, provider } = query;
      return ok(
        await payments.payments(ctx.db, pageRequest(query), {
          ...(user_id !== undefined ? { userId: user_id } : {}),
          ...(status !== undefined ? { status } : {}),
          ...(match_status !== undefined ? { matchStatus: match_status } : {}),
          ...(provider !== undefined ? { provider } : {}),
        }),
      );
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/payments/:id',
    summary: 'A payment (service, or the user who paid)',
    tags: ['payments'],
    auth: 'any',
    scope: 'credits:read',
    params: Id,
    response: { 200: Payment, 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      const payment = await payments.payment(ctx.db, params.id);
      // RLS already hides other users' payments (404); the service layer says so too.
      if (ctx.principal.kind !== 'service') assertSelfOrService(ctx.principal, payment.user_id ?? '');
      return ok(payment);
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/payments/:id/resolve',
    summary: 'Assign an unmatched payment to a user (service); its credits are granted exactly once',
    tags: ['payments'],
    auth: 'service',
    runAsOwner: true,
    idempotency: 'none',
    params: Id,
    body: ResolveBody,
    response: { 200: Payment, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (_ctx, { params, body }) => ok(await payments.purchases.resolve(params.id, body.user_id, body.add_alias ?? false, body.credits)),
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/checkout-references',
    summary:
      'Sign a checkout reference (service): put it in the checkout as metadata tally_ref (Stripe: or client_reference_id; PayPal: custom_id) so the payment is matched to this user — and, if named, buys this package or plan at its price',
    tags: ['payments'],
    auth: 'service',
    body: CheckoutReferenceCreate,
    response: { 201: CheckoutReferenceBody, 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { body }) => created(await payments.createReference(ctx.db, body)),
  });

  for (const [path, summary, schema, list] of [
    ['payments', 'A user’s payments (service, or that user; read-only)', Payment, 'payments'],
    ['invoices', 'A user’s invoices (service, or that user; read-only)', Invoice, 'invoices'],
    ['customers', 'A user’s payment-provider customers (service, or that user; read-only)', Customer, 'customers'],
  ] as const) {
    defineRoute(app, deps, {
      method: 'GET',
      url: `/v1/users/:id/${path}`,
      summary,
      tags: ['payments'],
      auth: 'any',
      scope: 'credits:read',
      params: Id,
      query: ListQuery,
      response: { 200: listOf(schema), 404: ErrorResponse },
      handler: async (ctx, { params, query }) => {
        assertSelfOrService(ctx.principal, params.id);
        const page = pageRequest(query);
        if (list === 'payments') {
          await payments.assertUser(ctx.db, params.id);
          return ok(await payments.payments(ctx.db, page, { userId: params.id }));
        }
        return ok(list === 'invoices' ? await payments.invoices(ctx.db, params.id, page) : await payments.customers(ctx.db, params.id, page));
      },
    });
  }

  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/webhook-events',
    summary: 'The webhook log (service): every delivery with its status, attempts, outcome and error',
    tags: ['payments'],
    auth: 'service',
    query: Type.Object(
      { ...ListQuery.properties, provider: Type.Optional(lit(PROVIDERS)), status: Type.Optional(lit(WEBHOOK_STATUSES)) },
      { additionalProperties: false },
    ),
    response: { 200: listOf(WebhookEvent) },
    handler: async (ctx, { query }) =>
      ok(
        await payments.webhookEvents(ctx.db, pageRequest(query), {
          ...(query.provider !== undefined ? { provider: query.provider } : {}),
          ...(query.status !== undefined ? { status: query.status } : {}),
        }),
      ),
  });

  // Credit packages: what a provider price buys (service CRUD).
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/credit-packages',
    summary: 'Create a credit package: a provider price/variant/product id → credits (service)',
    tags: ['payments'],
    auth: 'service',
    body: CreditPackageCreate,
    response: { 201: CreditPackage, 409: ErrorResponse },
    handler: async (ctx, { body }) => created(await payments.catalogue.createPackage(ctx.db, body)),
  });
  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/credit-packages',
    summary: 'List credit packages (service)',
    tags: ['payments'],
    auth: 'service',
    query: ListQuery,
    response: { 200: listOf(CreditPackage) },
    handler: async (ctx, { query }) => ok(await payments.catalogue.packages(ctx.db, pageRequest(query))),
  });
  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/credit-packages/:id',
    summary: 'A credit package (service)',
    tags: ['payments'],
    auth: 'service',
    params: Id,
    response: { 200: CreditPackage, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await payments.catalogue.getPackage(ctx.db, params.id)),
  });
  defineRoute(app, deps, {
    method: 'PATCH',
    url: '/v1/credit-packages/:id',
    summary: 'Change a credit package (service); payments already made keep what they bought',
    tags: ['payments'],
    auth: 'service',
    params: Id,
    body: CreditPackagePatch,
    response: { 200: CreditPackage, 404: ErrorResponse },
    handler: async (ctx, { params, body }) => ok(await payments.catalogue.updatePackage(ctx.db, params.id, body)),
  });
  defineRoute(app, deps, {
    method: 'DELETE',
    url: '/v1/credit-packages/:id',
    summary: 'Delete a credit package (service); payments keep their record of it as null',
    tags: ['payments'],
    auth: 'service',
    params: Id,
    response: { 200: Deleted, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await payments.catalogue.deletePackage(ctx.db, params.id)),
  });

  // E-mail aliases: other addresses a user pays with (service manages; the user reads).
  defineRoute(app, deps, {
    method: 'POST',
    url: '/v1/users/:id/email-aliases',
    summary: 'Add an e-mail a user pays with, for matching payments (service)',
    tags: ['payments'],
    auth: 'service',
    params: Id,
    body: EmailAliasCreate,
    response: { 201: EmailAlias, 404: ErrorResponse, 409: ErrorResponse },
    handler: async (ctx, { params, body }) => created(await payments.addAlias(ctx.db, params.id, body.email, body.note ?? null)),
  });
  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/users/:id/email-aliases',
    summary: 'A user’s e-mail aliases (service, or that user)',
    tags: ['payments'],
    auth: 'any',
    scope: 'users:read',
    params: Id,
    query: ListQuery,
    response: { 200: listOf(EmailAlias), 404: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      assertSelfOrService(ctx.principal, params.id);
      return ok(await payments.aliases(ctx.db, params.id, pageRequest(query)));
    },
  });
  defineRoute(app, deps, {
    method: 'DELETE',
    url: '/v1/email-aliases/:id',
    summary: 'Remove an e-mail alias (service)',
    tags: ['payments'],
    auth: 'service',
    params: Id,
    response: { 200: Deleted, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await payments.deleteAlias(ctx.db, params.id)),
  });
}
