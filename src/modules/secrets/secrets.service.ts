import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import { principalKey, type Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import type { SecretBox } from '../../lib/secret-box.js';
import { canWrite } from '../projects/projects.js';
import type { ProjectsService } from '../projects/projects.service.js';
import { userFindById } from '../users/users.repository.js';
import { memberRole, workspaceFindById } from '../workspaces/workspaces.repository.js';
import { type CreateEnvVarBody, type CreateServiceTokenBody, envVarAad, hintOf, type PutConnectionBody, serviceTokenAad } from './secrets.js';
import {
  connectionDelete,
  connectionList,
  connectionUpsert,
  envVarDelete,
  envVarFind,
  envVarInsert,
  envVarList,
  revealAudit,
  sealedValueRead,
  serviceTokenDelete,
  serviceTokenFind,
  serviceTokenInsert,
  serviceTokenList,
} from './secrets.repository.js';

/**
 * Environment variables, service tokens and service connections. Values are sealed before they
 * reach the database and never leave it in the clear except through `reveal*`, which is for
 * writers of the secret's owner only and writes an audit row in the same transaction.
 */
export class SecretsService {
  constructor(
    private readonly box: SecretBox,
    private readonly projects: ProjectsService,
  ) {}

  private async projectWriter(db: Executor, principal: Principal, projectId: string) {
    const a = await this.projects.access(db, principal, projectId);
    if (!canWrite(a.role)) throw errors.forbidden('Viewers can read this project but not change its secrets');
    return a;
  }

  async createEnvVar(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateEnvVarBody>) {
    await this.projectWriter(db, principal, projectId);
    const id = newId('envVar');
    const { value, ...fields } = body;
    try {
      return await envVarInsert(db, {
        id, project_id: projectId, ...fields,
        value_enc: this.box.seal(value, envVarAad(id)), key_id: this.box.keyId, value_hint: hintOf(value),
        created_by: principal.kind === 'user' ? principal.userId : null,
      });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw errors.conflict('This variable already exists for this scope and environment', { key: body.key });
      throw err;
    }
  }

  async listEnvVars(db: Executor, principal: Principal, projectId: string, page: PageRequest) {
    await this.projects.access(db, principal, projectId);
    return envVarList(db, projectId, page);
  }

  async deleteEnvVar(db: Executor, principal: Principal, projectId: string, id: string) {
    await this.projectWriter(db, principal, projectId);
    if (!(await envVarDelete(db, projectId, id))) throw errors.notFound('Environment variable', id);
  }

  async revealEnvVar(db: Executor, principal: Principal, projectId: string, id: string, requestId: string) {
    await this.projectWriter(db, principal, projectId);
    const row = await envVarFind(db, projectId, id);
    if (!row) throw errors.notFound('Environment variable', id);
    const value = await this.open(db, principal, 'env_vars', id, envVarAad(id));
    await this.audit(db, principal, 'env_var', id, projectId, requestId);
    return { id, key: row.key, value };
  }

  async createServiceToken(db: Executor, principal: Principal, body: Static<typeof CreateServiceTokenBody>) {
    const owner = await this.tokenOwner(db, principal, body.user_id, body.workspace_id);
    const id = newId('serviceToken');
    try {
      return await serviceTokenInsert(db, {
        id, ...owner, created_by: principal.kind === 'user' ? principal.userId : null, provider: body.provider, name: body.name,
        token_enc: this.box.seal(body.token, serviceTokenAad(id)), key_id: this.box.keyId, token_hint: hintOf(body.token), config: body.config ?? {},
      });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw errors.conflict('A token with this provider and name already exists', { provider: body.provider, name: body.name });
      throw err;
    }
  }

  async listServiceTokens(db: Executor, principal: Principal, page: PageRequest, filter: { user_id?: string; workspace_id?: string }) {
    if (principal.kind === 'user') {
      if (filter.user_id !== undefined && filter.user_id !== principal.userId) throw errors.forbidden('You can only list your own tokens');
      if (filter.workspace_id !== undefined && !(await memberRole(db, filter.workspace_id, principal.userId))) throw errors.notFound('Workspace', filter.workspace_id);
      return serviceTokenList(db, page, { memberId: principal.userId, ...(filter.user_id ? { userId: filter.user_id } : {}), ...(filter.workspace_id ? { workspaceId: filter.workspace_id } : {}) });
    }
    return serviceTokenList(db, page, { ...(filter.user_id ? { userId: filter.user_id } : {}), ...(filter.workspace_id ? { workspaceId: filter.workspace_id } : {}) });
  }

  async deleteServiceToken(db: Executor, principal: Principal, id: string) {
    await this.tokenManager(db, principal, id);
    if (!(await serviceTokenDelete(db, id))) throw errors.notFound('Service token', id);
  }

  async revealServiceToken(db: Executor, principal: Principal, id: string, requestId: string) {
    const row = await this.tokenManager(db, principal, id);
    const token = await this.open(db, principal, 'service_tokens', id, serviceTokenAad(id));
    await this.audit(db, principal, 'service_token', id, null, requestId);
    return { id, provider: row.provider, name: row.name, token };
  }

  async putConnection(db: Executor, principal: Principal, projectId: string, provider: string, body: Static<typeof PutConnectionBody>) {
    await this.projectWriter(db, principal, projectId);
    if (body.service_token_id) {
      const token = await serviceTokenFind(db, body.service_token_id);
      if (!token) throw errors.notFound('Service token', body.service_token_id);
    }
    return connectionUpsert(db, { id: newId('serviceConnection'), project_id: projectId, provider, ...body });
  }

  async listConnections(db: Executor, principal: Principal, projectId: string, page: PageRequest) {
    await this.projects.access(db, principal, projectId);
    return connectionList(db, projectId, page);
  }

  async deleteConnection(db: Executor, principal: Principal, projectId: string, provider: string) {
    await this.projectWriter(db, principal, projectId);
    if (!(await connectionDelete(db, projectId, provider))) throw errors.notFound('Service connection', provider);
  }

  /** Who owns a new token: a workspace (its owners and admins), the caller, or user_id for the service. */
  private async tokenOwner(db: Executor, principal: Principal, userId: string | undefined, workspaceId: string | undefined) {
    if (userId !== undefined && workspaceId !== undefined) throw errors.invalidRequest('A token belongs to a user or a workspace, not both', { field: 'body.workspace_id' });
    if (workspaceId !== undefined) {
      if (principal.kind === 'user') {
        const role = await memberRole(db, workspaceId, principal.userId);
        if (!role) throw errors.notFound('Workspace', workspaceId);
        if (role !== 'owner' && role !== 'admin') throw errors.forbidden('Only owners and admins manage a workspace’s tokens');
      } else if (!(await workspaceFindById(db, workspaceId))) throw errors.notFound('Workspace', workspaceId);
      return { user_id: null, workspace_id: workspaceId };
    }
    if (principal.kind === 'user') {
      if (userId !== undefined && userId !== principal.userId) throw errors.forbidden('You can only store your own tokens');
      return { user_id: principal.userId, workspace_id: null };
    }
    if (!userId) throw errors.invalidRequest('user_id or workspace_id is required when the service stores a token', { field: 'body.user_id' });
    if (!(await userFindById(db, userId))) throw errors.notFound('User', userId);
    return { user_id: userId, workspace_id: null };
  }

  /** The token, if the caller manages it (its user, a workspace owner/admin, or the service); 404 if unseen. */
  private async tokenManager(db: Executor, principal: Principal, id: string) {
    const row = await serviceTokenFind(db, id);
    if (!row) throw errors.notFound('Service token', id);
    if (principal.kind === 'service') return row;
    if (principal.kind !== 'user') throw errors.unauthenticated();
    if (row.user_id !== null) {
      if (row.user_id !== principal.userId) throw errors.notFound('Service token', id);
      return row;
    }
    const role = await memberRole(db, row.workspace_id as string, principal.userId);
    if (!role) throw errors.notFound('Service token', id);
    if (role !== 'owner' && role !== 'admin') throw errors.forbidden('Only owners and admins manage a workspace’s tokens');
    return row;
  }

  private async open(db: Executor, principal: Principal, table: 'env_vars' | 'service_tokens', id: string, aad: string): Promise<string> {
    const sealed = await sealedValueRead(db, principal, table, id);
    if (sealed === null) throw errors.notFound('Secret', id);
    const plain = this.box.open(sealed, aad);
    if (plain === null) throw errors.unavailable('This secret was sealed with a key this server does not hold (see `tally secrets rotate`)');
    return plain;
  }

  private async audit(db: Executor, principal: Principal, targetType: 'env_var' | 'service_token', targetId: string, projectId: string | null, requestId: string) {
    await revealAudit(db, {
      id: newId('secretReveal'),
      actor: principalKey(principal),
      actor_user_id: principal.kind === 'user' ? principal.userId : null,
      target_type: targetType,
      target_id: targetId,
      project_id: projectId,
      request_id: requestId,
    });
  }
}
