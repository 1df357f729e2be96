import { Type } from 'typebox';
import { iso, isoOrNull, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import { masked } from '../secrets/secrets.js';
import { GIT_PROVIDERS, SYNC_STATUSES } from './ide.lifecycles.js';
import { literals, Nullable, Str } from './ide.js';
import type { IdeRow } from './ide.repository.js';

/** Sealed credentials are bound to their row: a ciphertext moved to another repository does not open. */
export const gitCredentialsAad = (id: string) => `git_repository:${id}`;

export const GitRepository = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), provider: literals(GIT_PROVIDERS), repo_url: Type.String(), repo_full_name: Nullable(Type.String()),
    default_branch: Type.String(), last_sync_at: NullableTimestamp, sync_status: Nullable(literals(SYNC_STATUSES)),
    /** Whether credentials are stored; they are never returned (a mask at most). */
    has_credentials: Type.Boolean(), masked_credentials: Nullable(Type.String()),
    created_by: Nullable(Type.String()), created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'GitRepository' },
);

const Url = Type.String({ minLength: 1, maxLength: 2048, pattern: '^(https?|ssh|git)://|^git@' });
const Credentials = Type.String({ minLength: 1, maxLength: 16_384 });

export const CreateGitRepositoryBody = Type.Object(
  {
    provider: literals(GIT_PROVIDERS),
    repo_url: Url,
    repo_full_name: Type.Optional(Str(255)),
    default_branch: Type.Optional(Str(255)),
    /** A token or deploy key: sealed at once, write-only. */
    credentials: Type.Optional(Credentials),
  },
  { additionalProperties: false },
);

export const UpdateGitRepositoryBody = Type.Object(
  {
    repo_url: Type.Optional(Url),
    repo_full_name: Type.Optional(Nullable(Str(255))),
    default_branch: Type.Optional(Str(255)),
    sync_status: Type.Optional(Nullable(literals(SYNC_STATUSES))),
    last_sync_at: Type.Optional(Nullable(Type.String({ format: 'date-time' }))),
    /** New credentials (sealed), or null to forget them. */
    credentials: Type.Optional(Nullable(Credentials)),
  },
  { additionalProperties: false },
);

export const gitRepositoryToApi = (r: IdeRow<'git_repositories'>) => ({
  id: r.id, project_id: r.project_id, provider: r.provider as (typeof GIT_PROVIDERS)[number], repo_url: r.repo_url,
  repo_full_name: r.repo_full_name, default_branch: r.default_branch, last_sync_at: isoOrNull(r.last_sync_at),
  sync_status: r.sync_status as (typeof SYNC_STATUSES)[number] | null, has_credentials: r.key_id !== null,
  masked_credentials: r.key_id !== null ? masked(r.credentials_hint) : null,
  created_by: r.created_by, created_at: iso(r.created_at), updated_at: iso(r.updated_at),
});
