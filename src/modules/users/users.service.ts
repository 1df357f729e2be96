import { isValidTimeZone } from '../billing/billing.periods.js';
import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { assertSelfOrService } from '../../core/principal.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import type { CreateUserBody, UpdateUserBody, UserRow } from './users.js';
import { SERVICE_ONLY_FIELDS } from './users.js';
import { type UserInsert, userFindById, userFindConflict, userInsert, userList, userUpdate } from './users.repository.js';

/**
 * Runs in the transaction that created the user, so whatever it does (the credits module grants
 * the sign-up bonus here) commits with the user or not at all — exactly once per user.
 */
export type UserCreatedHook = (db: Executor, user: UserRow) => Promise<void>;

export class UsersService {
  private readonly createdHooks: UserCreatedHook[] = [];

  onUserCreated(hook: UserCreatedHook): void {
    this.createdHooks.push(hook);
  }

  async create(db: Executor, input: Static<typeof CreateUserBody> & { password_hash?: string }): Promise<UserRow> {
    const existing = await userFindConflict(db, input.id, input.email);
    if (existing) {
      const field = input.id !== undefined && existing.id === input.id ? 'id' : 'email';
      throw errors.conflict(`A user with this ${field} already exists`, { field });
    }
    assertTimeZone(input.time_zone);
    const row: UserInsert = { ...input, id: input.id ?? newId('user') };
    if (input.provider !== undefined && input.provider_user_id === undefined) {
      throw errors.invalidRequest('provider_user_id is required with provider', { field: 'provider_user_id' });
    }
    const user = await userInsert(db, row);
    for (const hook of this.createdHooks) await hook(db, user);
    return user;
  }

  async get(db: Executor, principal: Principal, id: string): Promise<UserRow> {
    assertSelfOrService(principal, id);
    const user = await userFindById(db, id);
    if (!user) throw errors.notFound('User', id);
    return user;
  }

  async update(db: Executor, principal: Principal, id: string, patch: Static<typeof UpdateUserBody>): Promise<UserRow> {
    assertSelfOrService(principal, id);
    if (principal.kind !== 'service') {
      const refused = SERVICE_ONLY_FIELDS.filter((f) => patch[f] !== undefined);
      if (refused.length > 0) throw errors.forbidden(`Only the service can change ${refused.join(', ')}`);
    }
    assertTimeZone(patch.time_zone);
    if (patch.email !== undefined) {
      const clash = await userFindConflict(db, undefined, patch.email);
      if (clash && clash.id !== id) throw errors.conflict('A user with this email already exists', { field: 'email' });
    }
    const user = await userUpdate(db, id, patch);
    if (!user) throw errors.notFound('User', id);
    return user;
  }

  async list(db: Executor, page: PageRequest, filter: { email?: string; q?: string }) {
    return userList(db, page, filter);
  }
}

function assertTimeZone(tz: string | null | undefined): void {
  if (tz !== undefined && tz !== null && !isValidTimeZone(tz)) {
    throw errors.invalidRequest(`Unknown time zone "${tz}" (use an IANA name such as Europe/Berlin)`, { field: 'time_zone' });
  }
}
