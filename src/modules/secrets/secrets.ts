import { Type } from 'typebox';
import { JsonObject, NullableTimestamp, Timestamp } from '../../core/schemas.js';

/**
 * Secrets at rest: environment variables, service tokens / API-integration keys. Values are
 * sealed (AES-256-GCM, SecretBox) and bound to their row id as associated data, so a ciphertext
 * cannot be moved to another row. Reads return a mask only; the one reveal endpoint is audited.
 */
const N = <T extends import('typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Id = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:@-]+$' });

export const envVarAad = (id: string) => `env_var:${id}`;
export const serviceTokenAad = (id: string) => `service_token:${id}`;

/** The last four characters of a long value (enough to recognise it, far from enough to use it). */
export const hintOf = (value: string): string | null => (value.length >= 16 ? value.slice(-4) : null);
export const masked = (hint: string | null): string => (hint ? `••••••••${hint}` : '••••••••');

export const EnvVar = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), key: Type.String(), masked_value: Type.String(), scope: Type.String(),
    environment: Type.String(), var_type: Type.String(), is_secret: Type.Boolean(), description: N(Type.String()),
    created_by: N(Type.String()), created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'EnvVar' },
);
export const CreateEnvVarBody = Type.Object(
  {
    key: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$' }),
    value: Type.String({ maxLength: 65_536 }),
    scope: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    environment: Type.Optional(Type.Union(['development', 'staging', 'production', 'all'].map((e) => Type.Literal(e)))),
    var_type: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    is_secret: Type.Optional(Type.Boolean()),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: false },
);
export const RevealedEnvVar = Type.Object({ id: Type.String(), key: Type.String(), value: Type.String() }, { title: 'RevealedEnvVar' });

export const ServiceToken = Type.Object(
  {
    id: Type.String(), user_id: N(Type.String()), workspace_id: N(Type.String()), created_by: N(Type.String()),
    provider: Type.String(), name: Type.String(), masked_token: Type.String(), config: Type.Record(Type.String(), Type.Unknown()),
    is_active: Type.Boolean(), last_used_at: NullableTimestamp, created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'ServiceToken' },
);
export const CreateServiceTokenBody = Type.Object(
  {
    provider: Type.String({ pattern: '^[a-z0-9_.-]{1,50}$' }),
    name: Type.String({ minLength: 1, maxLength: 255 }),
    token: Type.String({ minLength: 1, maxLength: 16_384 }),
    /** A workspace's token (owners and admins); otherwise the caller's own (or user_id's, for the service). */
    workspace_id: Type.Optional(Id),
    user_id: Type.Optional(Id),
    config: Type.Optional(JsonObject(50)),
  },
  { additionalProperties: false },
);
export const RevealedServiceToken = Type.Object({ id: Type.String(), provider: Type.String(), name: Type.String(), token: Type.String() }, { title: 'RevealedServiceToken' });

export const ServiceConnection = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), provider: Type.String(), status: Type.String(),
    service_data: Type.Record(Type.String(), Type.Unknown()), service_token_id: N(Type.String()), last_sync_at: NullableTimestamp,
    created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'ServiceConnection' },
);
export const PutConnectionBody = Type.Object(
  {
    status: Type.Optional(Type.Union(['connected', 'disconnected', 'error', 'pending'].map((s) => Type.Literal(s)))),
    service_data: Type.Optional(JsonObject(100)),
    service_token_id: Type.Optional(N(Id)),
    last_sync_at: Type.Optional(N(Type.String({ format: 'date-time' }))),
  },
  { additionalProperties: false },
);

type Dateish = Date | string;
const iso = (d: Dateish) => new Date(d).toISOString();
const isoN = (d: Dateish | null) => (d === null ? null : iso(d));

export function envVarToApi(r: { id: string; project_id: string; key: string; value_hint: string | null; scope: string; environment: string; var_type: string; is_secret: boolean; description: string | null; created_by: string | null; created_at: Dateish; updated_at: Dateish }) {
  return {
    id: r.id, project_id: r.project_id, key: r.key, masked_value: masked(r.value_hint), scope: r.scope, environment: r.environment,
    var_type: r.var_type, is_secret: r.is_secret, description: r.description, created_by: r.created_by,
    created_at: iso(r.created_at), updated_at: iso(r.updated_at),
  };
}

export function serviceTokenToApi(r: { id: string; user_id: string | null; workspace_id: string | null; created_by: string | null; provider: string; name: string; token_hint: string | null; config: unknown; is_active: boolean; last_used_at: Dateish | null; created_at: Dateish; updated_at: Dateish }) {
  return {
    id: r.id, user_id: r.user_id, workspace_id: r.workspace_id, created_by: r.created_by, provider: r.provider, name: r.name,
    masked_token: masked(r.token_hint), config: (r.config ?? {}) as Record<string, unknown>, is_active: r.is_active,
    last_used_at: isoN(r.last_used_at), created_at: iso(r.created_at), updated_at: iso(r.updated_at),
  };
}

export function connectionToApi(r: { id: string; project_id: string; provider: string; status: string; service_data: unknown; service_token_id: string | null; last_sync_at: Dateish | null; created_at: Dateish; updated_at: Dateish }) {
  return {
    id: r.id, project_id: r.project_id, provider: r.provider, status: r.status, service_data: (r.service_data ?? {}) as Record<string, unknown>,
    service_token_id: r.service_token_id, last_sync_at: isoN(r.last_sync_at), created_at: iso(r.created_at), updated_at: iso(r.updated_at),
  };
}
