import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import { errors } from '../../core/errors.js';
import { validateBody } from '../../core/validation.js';
import { ListQuery } from '../../core/schemas.js';
import { pageRequest, toPage } from '../../core/paging.js';
import { created, defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';
import { IdParam, listOf } from '../../core/schemas.js';
import {
  CallbackAnswer,
  CallbackBody,
  CALLBACK_EVENTS,
  CancelJobBody,
  CompleteJobBody,
  CreateJobBody,
  FailJobBody,
  Job,
  JOB_STATUSES,
  jobToApi,
  StartJobBody,
} from './jobs.js';
import { JobsService } from './jobs.service.js';
import { SIGNATURE_HEADER, verifyCallback } from './jobs.signature.js';

const JobParams = Type.Object({ id: IdParam });
const tags = ['jobs'];

export interface CallbackConfig {
  /** The secret a job's provider signs its callbacks with (its own, or the global one). */
  secretFor: (provider: string) => string;
  toleranceSeconds: number;
  now: () => Date;
}

export async function registerJobRoutes(app: FastifyInstance, deps: RouteDeps, jobs: JobsService, callback: CallbackConfig): Promise<void> {
  defineRoute(app, deps, {
    method: 'POST', url: '/v1/jobs',
    summary: "Create a job and hold its cost (402 and no job when it cannot be held); a workspace pool pays with workspace_id or a workspace's project_id (403 for a viewer)",
    tags,
    auth: 'service', idempotency: 'required', body: CreateJobBody,
    response: { 201: Job, 400: ErrorResponse, 402: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse, 422: ErrorResponse },
    handler: async (ctx, { body }) => created(jobToApi(await jobs.create(ctx.db, body, ctx.requestId))),
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/jobs/:id/start', summary: 'Mark a job processing', tags,
    auth: 'service', params: JobParams, body: StartJobBody, optionalBody: true,
    response: { 200: Job, 404: ErrorResponse },
    handler: async (ctx, { params, body }) =>
      ok(jobToApi(await jobs.apply(ctx.db, params.id, 'start', body.external_id !== undefined ? { externalId: body.external_id } : {}, ctx.requestId))),
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/jobs/:id/complete', summary: 'Complete a job: capture its actual cost (≤ held), release the rest', tags,
    auth: 'service', params: JobParams, body: CompleteJobBody, optionalBody: true,
    response: { 200: Job, 404: ErrorResponse },
    handler: async (ctx, { params, body }) =>
      ok(jobToApi(await jobs.apply(ctx.db, params.id, 'complete', JobsService.completeInput(body), ctx.requestId))),
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/jobs/:id/fail', summary: 'Fail a job: release its hold', tags,
    auth: 'service', params: JobParams, body: FailJobBody,
    response: { 200: Job, 404: ErrorResponse },
    handler: async (ctx, { params, body }) =>
      ok(jobToApi(await jobs.apply(ctx.db, params.id, 'fail', { error: body.error, ...(body.tokens_used !== undefined ? { tokensUsed: body.tokens_used } : {}) }, ctx.requestId))),
  });

  defineRoute(app, deps, {
    method: 'POST', url: '/v1/jobs/:id/cancel', summary: 'Cancel a job: release its hold', tags,
    auth: 'service', params: JobParams, body: CancelJobBody, optionalBody: true,
    response: { 200: Job, 404: ErrorResponse },
    handler: async (ctx, { params, body }) =>
      ok(jobToApi(await jobs.apply(ctx.db, params.id, 'cancel', body.reason !== undefined ? { error: body.reason } : {}, ctx.requestId))),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/jobs/:id', summary: 'Get a job (the service, or its user, read-only)', tags,
    auth: 'any', scope: 'jobs:read', params: JobParams,
    response: { 200: Job, 404: ErrorResponse },
    handler: async (ctx, { params }) => ok(jobToApi(await jobs.get(ctx.db, ctx.principal, params.id))),
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/users/:id/jobs', summary: "List a user's jobs, newest first", tags,
    auth: 'any', scope: 'jobs:read', params: JobParams,
    query: Type.Object(
      { ...ListQuery.properties, status: Type.Optional(Type.Union(JOB_STATUSES.map((s) => Type.Literal(s)))) },
      { additionalProperties: false },
    ),
    response: { 200: listOf(Job), 404: ErrorResponse },
    handler: async (ctx, { params, query }) => {
      const page = pageRequest(query);
      return ok(toPage(await jobs.listForUser(ctx.db, ctx.principal, params.id, page, query.status), page.limit, jobToApi));
    },
  });

  defineRoute(app, deps, {
    method: 'GET', url: '/v1/jobs', summary: 'List every job, newest first, by status or user (service)', tags,
    auth: 'service',
    query: Type.Object(
      {
        ...ListQuery.properties,
        status: Type.Optional(Type.Union(JOB_STATUSES.map((s) => Type.Literal(s)))),
        user_id: Type.Optional(IdParam),
      },
      { additionalProperties: false },
    ),
    response: { 200: listOf(Job) },
    handler: async (ctx, { query }) => {
      const page = pageRequest(query);
      const filter = { ...(query.status ? { status: query.status } : {}), ...(query.user_id ? { userId: query.user_id } : {}) };
      return ok(toPage(await jobs.listAll(ctx.db, page, filter), page.limit, jobToApi));
    },
  });

  // The provider callback is verified on its raw bytes, before the body is parsed or validated: its
  // own plugin context keeps the JSON body as a Buffer, so no other route pays for (or sees) it.
  await app.register(async (child) => {
    child.removeContentTypeParser('application/json');
    child.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    const throttle = deps.throttles?.callbackFailures ?? null;
    /** A stranger's failure: counted per address (429 once spent), then refused as it is. */
    const refuse = async (request: FastifyRequest, err: Error): Promise<never> => {
      const spent = throttle ? await throttle.fail(request) : null;
      throw spent?.exceeded && throttle ? throttle.limited(spent.retryAfter) : err;
    };
    defineRoute(child, deps, {
      method: 'POST', url: '/v1/jobs/:id/callback',
      summary:
        `A provider's signed job callback (${SIGNATURE_HEADER}: t=…,v1=HMAC-SHA256 of "t.<job id>.<raw body>", docs/jobs.md); ` +
        'body {event: started|completed|failed|canceled, external_id?, output?, result_url?, cost?, tokens_used?, error?}; repeats are acknowledged',
      tags,
      auth: 'none', runAsOwner: true, idempotency: 'none', params: JobParams,
      response: { 200: CallbackAnswer, 404: ErrorResponse, 409: ErrorResponse, 429: ErrorResponse },
      handler: async (ctx, { params, request }) => {
        // Over its failure budget: 429 before the job is even looked up.
        await throttle?.check(request);
        const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        const target = await jobs.callbackTarget(ctx.db, params.id);
        if (!target) return refuse(request, errors.notFound('Job', params.id));
        const header = request.headers[SIGNATURE_HEADER];
        const check = verifyCallback(callback.secretFor(target.provider), Array.isArray(header) ? header[0] : header, target.id, raw, callback.now(), callback.toleranceSeconds);
        if (!check.ok) return refuse(request, errors.invalidRequest(check.reason, { header: SIGNATURE_HEADER }));
        // Signed by the job's provider: only now is the body read.
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw.toString('utf8'));
        } catch {
          throw errors.invalidRequest('Body is not valid JSON');
        }
        const invalid = validateBody(CallbackBody, parsed);
        if (invalid) throw errors.invalidRequest(invalid);
        const body = parsed as Static<typeof CallbackBody>;
        const event = CALLBACK_EVENTS[body.event];
        const input = {
          ...(body.external_id !== undefined ? { externalId: body.external_id } : {}),
          ...(body.output !== undefined ? { output: body.output } : {}),
          ...(body.result_url !== undefined ? { resultUrl: body.result_url } : {}),
          ...(body.cost !== undefined ? { cost: body.cost } : {}),
          ...(body.tokens_used !== undefined ? { tokensUsed: body.tokens_used } : {}),
          ...(body.error !== undefined ? { error: body.error } : {}),
        };
        const result = await jobs.callback(ctx.db, target.id, event, input, ctx.requestId);
        return ok({ job: jobToApi(result.job), applied: result.applied });
      },
    });
  });
}
