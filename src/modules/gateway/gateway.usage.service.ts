import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import { assertSelfOrService, type Principal } from '../../core/principal.js';
import { userFindById } from '../users/users.repository.js';
import { requestList } from './gateway.repository.js';

export interface UsageFilter {
  userId?: string;
  model?: string;
  status?: string;
  requestId?: string;
}

/** The gateway's usage records: all of them for the service, a user's own for that user (RLS agrees). */
export class GatewayUsageService {
  async list(db: Executor, principal: Principal, page: PageRequest, filter: UsageFilter) {
    if (principal.kind !== 'service') throw errors.forbidden('All gateway usage is for the service key; users read their own');
    return requestList(db, page, filter);
  }

  async listForUser(db: Executor, principal: Principal, userId: string, page: PageRequest, filter: Omit<UsageFilter, 'userId'>) {
    assertSelfOrService(principal, userId);
    if (!(await userFindById(db, userId))) throw errors.notFound('User', userId);
    return requestList(db, page, { ...filter, userId });
  }
}
