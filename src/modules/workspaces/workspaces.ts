import { Type } from 'typebox';
import type { Selectable } from 'kysely';
import type { WorkspaceMembers, Workspaces } from '../../db/database.types.js';
import { iso, JsonObject, Timestamp } from '../../core/schemas.js';

export const WORKSPACE_ROLES = ['owner', 'admin', 'member', 'viewer'] as const;
export type WorkspaceRole = (typeof WORKSPACE_ROLES)[number];

/** Roles that may manage a workspace and its roster. */
export const isManager = (role: WorkspaceRole | null): boolean => role === 'owner' || role === 'admin';

export type WorkspaceRow = Selectable<Workspaces>;
export type MemberRow = Selectable<WorkspaceMembers>;

const Slug = Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$' });
const Settings = JsonObject(100);

export const Workspace = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    slug: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    owner_id: Type.String(),
    settings: Type.Object({}, { additionalProperties: true }),
    is_active: Type.Boolean(),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { title: 'Workspace' },
);

export const Member = Type.Object(
  {
    workspace_id: Type.String(),
    user_id: Type.String(),
    role: Type.Union(WORKSPACE_ROLES.map((r) => Type.Literal(r))),
    invited_by: Type.Union([Type.String(), Type.Null()]),
    joined_at: Timestamp,
  },
  { title: 'WorkspaceMember' },
);

export const CreateWorkspaceBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 255 }),
    slug: Type.Optional(Slug),
    description: Type.Optional(Type.Union([Type.String({ maxLength: 5000 }), Type.Null()])),
    settings: Type.Optional(Settings),
    /** Required when the service creates a workspace; end users always own what they create. */
    owner_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  },
  { additionalProperties: false },
);

export const UpdateWorkspaceBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    slug: Type.Optional(Slug),
    description: Type.Optional(Type.Union([Type.String({ maxLength: 5000 }), Type.Null()])),
    settings: Type.Optional(Settings),
    is_active: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
);

const AssignableRole = Type.Union([Type.Literal('admin'), Type.Literal('member'), Type.Literal('viewer')]);

export const AddMemberBody = Type.Object(
  { user_id: Type.String({ minLength: 1, maxLength: 128 }), role: AssignableRole },
  { additionalProperties: false },
);

export const UpdateMemberBody = Type.Object({ role: AssignableRole }, { additionalProperties: false });

export function workspaceToApi(row: WorkspaceRow) {
  return {
    id: row.id,
    name: row.name,
    slug: row.slug,
    description: row.description,
    owner_id: row.owner_id,
    settings: row.settings as Record<string, unknown>,
    is_active: row.is_active,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}

export function memberToApi(row: MemberRow) {
  return {
    workspace_id: row.workspace_id,
    user_id: row.user_id,
    role: row.role as WorkspaceRole,
    invited_by: row.invited_by,
    joined_at: iso(row.joined_at),
  };
}

/** A URL-safe slug from a name, with a random tail so two "Acme" workspaces never collide. */
export function slugify(name: string, tail: string): string {
  const base = name
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '') // the accents NFKD split off: "Ünï" → "Uni", not "U-ni"
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return `${base || 'workspace'}-${tail}`.replace(/^-+/, '');
}
