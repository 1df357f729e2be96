import { sql } from 'kysely';
import type { Database, Executor } from '../../db/database.js';

/** One broken invariant, in the shape `tally reconcile` reports. */
export interface GatewayDrift {
  account_id: string;
  check: string;
  expected: number;
  actual: number;
}

/**
 * The gateway's money invariants (docs/gateway.md, "Exact costs"), per carry — an account's own
 * (member '') or, in a workspace pool, one member's (R9) — over every settled request: the running
 * total is the sum of exact costs of the requests that joined it; the whole credits captured are its
 * floor; and each settled request's hold was captured for exactly what the record says it charged.
 */
export async function gatewayDrift(database: Database, executor?: Executor): Promise<GatewayDrift[]> {
  const t = (name: string) => sql.table(`${database.schema}.${name}`);
  const db = executor ?? database.root;
  type R = { account_id: string; member_id: string; expected: unknown; actual: unknown };
  const out: GatewayDrift[] = [];
  const add = (rows: R[], check: string) => {
    for (const r of rows) out.push({ account_id: r.account_id, check: r.member_id ? `${check} [member ${r.member_id}]` : check, expected: Number(r.expected), actual: Number(r.actual) });
  };
  const account = sql`case when r.workspace_id is not null then 'acc_w_' || r.workspace_id else 'acc_u_' || r.user_id end`;
  // Requests settled before 0039 have no carry_member_id: they joined their account's one carry.
  const sums = sql`select ${account} as account_id, coalesce(r.carry_member_id, '') as member_id, sum(r.cost_micros) as micros, sum(r.charged) as charged
      from ${t('gateway_requests')} r where r.status <> 'pending' group by 1, 2`;
  add((await sql<R>`select coalesce(s.account_id, c.account_id) as account_id, coalesce(s.member_id, c.member_id) as member_id,
        coalesce(s.micros, 0) as expected, coalesce(c.total_micros, 0) as actual
      from (${sums}) s full join ${t('gateway_carries')} c on c.account_id = s.account_id and c.member_id = s.member_id
      where coalesce(s.micros, 0) <> coalesce(c.total_micros, 0)`.execute(db)).rows, 'gateway: total_micros = sum(cost_micros)');
  add((await sql<R>`select s.account_id, s.member_id, floor(s.micros / 1000000) as expected, s.charged as actual
      from (${sums}) s where s.charged <> floor(s.micros / 1000000)`.execute(db)).rows, 'gateway: sum(charged) = floor(total_micros / 1e6)');
  add((await sql<R>`select ${account} as account_id, '' as member_id, r.charged as expected, coalesce(h.captured, -1) as actual
      from ${t('gateway_requests')} r left join ${t('credit_holds')} h on h.id = r.hold_id
      where r.status <> 'pending' and (h.status is distinct from 'captured' or h.captured <> r.charged)`.execute(db)).rows,
    'gateway: a settled request captured its hold for what it charged');
  return out;
}
