import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import { type PageRequest } from '../../core/paging.js';
import { newId } from '../../lib/ids.js';
import type { BillingConfig } from '../../config/config.js';
import { type GuardBody, guardBody, overageBody } from './billing.js';
import { isValidTimeZone, localMonth } from './billing.periods.js';

type Row = Record<string, unknown>;

/** Which overage-charge status may follow which (the closed transition table). */
const OVERAGE_NEXT: Record<string, readonly string[]> = {
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
    const user = await db.selectFrom('users').select(['id', 'time_zone']).where('id', '=', userId).executeTakeFirst();
    if (!user) throw errors.notFound('User', userId);
    if (body.time_zone != null && !isValidTimeZone(body.time_zone)) {
      throw errors.invalidRequest(`Unknown time zone "${body.time_zone}" (use an IANA name such as Europe/Berlin)`, { field: 'time_zone' });
    }
    const zone = body.time_zone !== undefined ? body.time_zone : user.time_zone;
    const window = localMonth(this.now(), zone ?? this.config.timeZone);
    const row = await db
      .insertInto('budget_guards')
      .values({
        id: newId('budgetGuard'),
        user_id: userId,
        monthly_cap: body.monthly_cap,
        currency: body.currency ?? 'usd',
        behavior: body.behavior ?? 'throttle',
        notify: body.notify ?? true,
        time_zone: zone,
        window_start: window.start,
        window_end: window.end,
      })
      .onConflict((oc) =>
        oc.column('user_id').doUpdateSet({
          monthly_cap: body.monthly_cap,
          currency: body.currency ?? 'usd',
          behavior: body.behavior ?? 'throttle',
          notify: body.notify ?? true,
          ...(body.time_zone !== undefined ? { time_zone: body.time_zone } : {}),
        }),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
    return guardBody(row as Row);
  }

  async get(db: Executor, userId: string) {
    const row = await db.selectFrom('budget_guards').selectAll().where('user_id', '=', userId).executeTakeFirst();
    if (!row) throw errors.notFound('Budget guard of user', userId);
    return guardBody(row as Row);
  }

  async remove(db: Executor, userId: string) {
    const row = await db.deleteFrom('budget_guards').where('user_id', '=', userId).returning('id').executeTakeFirst();
    if (!row) throw errors.notFound('Budget guard of user', userId);
    return { id: row.id, deleted: true as const };
  }

  async listOverage(db: Executor, userId: string, page: PageRequest) {
    let q = db
      .selectFrom('overage_charges')
      .selectAll()
      .select(cursorColumn('overage_charges').as('cursor_us'))
      .where('user_id', '=', userId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(page.limit + 1);
    if (page.after) q = q.where(cursorBefore('overage_charges', page.after));
    return q.execute();
  }

  async setOverageStatus(db: Executor, id: string, status: 'invoiced' | 'paid' | 'waived') {
    const row = await db.selectFrom('overage_charges').select(['id', 'status']).where('id', '=', id).forUpdate().executeTakeFirst();
    if (!row) throw errors.notFound('Overage charge', id);
    if (!OVERAGE_NEXT[row.status]!.includes(status)) {
      throw errors.invalidState(`An overage charge that is ${row.status} cannot become ${status}`, { status: row.status });
    }
    const now = this.now();
    const updated = await db
      .updateTable('overage_charges')
      .set({
        status,
        ...(status === 'invoiced' ? { invoiced_at: now } : { settled_at: now }),
      })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return overageBody(updated as Row);
  }
}
