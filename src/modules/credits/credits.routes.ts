import type { FastifyInstance } from 'fastify';
import { type TSchema, Type } from 'typebox';
import { assertSelfOrService } from '../../core/principal.js';
import { type RequestContext } from '../../core/context.js';
import { ListQuery } from '../../core/schemas.js';
import { pageRequest, toPage } from '../../core/paging.js';
import { defineRoute, ok, type Reply, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { replyOf } from '../../http/answers.js';
import { IdParam, listOf } from '../../core/schemas.js';
import type { Principal } from '../../core/principal.js';
import type { Executor } from '../../db/database.js';
import type { WorkspacesService } from '../workspaces/workspaces.service.js';
import {
  AdjustBody,
  Balance,
  CaptureBody,
  expectedAccountOf,
  ReleaseBody,
  DebitBody,
  ENTRY_TYPES,
  GrantBody,
  Hold,
  HOLD_STATUSES,
  HoldBody,
  holdBody,
  Movement,
  type OpResult,
  RefundBody,
  Transaction,
  transactionBody,
} from './credits.js';
import { adjustOp, captureOp, debitOp, grantOp, holdOp, LEDGER_OPERATIONS as OPS, type OpMeta, ownerOf, payerOf, refundOp, releaseOp } from './credits.commands.js';
import type { Operation } from '../idempotency/idempotency.js';
import { entryFromRow, holdFromRow } from './credits.repository.js';
import type { Owner } from './credits.js';
import type { CreditsService } from './credits.service.js';

const LowThreshold = Type.Object(
  {
    user_id: Type.Union([Type.String(), Type.Null()]),
    workspace_id: Type.Union([Type.String(), Type.Null()]),
    low_threshold: Type.Union([Type.Integer(), Type.Null()]),
    effective_threshold: Type.Integer({ description: 'The threshold in force (0: none)' }),
  },
  { title: 'LowBalanceThreshold' },
);

const moneyErrors = { 402: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 422: ErrorResponse };

const meta = (ctx: RequestContext): OpMeta => ({ requestId: ctx.requestId, idem: ctx.idempotency ?? null });

/** An OpResult as the HTTP reply; a replay says so in a header. */
const answer = (result: OpResult): Reply => replyOf(result);

/** Money writes: service only, Idempotency-Key required and recorded by the ledger with the movement. */
const money = (url: string, operation: Operation, summary: string, response: Record<number, TSchema>) => ({
  method: 'POST' as const,
  url,
  summary,
  tags: [url.startsWith('/v1/holds') ? 'holds' : 'credits'],
  auth: 'service' as const,
  idempotency: 'operation' as const,
  operation,
  response: { ...response, ...moneyErrors },
});

export function registerCreditRoutes(app: FastifyInstance, deps: RouteDeps, credits: CreditsService, workspaces: WorkspacesService): void {
  defineRoute(app, deps, {
    ...money('/v1/credits/grant', OPS.grant, 'Grant credits (service): optional class, expiry and priority; capped', { 201: Movement }),
    body: GrantBody,
    handler: async (ctx, { body }) => answer(await credits.execute(ownerOf(body), grantOp(body, meta(ctx)))),
  });
  defineRoute(app, deps, {
    ...money(
      '/v1/credits/debit',
      OPS.debit,
      "Debit credits (service); 402 when not enough are available. user_id with workspace_id: the member spends the pool (403 viewer, 404 not a member, 402 budget_exceeded past their spend cap)",
      { 201: Movement, 403: ErrorResponse },
    ),
    body: DebitBody,
    handler: async (ctx, { body }) => answer(await credits.execute(payerOf(body).owner, debitOp(body, meta(ctx)))),
  });
  defineRoute(app, deps, {
    ...money('/v1/credits/refund', OPS.refund, 'Refund credits (service); never more than the debit it names', { 201: Movement }),
    body: RefundBody,
    handler: async (ctx, { body }) => answer(await credits.execute(ownerOf(body), refundOp(body, meta(ctx)))),
  });
  defineRoute(app, deps, {
    ...money('/v1/credits/adjust', OPS.adjust, 'Adjust a balance by a signed amount (service, admin corrections)', { 201: Movement }),
    body: AdjustBody,
    handler: async (ctx, { body }) => answer(await credits.execute(ownerOf(body), adjustOp(body, meta(ctx)))),
  });
  defineRoute(app, deps, {
    ...money(
      '/v1/holds',
      OPS.hold,
      'Reserve credits for later capture (service). user_id with workspace_id: a hold on the pool for that member (counts against their spend cap until it resolves)',
      { 201: Hold, 403: ErrorResponse },
    ),
    body: HoldBody,
    handler: async (ctx, { body }) => answer(await credits.execute(payerOf(body).owner, holdOp(body, meta(ctx)))),
  });
  defineRoute(app, deps, {
    ...money('/v1/holds/:id/capture', OPS.capture, 'Capture a hold (≤ held; the rest is released)', { 200: Hold }),
    params: Type.Object({ id: IdParam }),
    body: CaptureBody,
    optionalBody: true,
    handler: async (ctx, { params, body }) => answer(await credits.executeOnHold(params.id, captureOp(params.id, body, meta(ctx)), expectedAccountOf(body))),
  });
  defineRoute(app, deps, {
    ...money('/v1/holds/:id/release', OPS.release, 'Release a hold', { 200: Hold }),
    params: Type.Object({ id: IdParam }),
    body: ReleaseBody,
    optionalBody: true,
    handler: async (ctx, { params, body }) => answer(await credits.executeOnHold(params.id, releaseOp(params.id, meta(ctx)), expectedAccountOf(body))),
  });

  // Reads: the service, the user themself, or a workspace's members. RLS checks it again.
  const readOwner = async (db: Executor, principal: Principal, owner: Owner) => {
    if ('userId' in owner) assertSelfOrService(principal, owner.userId);
    else await workspaces.get(db, principal, owner.workspaceId);
  };

  for (const kind of ['users', 'workspaces'] as const) {
    const ownerFor = (id: string): Owner => (kind === 'users' ? { userId: id } : { workspaceId: id });
    const tags = ['credits'];
    defineRoute(app, deps, {
      method: 'GET',
      url: `/v1/${kind}/:id/balance`,
      summary: kind === 'users' ? "A user's balance, held and available credits, and grants" : "A workspace pool's balance",
      tags,
      auth: 'any',
      scope: 'credits:read',
      params: Type.Object({ id: IdParam }),
      response: { 200: Balance, 404: ErrorResponse },
      handler: async (ctx, { params }) => {
        const owner = ownerFor(params.id);
        await readOwner(ctx.db, ctx.principal, owner);
        return ok(await credits.balance(ctx.db, owner));
      },
    });
    defineRoute(app, deps, {
      method: 'GET',
      url: `/v1/${kind}/:id/transactions`,
      summary: 'The ledger, newest first',
      tags,
      auth: 'any',
      scope: 'credits:read',
      params: Type.Object({ id: IdParam }),
      query: Type.Object(
        { ...ListQuery.properties, type: Type.Optional(Type.Union(ENTRY_TYPES.map((t) => Type.Literal(t)))) },
        { additionalProperties: false },
      ),
      response: { 200: listOf(Transaction), 404: ErrorResponse },
      handler: async (ctx, { params, query }) => {
        const owner = ownerFor(params.id);
        await readOwner(ctx.db, ctx.principal, owner);
        const page = pageRequest(query);
        const rows = await credits.transactions(ctx.db, owner, page, query.type);
        return ok(toPage(rows, page.limit, (r) => transactionBody(entryFromRow(r))));
      },
    });
    defineRoute(app, deps, {
      method: 'GET',
      url: `/v1/${kind}/:id/holds`,
      summary: 'Holds, newest first',
      tags: ['holds'],
      auth: 'any',
      scope: 'credits:read',
      params: Type.Object({ id: IdParam }),
      query: Type.Object(
        { ...ListQuery.properties, status: Type.Optional(Type.Union(HOLD_STATUSES.map((s) => Type.Literal(s)))) },
        { additionalProperties: false },
      ),
      response: { 200: listOf(Hold), 404: ErrorResponse },
      handler: async (ctx, { params, query }) => {
        const owner = ownerFor(params.id);
        await readOwner(ctx.db, ctx.principal, owner);
        const page = pageRequest(query);
        const rows = await credits.holds(ctx.db, owner, page, query.status);
        return ok(toPage(rows, page.limit, (r) => holdBody(holdFromRow(r))));
      },
    });
  }

  // The low-balance threshold (credits.low webhook; docs/webhooks-out.md), per user or workspace pool.
  for (const kind of ['users', 'workspaces'] as const) {
    defineRoute(app, deps, {
      method: 'PUT',
      url: `/v1/${kind}/:id/low-balance-threshold`,
      summary: 'Set the balance below which the account is low: credits.low is told once per downward crossing (service; null = the default)',
      tags: ['credits'],
      auth: 'service',
      params: Type.Object({ id: IdParam }),
      body: Type.Object({ threshold: Type.Union([Type.Integer({ minimum: 0, maximum: 1_000_000_000_000 }), Type.Null()]) }, { additionalProperties: false }),
      response: { 200: LowThreshold, 400: ErrorResponse, 404: ErrorResponse },
      handler: async (ctx, { params, body }) => ok(await credits.setLowThreshold(ctx.db, kind === 'users' ? { userId: params.id } : { workspaceId: params.id }, body.threshold)),
    });
  }

  defineRoute(app, deps, {
    method: 'GET',
    url: '/v1/holds/:id',
    summary: 'A hold',
    tags: ['holds'],
    auth: 'any',
    scope: 'credits:read',
    params: Type.Object({ id: IdParam }),
    response: { 200: Hold, 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      const hold = await credits.hold(ctx.db, params.id);
      if (hold.userId) assertSelfOrService(ctx.principal, hold.userId);
      else if (hold.workspaceId) await workspaces.get(ctx.db, ctx.principal, hold.workspaceId);
      return ok(holdBody(hold));
    },
  });
}
