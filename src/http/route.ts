import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { NO_DEADLINE } from './deadline.js';
import { type Static, type TSchema, Type } from 'typebox';
import type { Db } from '../db/database.js';
import type { Scope } from '../modules/api-keys/api-keys.scopes.js';
import type { SecretBox } from '../lib/secret-box.js';
import type { Invalidations } from '../lib/invalidations.js';
import type { Authenticator } from './authenticate.js';
import { inRequestTransaction, setRequestRole } from '../db/request-role.js';
import { type RequestContext } from '../core/context.js';
import { DomainError, errors } from '../core/errors.js';
import { errorBody, statusOf } from './errors.js';
import { type IdempotencyScope, type Operation, type Params, requestHash } from '../modules/idempotency/idempotency.js';
import { idempotencyClaim, idempotencyComplete, idempotencyRecordFailure } from '../modules/idempotency/idempotency.repository.js';
import { legacyRequestHash } from '../modules/idempotency/idempotency.legacy.js';
import { hasScope, type Principal, principalKey } from '../core/principal.js';
import type { Throttles } from './rate-limits.js';
import { ErrorResponse } from './schemas.js';

export interface Reply<T = unknown> {
  status: number;
  body: T;
  headers?: Record<string, string>;
}

export const ok = <T>(body: T): Reply<T> => ({ status: 200, body });
export const created = <T>(body: T): Reply<T> => ({ status: 201, body });

type Empty = ReturnType<typeof Type.Object<{}>>;

export interface RouteDef<B extends TSchema, P extends TSchema, Q extends TSchema> {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  /**
   * The body is a stream the handler reads itself (an upload of any size): no per-request
   * deadline cuts it (TALLY_REQUEST_DEADLINE_MS would end a large upload half-way), and the route
   * must use `transaction: 'none'` so no transaction stays open while bytes arrive.
   */
  streamed?: boolean;
  url: string;
  summary: string;
  tags: string[];
  /** Who may call: nobody signed in, the service only, signed-in users only, or either. */
  auth: 'none' | 'service' | 'user' | 'any';
  /** The API-key scope a user's key must hold. */
  scope?: Scope;
  /**
   * POSTs accept Idempotency-Key ('optional'); some require it ('required'). Both: the wrapper
   * opens the request transaction and records the key in it. 'operation': required, and recorded
   * by the operation itself, with its effect, in the transaction it opens (the ledger batches many
   * requests into one transaction and writes each key with its movement; usage records its events
   * under their action hashes): the wrapper opens no transaction and hands the handler the key's
   * scope (`ctx.idempotency`). Service-only. Those services tell in-process caches what they
   * changed (src/lib/invalidations.ts); after every other write route the wrapper tells them
   * everything may have changed.
   */
  idempotency?: 'optional' | 'required' | 'none' | 'operation';
  /**
   * The operation its keys are recorded under (the SDK and other modules name the same one, so a
   * key is one key whichever way it arrives). Default: `<METHOD> <url pattern>`.
   */
  operation?: Operation;
  /**
   * A POST that changes nothing (POST /v1/check): run like a GET — no request transaction for the
   * service, no Idempotency-Key, no cache invalidation.
   */
  readOnly?: boolean;
  /**
   * The handler gets the database itself, as the owning role, and opens its own short
   * transactions. Only for routes whose caller owns nothing yet (sign-up, login): their service
   * layer is the whole check, and slow work (password hashing) stays outside any transaction.
   */
  runAsOwner?: boolean;
  /**
   * 'request' (default): the wrapper opens the request transaction (and records the key in it).
   * 'none': the handler gets the database itself and the caller's principal, and opens its own short
   * transactions as the caller (`inRequestTransaction`): streamed uploads and downloads, whose bytes
   * must not hold a transaction (or PGlite's one connection) open; no Idempotency-Key.
   */
  transaction?: 'request' | 'none';
  /**
   * The response carries a secret (a new API key): its idempotency record is sealed with the
   * encryption key, so replays still work but the secret is never stored in plain text.
   */
  sensitiveResponse?: boolean;
  /** The body may be left out entirely (it then validates as `{}`). */
  optionalBody?: boolean;
  body?: B;
  params?: P;
  query?: Q;
  response: Record<number, TSchema>;
  handler: (
    ctx: RequestContext,
    input: { body: Static<B>; params: Static<P>; query: Static<Q>; request: FastifyRequest },
  ) => Promise<Reply>;
}

export interface RouteDeps {
  db: Db;
  authenticator: Authenticator;
  secrets: SecretBox;
  /** Told after each write route's transaction settles (see `idempotency: 'operation'`). */
  invalidations?: Invalidations;
  /** Rate limits for strangers (src/http/rate-limits.ts); absent = none. */
  throttles?: Throttles;
}

const principals = new WeakMap<FastifyRequest, Principal>();

/** Who a request was authenticated as (once `onRequest` ran; else undefined). */
export const principalOf = (request: FastifyRequest): Principal | undefined => principals.get(request);

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * Registers a route with the shape every Tally route has: authenticate → authorize → validate
 * (Fastify, from the schema) → run the handler in the request's transaction (with idempotency)
 * → respond. Routes stay thin; the rules live in services.
 */
export function defineRoute<B extends TSchema = Empty, P extends TSchema = Empty, Q extends TSchema = Empty>(
  app: FastifyInstance,
  deps: RouteDeps,
  def: RouteDef<B, P, Q>,
): void {
  const idempotency = def.idempotency ?? (def.method === 'POST' ? 'optional' : 'none');
  if (def.runAsOwner && idempotency !== 'none') throw new Error(`${def.url}: runAsOwner routes take no Idempotency-Key`);
  if (idempotency === 'operation' && def.auth !== 'service') throw new Error(`${def.url}: operations that record their own keys are for service routes`);
  if (def.readOnly && (idempotency !== 'none' || def.method === 'GET')) throw new Error(`${def.url}: readOnly is for POSTs that take no Idempotency-Key`);
  const op: Operation = def.operation ?? { name: `${def.method} ${def.url}`, legacyPath: def.url };
  if (def.transaction === 'none' && idempotency !== 'none') throw new Error(`${def.url}: routes without a request transaction take no Idempotency-Key`);
  if (def.streamed && def.transaction !== 'none') throw new Error(`${def.url}: streamed routes open their own transactions`);
  const errorResponses: Record<number, TSchema> = { 400: ErrorResponse, 500: ErrorResponse };
  if (def.auth !== 'none') Object.assign(errorResponses, { 401: ErrorResponse, 403: ErrorResponse, 429: ErrorResponse });
  if (idempotency !== 'none') errorResponses[409] = ErrorResponse;

  app.route({
    method: def.method,
    url: def.url,
    // Streamed bodies are exempt from the request deadline on purpose; the server's
    // requestTimeout still bounds how long the body may take.
    ...(def.streamed ? { config: NO_DEADLINE } : {}),
    schema: {
      summary: def.summary,
      tags: def.tags,
      ...(def.auth !== 'none' ? { security: [{ bearer: [] }] } : {}),
      ...(idempotency !== 'none'
        ? {
            headers: Type.Object({
              'idempotency-key': idempotency !== 'optional'
                ? Type.String({ minLength: 1, maxLength: 255 })
                : Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
            }),
          }
        : {}),
      ...(def.body ? { body: def.body } : {}),
      ...(def.params ? { params: def.params } : {}),
      ...(def.query ? { querystring: def.query } : {}),
      response: { ...errorResponses, ...def.response },
    },
    // Authenticate before the body is read or validated: a stranger gets 401, not a parse error.
    onRequest: async (request: FastifyRequest) => {
      // Public routes ignore credentials entirely: a stale token must not break sign-in or health.
      if (def.auth === 'none') {
        principals.set(request, { kind: 'anon' });
        return;
      }
      const throttle = deps.throttles?.tokenFailures;
      if (!throttle) {
        const principal = await deps.authenticator.authenticate(request.headers.authorization);
        authorize(def, principal);
        principals.set(request, principal);
        return;
      }
      try {
        const principal = await deps.authenticator.authenticate(request.headers.authorization, () => throttle.check(request));
        authorize(def, principal);
        principals.set(request, principal);
      } catch (err) {
        // A stranger's failures are counted per address; spent ones get 429 before any lookup.
        if (err instanceof DomainError && err.code === 'unauthenticated') {
          const spent = await throttle.fail(request);
          if (spent.exceeded) throw throttle.limited(spent.retryAfter);
        }
        throw err;
      }
    },
    ...(def.optionalBody
      ? {
          preValidation: async (request: FastifyRequest) => {
            if (request.body === undefined || request.body === null) request.body = {};
          },
        }
      : {}),
    handler: async (request: FastifyRequest, reply: FastifyReply) => {
      const principal = principals.get(request);
      if (!principal) throw errors.internal();

      const input = {
        body: request.body as Static<B>,
        params: request.params as Static<P>,
        query: request.query as Static<Q>,
        request,
      };
      const scope = idempotencyScope(request, principal, op, idempotency, def.sensitiveResponse === true);
      if (idempotency === 'operation' || def.transaction === 'none') {
        const result = await def.handler({ principal, requestId: request.id, db: deps.db, idempotency: scope }, input);
        return send(reply, result);
      }
      // Service reads need no transaction; everything else gets one (role, claims, atomicity).
      if (def.method === 'GET' || def.readOnly) {
        if (principal.kind === 'service' || def.runAsOwner) return send(reply, await def.handler({ principal, requestId: request.id, db: deps.db }, input));
        return send(reply, await inRequestTransaction(deps.db, principal, (trx) => def.handler({ principal, requestId: request.id, db: trx }, input)));
      }
      try {
        return await runWrite(def, deps, request, reply, principal, scope, input);
      } finally {
        // Settled (committed or rolled back): caches drop what this write may have changed.
        deps.invalidations?.anythingChanged();
      }
    },
  });
}

/** A write route's handler in the request's transaction, with its Idempotency-Key. */
async function runWrite<B extends TSchema, P extends TSchema, Q extends TSchema>(
  def: RouteDef<B, P, Q>,
  deps: RouteDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  principal: Principal,
  scope: IdempotencyScope | null,
  input: { body: Static<B>; params: Static<P>; query: Static<Q>; request: FastifyRequest },
): Promise<FastifyReply> {
  if (def.runAsOwner) {
    const result = await def.handler({ principal, requestId: request.id, db: deps.db }, input);
    return send(reply, result);
  }
  try {
    const result = await inRequestTransaction(deps.db, principal, async (trx) => {
      if (scope) {
        const claim = await idempotencyClaim(trx, scope);
        if (claim.kind === 'mismatch') throw errors.idempotencyKeyReused();
        if (claim.kind === 'replay') {
          reply.header('idempotent-replayed', 'true');
          return def.sensitiveResponse ? unsealResponse(deps.secrets, scope, claim.response) : claim.response;
        }
      }
      const answer = await def.handler({ principal, requestId: request.id, db: trx }, input);
      if (scope) {
        await idempotencyComplete(trx, scope, def.sensitiveResponse ? sealResponse(deps.secrets, scope, answer) : answer);
      }
      return answer;
    }, request.id);
    return send(reply, result);
  } catch (err) {
    if (scope && err instanceof DomainError && statusOf(err.code) < 500 && err.code !== 'idempotency_key_reused') {
      const response = { status: statusOf(err.code), body: errorBody(err, request.id) };
      await deps.db.transaction().execute(async (trx) => {
        await setRequestRole(trx, principal);
        await idempotencyRecordFailure(trx, scope, response);
      });
    }
    throw err;
  }
}

function authorize(def: { auth: RouteDef<TSchema, TSchema, TSchema>['auth']; scope?: Scope }, principal: Principal): void {
  if (def.auth === 'none') return;
  if (principal.kind === 'anon') throw errors.unauthenticated();
  if (def.auth === 'service' && principal.kind !== 'service') throw errors.forbidden('This endpoint requires the service key');
  if (def.auth === 'user' && principal.kind !== 'user') throw errors.forbidden('This endpoint is for signed-in users');
  if (def.scope && !hasScope(principal, def.scope)) {
    throw errors.forbidden(`This API key lacks the "${def.scope}" scope`);
  }
}

function idempotencyScope(
  request: FastifyRequest,
  principal: Principal,
  op: Operation,
  mode: 'optional' | 'required' | 'none' | 'operation',
  sensitive: boolean,
): IdempotencyScope | null {
  if (mode === 'none') return null;
  const raw = request.headers['idempotency-key'];
  const key = Array.isArray(raw) ? raw[0] : raw;
  if (key === undefined) {
    if (mode !== 'optional') throw errors.invalidRequest('Idempotency-Key header is required', { header: 'Idempotency-Key' });
    return null;
  }
  if (!IDEMPOTENCY_KEY.test(key)) {
    throw errors.invalidRequest('Idempotency-Key must be 1–255 printable ASCII characters', { header: 'Idempotency-Key' });
  }
  const path = request.url.split('?')[0] ?? request.url;
  // A secret answer (a new API key) replays only to the credential that asked for it: keys are
  // scoped per user, and a weaker API key of the same user must not obtain a stronger key's
  // secret by replaying its creation. Another credential with the same key → 409.
  const bound = sensitive ? ` ${credentialOf(principal)}` : '';
  return {
    principal: principalKey(principal),
    key,
    userId: principal.kind === 'user' ? principal.userId : null,
    operation: op.name,
    requestHash: requestHash(`${op.name}${bound}`, (request.params ?? {}) as Params, request.body),
    // A record made before 0017 hashed the request's own method and path (idempotency.legacy.ts).
    legacyHash: legacyRequestHash(request.method, `${path}${bound}`, request.body),
  };
}

function credentialOf(principal: Principal): string {
  if (principal.kind !== 'user') return principal.kind;
  return principal.via === 'api_key' ? `api_key:${principal.keyId ?? ''}` : 'jwt';
}

/** The sealed form is bound to its (principal, key) so it cannot be replayed elsewhere. */
function sealResponse(secrets: SecretBox, scope: IdempotencyScope, response: Reply): Reply {
  return { status: response.status, body: { sealed: secrets.seal(JSON.stringify(response.body), `${scope.principal}\n${scope.key}`) } };
}

function unsealResponse(secrets: SecretBox, scope: IdempotencyScope, stored: Reply): Reply {
  const sealed = (stored.body as { sealed?: unknown } | null)?.sealed;
  if (typeof sealed !== 'string') return stored; // an error answer is stored as is
  const opened = secrets.open(sealed, `${scope.principal}\n${scope.key}`);
  if (opened === null) throw errors.unavailable('This response was sealed with a key this server no longer has');
  return { status: stored.status, body: JSON.parse(opened) as unknown };
}

function send(reply: FastifyReply, result: Reply): FastifyReply {
  if (result.headers) reply.headers(result.headers);
  if (result.status === 204) return reply.code(204).send();
  return reply.code(result.status).send(result.body);
}
