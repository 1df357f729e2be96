import { type TLiteral, type TSchema, type TUnion, Type } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { Principal } from '../../core/principal.js';
import { IdParam, ListQuery } from '../../core/schemas.js';
import { canWrite, type ProjectRole } from '../projects/projects.js';
import { projectFind } from '../projects/projects.repository.js';
import type { ProjectsService } from '../projects/projects.service.js';
import { memberRole } from '../workspaces/workspaces.repository.js';

/** A closed union of string literals as a schema, typed as the union itself. */
export function literals<const T extends readonly string[]>(values: T): TUnion<TLiteral<T[number]>[]> {
  return Type.Union(values.map((v) => Type.Literal(v))) as unknown as TUnion<TLiteral<T[number]>[]>;
}
export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
export const Str = (max: number, min = 1) => Type.String({ minLength: min, maxLength: max });
export const BigText = Type.String({ maxLength: 1_048_576 });

/** Every IDE list: `limit`, `cursor`, the resource's filters, and a creation-time window. */
export function listQuery<P extends Record<string, TSchema>>(filters: P) {
  return Type.Object(
    {
      ...ListQuery.properties,
      ...filters,
      created_after: Type.Optional(Type.String({ format: 'date-time' })),
      created_before: Type.Optional(Type.String({ format: 'date-time' })),
    },
    { additionalProperties: false },
  );
}
export const ProjectParam = Type.Object({ id: IdParam });
export const ChildParam = Type.Object({ id: IdParam, rid: IdParam });

/** The caller's user id (null for the service). */
export const userOf = (p: Principal): string | null => (p.kind === 'user' ? p.userId : null);

/**
 * Project access for the IDE resources: members read, owner/admin/member write, anyone else finds
 * nothing (404, the same answer as a project that does not exist). RLS checks the same again.
 */
export class IdeAccess {
  constructor(private readonly projects: ProjectsService) {}

  async read(db: Executor, principal: Principal, projectId: string): Promise<ProjectRole> {
    return (await this.projects.access(db, principal, projectId)).role;
  }

  async write(db: Executor, principal: Principal, projectId: string): Promise<ProjectRole> {
    const { role } = await this.projects.access(db, principal, projectId);
    if (!canWrite(role)) throw errors.forbidden('Viewers can read this project but not change it');
    return role;
  }

  /**
   * Whose row a new one is: a user's own, or — for the service — the `user_id` it names, which
   * must be able to see the project.
   */
  async actor(db: Executor, principal: Principal, projectId: string, named: string | undefined): Promise<string | null> {
    if (principal.kind === 'user') {
      if (named !== undefined && named !== principal.userId) throw errors.forbidden('You can only act as yourself');
      return principal.userId;
    }
    if (named === undefined) return null;
    const project = await projectFind(db, projectId);
    const member = project && (project.user_id === named || (project.workspace_id !== null && (await memberRole(db, project.workspace_id, named)) !== null));
    if (!member) throw errors.invalidRequest('user_id must be a member of the project', { field: 'body.user_id' });
    return named;
  }
}

/**
 * The caller's standing on a row authored by `author` (a terminal session, a code execution):
 * `author` for its own user and the service (which reports for every runner); `moderator` for the
 * project's owner or a workspace owner/admin, who may end the row or delete it but never write
 * what its runner reports; anyone else is refused (403). Migration 0036 holds the same under RLS.
 */
export function standing(principal: Principal, role: ProjectRole, author: string | null, what: string): 'author' | 'moderator' {
  const me = userOf(principal);
  if (me === null || (author !== null && author === me)) return 'author';
  if (role === 'owner' || role === 'admin') return 'moderator';
  throw errors.forbidden(`Only the member who started this ${what} (or an owner or admin, to end it) may change it`);
}

/** A unique-index refusal from PostgreSQL (or PGlite). */
export const isUniqueViolation = (err: unknown): boolean => (err as { code?: string }).code === '23505';

export const time = (s: string | undefined): Date | undefined => (s === undefined ? undefined : new Date(s));
