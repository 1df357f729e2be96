import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { type PageRequest, toPage } from '../../core/paging.js';
import { newId } from '../../lib/ids.js';
import type { BillingConfig } from '../../config/config.js';
import { type GuardBody, guardOf, oneOf, OVERAGE_STATUSES, overageChargeOf, type OverageStatus } from './billing.js';
import {
  guardDelete,
  guardFind,
  guardUpsert,
  overageChargeLock,
  overageChargePage,
  overageChargeUpdate,
  userFindZone,
} from './billing.guards.repository.js';
import { isValidTimeZone, localMonth } from './billing.periods.js';

/** Which overage-charge status may follow which (the closed transition table). */
const OVERAGE_NEXT: Record<OverageStatus, readonly OverageStatus[]> = {
  pending: ['invoiced', 'waived'],
  invoiced: ['paid', 'waived'],
  paid: [],
  waived: [],
};

/** Budget guards (one per user) and overage charges: service writes, owners read. */
export class GuardsService {
  constructor(
    private readonly config: BillingConfig,
    private readonly now: () => Date,
  ) {}

  /**
   * Sets a user's guard (service only). Its zone is fixed here — `time_zone` if given, else the
   * user's zone at the time the guard is first set (null: the deployment's) — and its month's end
   * is stored, so the user it limits cannot move its window by changing their own time zone. A
   * new zone applies from the month after the current one (docs/billing.md).
   */
  async put(db: Executor, userId: string, body: Static<typeof GuardBody>) {
    const user = await userFindZone(db, userId);
    if (!user) throw errors.notFound('User', userId);
    if (body.time_zone != null && !isValidTimeZone(body.time_zone)) {
      throw errors.invalidRequest(`Unknown time zone "${body.time_zone}" (use an IANA name such as Europe/Berlin)`, { field: 'time_zone' });
    }
    const zone = body.time_zone !== undefined ? body.time_zone : user.time_zone;
    const window = localMonth(this.now(), zone ?? this.config.timeZone);
    const row = await guardUpsert(
      db,
      {
        id: newId('budgetGuard'),
        user_id: userId,
        monthly_cap: body.monthly_cap,
        currency: body.currency ?? 'usd',
        behavior: body.behavior ?? 'throttle',
        notify: body.notify ?? true,
        time_zone: zone,
        window_start: window.start,
        window_end: window.end,
      },
      {
        monthly_cap: body.monthly_cap,
        currency: body.currency ?? 'usd',
        behavior: body.behavior ?? 'throttle',
        notify: body.notify ?? true,
        ...(body.time_zone !== undefined ? { time_zone: body.time_zone } : {}),
      },
    );
    return guardOf(row);
  }

  async get(db: Executor, userId: string) {
    const row = await guardFind(db, userId);
    if (!row) throw errors.notFound('Budget guard of user', userId);
    return guardOf(row);
  }

  async remove(db: Executor, userId: string) {
    const row = await guardDelete(db, userId);
    if (!row) throw errors.notFound('Budget guard of user', userId);
    return { id: row.id, deleted: true as const };
  }

  /** A page of the user's overage charges, newest first, as the API shows them. */
  async listOverage(db: Executor, userId: string, page: PageRequest) {
    return toPage(await overageChargePage(db, userId, page), page.limit, overageChargeOf);
  }

  async setOverageStatus(db: Executor, id: string, status: 'invoiced' | 'paid' | 'waived') {
    const row = await overageChargeLock(db, id);
    if (!row) throw errors.notFound('Overage charge', id);
    const current = oneOf(OVERAGE_STATUSES, row.status);
    if (!OVERAGE_NEXT[current].includes(status)) {
      throw errors.invalidState(`An overage charge that is ${row.status} cannot become ${status}`, { status: row.status });
    }
    const now = this.now();
    const updated = await overageChargeUpdate(db, id, {
      status,
      ...(status === 'invoiced' ? { invoiced_at: now } : { settled_at: now }),
    });
    return overageChargeOf(updated);
  }
}
