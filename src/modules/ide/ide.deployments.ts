import { Type } from 'typebox';
import { IdParam, iso, isoOrNull, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import { DEPLOYMENT_STATUSES, ENVIRONMENTS } from './ide.lifecycles.js';
import { BigText, literals, Nullable, Str } from './ide.js';
import type { IdeRow } from './ide.repository.js';

export const Deployment = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), environment: literals(ENVIRONMENTS), status: literals(DEPLOYMENT_STATUSES),
    commit_sha: Nullable(Type.String()), branch: Nullable(Type.String()), deploy_url: Nullable(Type.String()), logs: Nullable(Type.String()),
    logs_url: Nullable(Type.String()), build_time_ms: Nullable(Type.Integer()), deployed_by: Nullable(Type.String()), deployed_at: NullableTimestamp,
    finished_at: NullableTimestamp, created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'Deployment' },
);

const Url = Type.String({ minLength: 1, maxLength: 2048, pattern: '^https?://' });

export const CreateDeploymentBody = Type.Object(
  {
    environment: literals(ENVIRONMENTS),
    commit_sha: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{4,64}$' })),
    branch: Type.Optional(Str(255)),
    logs_url: Type.Optional(Url),
    /** Who deploys, when the service starts it for a member. */
    user_id: Type.Optional(IdParam),
  },
  { additionalProperties: false },
);

/** pending → building → deploying → success, or failed / canceled on the way; a final one is not changed. */
export const UpdateDeploymentBody = Type.Object(
  {
    status: Type.Optional(literals(DEPLOYMENT_STATUSES)),
    deploy_url: Type.Optional(Url),
    logs: Type.Optional(BigText),
    logs_url: Type.Optional(Url),
    build_time_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
  },
  { additionalProperties: false },
);

export const deploymentToApi = (r: IdeRow<'deployments'>) => ({
  id: r.id, project_id: r.project_id, environment: r.environment as (typeof ENVIRONMENTS)[number],
  status: r.status as (typeof DEPLOYMENT_STATUSES)[number], commit_sha: r.commit_sha, branch: r.branch,
  deploy_url: r.deploy_url, logs: r.logs, logs_url: r.logs_url,
  build_time_ms: r.build_time_ms, deployed_by: r.deployed_by, deployed_at: isoOrNull(r.deployed_at),
  finished_at: isoOrNull(r.finished_at), created_at: iso(r.created_at), updated_at: iso(r.updated_at),
});
