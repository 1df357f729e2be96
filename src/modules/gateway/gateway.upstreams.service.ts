import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import type { SecretBox } from '../../lib/secret-box.js';
import { type CreateUpstreamInput, credentialsAad, hintOf, type UpdateUpstreamInput, type UpstreamRow } from './gateway.js';
import { upstreamDelete, upstreamFind, upstreamInsert, upstreamList, upstreamUpdate } from './gateway.repository.js';

function assertService(principal: Principal): void {
  if (principal.kind !== 'service') throw errors.forbidden('Upstream accounts are managed with the service key');
}

/**
 * Upstream accounts (seed 004 `upstream_accounts`): the operator's provider keys, sealed with the
 * encryption key and bound to their row, never answered back. `onChange` tells the router its
 * cached view is out of date.
 */
export class UpstreamsService {
  constructor(
    private readonly box: SecretBox,
    private readonly onChange: () => void,
  ) {}

  async create(db: Executor, principal: Principal, body: CreateUpstreamInput): Promise<UpstreamRow> {
    assertService(principal);
    const id = newId('upstream');
    const row = await upstreamInsert(db, {
      id,
      type: body.type,
      name: body.name ?? '',
      base_url: body.base_url.replace(/\/+$/, ''),
      credentials_enc: this.box.seal(body.credentials, credentialsAad(id)),
      key_id: this.box.keyId,
      credentials_hint: hintOf(body.credentials),
      models: body.models ?? ['*'],
      priority: body.priority ?? 1,
      weight: body.weight ?? 100,
      is_active: body.is_active ?? true,
    });
    this.onChange();
    return row;
  }

  async get(db: Executor, principal: Principal, id: string): Promise<UpstreamRow> {
    assertService(principal);
    const row = await upstreamFind(db, id);
    if (!row) throw errors.notFound('Upstream', id);
    return row;
  }

  async list(db: Executor, principal: Principal, page: PageRequest) {
    assertService(principal);
    return upstreamList(db, page);
  }

  /** A PATCH of a disabled (401/403) upstream's credentials or `is_active` puts it back in service. */
  async update(db: Executor, principal: Principal, id: string, body: UpdateUpstreamInput): Promise<UpstreamRow> {
    assertService(principal);
    const revive = body.credentials !== undefined || body.is_active === true;
    const row = await upstreamUpdate(db, id, {
      ...(body.name !== undefined ? { name: body.name } : {}),
      ...(body.base_url !== undefined ? { base_url: body.base_url.replace(/\/+$/, '') } : {}),
      ...(body.models !== undefined ? { models: body.models } : {}),
      ...(body.priority !== undefined ? { priority: body.priority } : {}),
      ...(body.weight !== undefined ? { weight: body.weight } : {}),
      ...(body.is_active !== undefined ? { is_active: body.is_active } : {}),
      ...(body.credentials !== undefined
        ? { credentials_enc: this.box.seal(body.credentials, credentialsAad(id)), key_id: this.box.keyId, credentials_hint: hintOf(body.credentials) }
        : {}),
      ...(revive ? { state: 'closed', consecutive_failures: 0, cooldown_until: null } : {}),
    });
    if (!row) throw errors.notFound('Upstream', id);
    this.onChange();
    return row;
  }

  async remove(db: Executor, principal: Principal, id: string): Promise<void> {
    assertService(principal);
    if (!(await upstreamDelete(db, id))) throw errors.notFound('Upstream', id);
    this.onChange();
  }
}
