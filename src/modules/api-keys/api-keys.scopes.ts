/**
 * The closed list of API-key scopes. A key holds `*` (everything its user may do) or a subset;
 * each route names the one scope it needs. Service and JWT callers are not scope-limited.
 */
export const SCOPES = [
  '*',
  'users:read',
  'users:write',
  'keys:read',
  'keys:write',
  'workspaces:read',
  'workspaces:write',
  'credits:read',
  'billing:read',
  'billing:write',
  'jobs:read',
  'projects:read',
  'projects:write',
  'secrets:read',
  'secrets:write',
  'storage:read',
  'storage:write',
  'analytics:write',
  // Spend the owner's credits through the LLM gateway's wire-format paths (/gateway/*, docs/gateway.md).
  'gateway',
] as const;

export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Every Tally API key starts with this, so a key is recognisable in logs and secret scanners. */
export const API_KEY_PREFIX = 'tly_';
