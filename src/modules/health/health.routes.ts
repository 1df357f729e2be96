import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { Type } from 'typebox';
import type { Database } from '../../db/database.js';
import { errors } from '../../http/errors.js';
import { defineRoute, ok, type RouteDeps } from '../../http/route.js';
import { ErrorResponse } from '../../http/schemas.js';

export function registerHealthRoutes(app: FastifyInstance, deps: RouteDeps, database: Database): void {
  defineRoute(app, deps, {
    method: 'GET',
    url: '/health',
    summary: 'Liveness and which database is in use',
    tags: ['meta'],
    auth: 'none',
    runAsOwner: true,
    response: {
      200: Type.Object({ status: Type.Literal('ok'), database: Type.Union([Type.Literal('pglite'), Type.Literal('postgres')]) }),
      503: ErrorResponse,
    },
    handler: async () => {
      try {
        await sql`select 1`.execute(database.db);
      } catch {
        throw errors.unavailable('Database unreachable');
      }
      return ok({ status: 'ok' as const, database: database.kind });
    },
  });
}
