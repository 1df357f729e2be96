import { type Static, Type } from 'typebox';
import { iso, Timestamp } from '../../core/schemas.js';

/**
 * The audit log's closed list of actions (docs/audit.md). The same list is the CHECK on
 * `audit_log.action` (migrations 0028, 0040); adding one is adding it in both places.
 */
export const AUDIT_ACTIONS = [
  'user.created', 'user.updated', 'user.deactivated', 'user.reactivated', 'user.role_changed', 'user.deleted',
  'api_key.created', 'api_key.updated', 'api_key.revoked', 'api_key.deleted',
  'workspace.created', 'workspace.updated', 'workspace.deleted',
  'workspace_member.added', 'workspace_member.role_changed', 'workspace_member.updated', 'workspace_member.removed',
  'env_var.set', 'env_var.rotated', 'env_var.updated', 'env_var.deleted',
  'service_token.set', 'service_token.rotated', 'service_token.updated', 'service_token.deleted',
  'upstream.created', 'upstream.updated', 'upstream.credentials_rotated', 'upstream.deleted',
  'bucket.created', 'bucket.updated', 'bucket.deleted',
  'webhook_endpoint.created', 'webhook_endpoint.updated', 'webhook_endpoint.secret_rotated', 'webhook_endpoint.deleted',
  'plan.created', 'plan.updated', 'plan.deleted',
  'plan_allowance.created', 'plan_allowance.updated', 'plan_allowance.deleted',
  'plan_price.created', 'plan_price.updated', 'plan_price.deleted',
  'cost_model.created', 'cost_model.updated', 'cost_model.deleted',
  'credit_package.created', 'credit_package.updated', 'credit_package.deleted',
  'subscription.created', 'subscription.plan_changed', 'subscription.status_changed', 'subscription.updated', 'subscription.deleted',
  'budget_guard.created', 'budget_guard.updated', 'budget_guard.deleted',
  'spend_cap.set', 'spend_cap.updated', 'spend_cap.removed',
  'payment.created', 'payment.status_changed', 'payment.updated', 'payment.deleted',
  'credits.granted', 'credits.adjusted', 'credits.refunded', 'credits.clawed_back',
  // 0040: storage objects, IDE resources, jobs (docs/audit.md, "What is audited")
  'storage_object.deleted',
  'git_repository.created', 'git_repository.updated', 'git_repository.credentials_rotated', 'git_repository.deleted',
  'deployment.created', 'deployment.status_changed', 'deployment.updated', 'deployment.deleted',
  'job.created', 'job.completed', 'job.failed', 'job.canceled', 'job.timed_out',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export const ACTOR_KINDS = ['service', 'user', 'anon', 'system', 'provider'] as const;

/** The action names as one JSON-schema enum (a union of 70 literals is too deep for TypeBox's Static). */
export const AuditActionSchema = () => Type.Unsafe<AuditAction>(Type.String({ enum: [...AUDIT_ACTIONS] }));

const Nullable = <T extends import('typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Image = Nullable(Type.Record(Type.String(), Type.Unknown()));

export const AuditEntry = Type.Object({
  id: Type.String(),
  seq: Type.Integer({ description: 'Position in the hash chain (commit order)' }),
  at: Timestamp,
  actor: Type.Object({
    kind: Type.Union(ACTOR_KINDS.map((k) => Type.Literal(k))),
    id: Nullable(Type.String()),
    api_key_id: Nullable(Type.String()),
  }),
  action: AuditActionSchema(),
  target: Type.Object({ table: Type.String(), id: Type.String() }),
  before: Image,
  after: Image,
  request_id: Nullable(Type.String()),
  hash: Type.String({ description: 'sha256 over the previous hash and this row (docs/audit.md)' }),
});
export type AuditEntry = Static<typeof AuditEntry>;

export interface AuditRow {
  id: string;
  seq: number | string | null;
  at: Date | string;
  actor_kind: string;
  actor_id: string | null;
  api_key_id: string | null;
  action: string;
  target_table: string;
  target_id: string;
  before: unknown;
  after: unknown;
  request_id: string | null;
  hash: string | null;
}

export function auditRowToApi(r: AuditRow): AuditEntry {
  return {
    id: r.id,
    seq: Number(r.seq),
    at: iso(r.at),
    actor: { kind: r.actor_kind as AuditEntry['actor']['kind'], id: r.actor_id, api_key_id: r.api_key_id },
    action: r.action as AuditAction,
    target: { table: r.target_table, id: r.target_id },
    before: (r.before ?? null) as AuditEntry['before'],
    after: (r.after ?? null) as AuditEntry['after'],
    request_id: r.request_id,
    hash: r.hash ?? '',
  };
}

export interface AuditFilter {
  actorKind?: string;
  actorId?: string;
  action?: string;
  targetTable?: string;
  targetId?: string;
  requestId?: string;
  from?: Date;
  to?: Date;
}

/** What `audit verify` found: the chain from seq 1 to the head, and every break in it. */
export const AuditVerification = Type.Object({
  ok: Type.Boolean(),
  rows: Type.Integer(),
  last_seq: Type.Integer(),
  last_hash: Type.String(),
  problems: Type.Array(Type.Object({ seq: Nullable(Type.Integer()), id: Nullable(Type.String()), problem: Type.String() })),
});
export type AuditVerification = Static<typeof AuditVerification>;
