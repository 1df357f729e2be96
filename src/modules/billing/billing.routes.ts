import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { assertSelfOrService } from '../../core/principal.js';
import { errors } from '../../core/errors.js';
import { ListQuery } from '../../core/schemas.js';
import { pageRequest, toPage } from '../../core/paging.js';
import { created, defineRoute, ok, type Reply, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { IdParam, listOf } from '../../core/schemas.js';
import type { CatalogService } from './billing.catalog.service.js';
import type { GuardsService } from './billing.guards.service.js';
import {
  BatchResult,
  CheckBody,
  CheckResult,
  CostModel,
  CostModelBody,
  CostModelUpdateBody,
  EventBatchBody,
  EventBody,
  EventResult,
  eventAnswer,
  Guard,
  GuardBody,
  OverageCharge,
  OverageStatusBody,
  Plan,
  PlanCreateBody,
  PlanUpdateBody,
  Subscription,
  SubscriptionCancelBody,
  SubscriptionChangeBody,
  SubscriptionCreateBody,
  SubscriptionUpdateBody,
  UsageCounter,
  usageCounterOf,
} from './billing.js';
import { usageCounterList, usageEventPage } from './billing.reports.repository.js';
import type { SubscriptionsService } from './billing.subscriptions.service.js';
import { type EventOutcome, USAGE_OPERATIONS, type UsageService } from './billing.usage.service.js';
import { httpAnswers, replyOf } from '../../http/answers.js';
import { done } from '../idempotency/idempotency.js';
import { must } from '../../lib/must.js';

export interface BillingServices {
  catalog: CatalogService;
  subscriptions: SubscriptionsService;
  usage: UsageService;
  guards: GuardsService;
}

const Id = Type.Object({ id: IdParam });
const CreditClassList = Type.Object(
  { data: Type.Array(Type.Object({ name: Type.String({ description: 'A class name, as plans, cost models and grants spell it' }) }, { title: 'CreditClass' })) },
  { title: 'CreditClassList' },
);
const MetricParam = Type.Object({ metric: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }) });
const IncludeInactive = Type.Object({ include_inactive: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
const errs = { 400: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse };
const moneyErrs = { ...errs, 402: ErrorResponse, 422: ErrorResponse, 429: ErrorResponse };

const reply = (o: EventOutcome): Reply => replyOf(o);

/** One event's answer inside a batch: its status and the event, or its status and the error. */
function batchItem(o: EventOutcome) {
  const a = httpAnswers.encode(o);
  return a.status < 300 ? { status: a.status, event: a.body } : { status: a.status, error: (a.body as { error: unknown }).error };
}

export function registerBillingRoutes(app: FastifyInstance, deps: RouteDeps, b: BillingServices): void {
  // ---- plans ---------------------------------------------------------------------------------
  const plans = ['plans'];
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/plans', summary: 'Create a plan: allowances per class and window, rollover, prices, PAYG', tags: plans,
    auth: 'service', body: PlanCreateBody, response: { 201: Plan, ...errs },
    handler: async (ctx, { body }) => created(await b.catalog.createPlan(ctx.db, body)),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/plans', summary: 'List plans (active ones; the service may include inactive)', tags: plans,
    auth: 'any', scope: 'billing:read', query: IncludeInactive, response: { 200: Type.Object({ data: Type.Array(Plan) }) },
    handler: async (ctx, { query }) =>
      ok({ data: await b.catalog.listPlans(ctx.db, { includeInactive: ctx.principal.kind === 'service' && query.include_inactive === true }) }),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/plans/:id', summary: 'Get a plan by id or slug', tags: plans,
    auth: 'any', scope: 'billing:read', params: Id, response: { 200: Plan, 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      const plan = await b.catalog.getPlan(ctx.db, params.id);
      if (!plan) throw errors.notFound('Plan', params.id);
      return ok(plan);
    },
  });
  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/plans/:id', summary: 'Update a plan (allowance changes apply from the next window)', tags: plans,
    auth: 'service', params: Id, body: PlanUpdateBody, response: { 200: Plan, ...errs },
    handler: async (ctx, { params, body }) => ok(await b.catalog.updatePlan(ctx.db, params.id, body)),
  });

  // ---- credit classes --------------------------------------------------------------------------
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/credit-classes',
    summary: 'The configured credit classes (TALLY_CREDIT_CLASSES): the only classes a plan allowance or a cost model may name',
    tags: plans, auth: 'any', scope: 'billing:read', response: { 200: CreditClassList },
    handler: async () => ok({ data: b.catalog.creditClasses().map((name) => ({ name })) }),
  });

  // ---- cost models ---------------------------------------------------------------------------
  const models = ['cost models'];
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/cost-models', summary: 'Create the cost model of a metric (formula over quantity, complexity, base_rate)',
    tags: models, auth: 'service', body: CostModelBody, response: { 201: CostModel, ...errs },
    handler: async (ctx, { body }) => created(await b.catalog.createCostModel(ctx.db, body)),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/cost-models', summary: 'List cost models', tags: models,
    auth: 'any', scope: 'billing:read', query: IncludeInactive, response: { 200: Type.Object({ data: Type.Array(CostModel) }) },
    handler: async (ctx, { query }) =>
      ok({ data: await b.catalog.listCostModels(ctx.db, { includeInactive: ctx.principal.kind === 'service' && query.include_inactive === true }) }),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/cost-models/:metric', summary: 'Get the cost model of a metric', tags: models,
    auth: 'any', scope: 'billing:read', params: MetricParam, response: { 200: CostModel, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await b.catalog.getCostModel(ctx.db, params.metric)),
  });
  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/cost-models/:metric', summary: 'Update a cost model', tags: models,
    auth: 'service', params: MetricParam, body: CostModelUpdateBody, response: { 200: CostModel, ...errs },
    handler: async (ctx, { params, body }) => ok(await b.catalog.updateCostModel(ctx.db, params.metric, body)),
  });

  // ---- subscriptions -------------------------------------------------------------------------
  const subs = ['subscriptions'];
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/subscriptions',
    summary: 'Subscribe a user to a plan (service; a user may subscribe themselves to a free plan only)', tags: subs,
    auth: 'any', scope: 'billing:write', body: SubscriptionCreateBody, response: { 201: Subscription, ...moneyErrs },
    handler: async (ctx, { body }) => created(await b.subscriptions.create(ctx.db, ctx.principal, body)),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/subscriptions/:id', summary: 'Get a subscription (service, or its user)', tags: subs,
    auth: 'any', scope: 'billing:read', params: Id, response: { 200: Subscription, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await b.subscriptions.getFor(ctx.db, ctx.principal, params.id)),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/users/:id/subscriptions', summary: "A user's subscriptions, newest first", tags: subs,
    auth: 'any', scope: 'billing:read', params: Id, response: { 200: Type.Object({ data: Type.Array(Subscription) }), 403: ErrorResponse },
    handler: async (ctx, { params }) => {
      assertSelfOrService(ctx.principal, params.id);
      return ok({ data: await b.subscriptions.listForUser(ctx.db, params.id) });
    },
  });
  defineRoute(app, deps, {
    method: 'PATCH', url: '/v1/subscriptions/:id', summary: 'Update pay-as-you-go or metadata (service)', tags: subs,
    auth: 'service', params: Id, body: SubscriptionUpdateBody, response: { 200: Subscription, ...errs },
    handler: async (ctx, { params, body }) => ok(await b.subscriptions.update(ctx.db, params.id, body)),
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/subscriptions/:id/cancel',
    summary: 'Cancel at period end (default) or now (service, or its user)', tags: subs,
    auth: 'any', scope: 'billing:write', params: Id, body: SubscriptionCancelBody, optionalBody: true, response: { 200: Subscription, ...moneyErrs },
    handler: async (ctx, { params, body }) => ok(await b.subscriptions.cancel(ctx.db, ctx.principal, params.id, body.at_period_end ?? true)),
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/subscriptions/:id/change-plan',
    summary: 'Upgrade or downgrade now; allowances prorated in credits (docs/billing.md)', tags: subs,
    auth: 'service', params: Id, body: SubscriptionChangeBody, response: { 200: Subscription, ...moneyErrs },
    handler: async (ctx, { params, body }) =>
      ok(await b.subscriptions.changePlan(ctx.db, params.id, body.plan_id, body.billing_interval)),
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/subscriptions/:id/activate', summary: 'Mark paid: trialing or past_due → active (service)', tags: subs,
    auth: 'service', params: Id, optionalBody: true, body: Type.Object({}, { additionalProperties: false }), response: { 200: Subscription, ...moneyErrs },
    handler: async (ctx, { params }) => ok(await b.subscriptions.activate(ctx.db, params.id)),
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/subscriptions/:id/past-due', summary: 'Mark a payment failed: → past_due (service)', tags: subs,
    auth: 'service', params: Id, optionalBody: true, body: Type.Object({}, { additionalProperties: false }), response: { 200: Subscription, ...errs },
    handler: async (ctx, { params }) => ok(await b.subscriptions.markPastDue(ctx.db, params.id)),
  });

  // ---- usage ---------------------------------------------------------------------------------
  const usage = ['usage'];
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/events', summary: "Record a usage event: priced, charged once per action_hash (to the user, or with workspace_id to the workspace's pool for that member)", tags: usage,
    auth: 'service', idempotency: 'operation', operation: USAGE_OPERATIONS.event, body: EventBody,
    response: { 201: EventResult, 200: EventResult, ...moneyErrs },
    handler: async (ctx, { body }) =>
      reply(await b.usage.record([body], { requestId: ctx.requestId, idem: ctx.idempotency ?? null, respond: (o) => must(o[0], 'one event has one outcome') })),
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/events/batch', summary: 'Record up to 1,000 usage events, one answer each (grouped into transactions by user)', tags: usage,
    auth: 'service', idempotency: 'operation', operation: USAGE_OPERATIONS.events, body: EventBatchBody,
    response: { 200: BatchResult, ...moneyErrs },
    handler: async (ctx, { body }) =>
      reply(
        await b.usage.record(body.events, {
          requestId: ctx.requestId,
          idem: ctx.idempotency ?? null,
          respond: (outcomes) => done({ results: outcomes.map(batchItem) }),
        }),
      ),
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/check', summary: 'What an event would do now (allowed, remaining, breakdown), charging nothing', tags: usage,
    auth: 'service', idempotency: 'none', readOnly: true, body: CheckBody, response: { 200: CheckResult, 400: ErrorResponse, 404: ErrorResponse },
    handler: async (_ctx, { body }) => ok(await b.usage.check(body)),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/users/:id/usage', summary: "A user's usage counters per metric and window", tags: usage,
    auth: 'any', scope: 'billing:read', params: Id,
    query: Type.Object(
      {
        window: Type.Optional(Type.Union([Type.Literal('day'), Type.Literal('month'), Type.Literal('period')])),
        metric: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' })),
        since: Type.Optional(Type.String({ format: 'date-time' })),
      },
      { additionalProperties: false },
    ),
    response: { 200: Type.Object({ data: Type.Array(UsageCounter) }), 403: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      assertSelfOrService(ctx.principal, params.id);
      const rows = await usageCounterList(ctx.db, params.id, {
        window: query.window ?? 'day',
        metric: query.metric,
        since: query.since ? new Date(query.since) : undefined,
      });
      return ok({ data: rows.map(usageCounterOf) });
    },
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/users/:id/events', summary: "A user's usage events, newest first", tags: usage,
    auth: 'any', scope: 'billing:read', params: Id, query: ListQuery, response: { 200: listOf(EventResult), 403: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      assertSelfOrService(ctx.principal, params.id);
      const page = pageRequest(query);
      return ok(toPage(await usageEventPage(ctx.db, params.id, page), page.limit, (r) => eventAnswer(r)));
    },
  });

  // ---- budget guards and overage -------------------------------------------------------------
  const money = ['budget'];
  defineRoute(app, deps, {
    method: 'PUT', url: '/v1/users/:id/budget-guard', summary: "Set a user's monthly budget cap on usage spend (service)", tags: money,
    auth: 'service', params: Id, body: GuardBody, response: { 200: Guard, ...errs },
    handler: async (ctx, { params, body }) => ok(await b.guards.put(ctx.db, params.id, body)),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/users/:id/budget-guard', summary: "A user's budget guard and this month's spend", tags: money,
    auth: 'any', scope: 'billing:read', params: Id, response: { 200: Guard, 403: ErrorResponse, 404: ErrorResponse },
    handler: async (ctx, { params }) => {
      assertSelfOrService(ctx.principal, params.id);
      return ok(await b.guards.get(ctx.db, params.id));
    },
  });
  defineRoute(app, deps, {
    method: 'DELETE', url: '/v1/users/:id/budget-guard', summary: "Remove a user's budget guard (service)", tags: money,
    auth: 'service', params: Id, response: { 200: Type.Object({ id: Type.String(), deleted: Type.Literal(true) }), 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(await b.guards.remove(ctx.db, params.id)),
  });
  defineRoute(app, deps, {
    method: 'GET', url: '/v1/users/:id/overage-charges', summary: "A user's overage charges, newest first", tags: money,
    auth: 'any', scope: 'billing:read', params: Id, query: ListQuery, response: { 200: listOf(OverageCharge), 403: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      assertSelfOrService(ctx.principal, params.id);
      return ok(await b.guards.listOverage(ctx.db, params.id, pageRequest(query)));
    },
  });
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/overage-charges/:id/status', summary: 'Move an overage charge: pending → invoiced → paid / waived (service)',
    tags: money, auth: 'service', params: Id, body: OverageStatusBody, response: { 200: OverageCharge, ...errs },
    handler: async (ctx, { params, body }) => ok(await b.guards.setOverageStatus(ctx.db, params.id, body.status)),
  });
}
