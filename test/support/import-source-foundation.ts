import { randomUUID } from 'node:crypto';
import { createSource, type Source } from './import-source.js';

/**
 * Seed 003 (`foundation`) as an import source: its 0001_init.sql (import-sources/foundation.sql) in a
 * fixture schema. Two changes, and only these: `public.` qualifies nothing (the fixture's schema is
 * first on the search path), and `users.id` does not reference `auth.users` — Supabase's auth schema
 * is not part of the source the import reads.
 */
export function createFoundationPostgres(): Promise<Source> {
  return createSource('foundation', (sql) => sql.replaceAll('public.', '').replace('REFERENCES auth.users(id) ON DELETE CASCADE ', ''));
}

export interface FoundationFixture {
  users: number;
  subscriptions: number;
  byStatus: Record<string, number>;
  counters: number;
  windows: Record<string, number>;
  /** A subscription's Lemon Squeezy id held by two rows: the lower source id keeps it. */
  duplicateLemon: { kept: string; unlinked: string };
}

const DAY = 86_400_000;

/**
 * `users` users, most with a subscription (every status, every plan, Lemon Squeezy ids) and usage
 * counters in daily, monthly and other windows; then each anomaly: a subscription and a counter whose
 * user is missing, a subscription without a period, two subscriptions with one Lemon Squeezy id, and
 * a counter whose window ends before it starts.
 */
export async function fillFoundation(src: Source, users: number): Promise<FoundationFixture> {
  // The fixture writes orphans on purpose: the seed's foreign keys would refuse them.
  await src.query('set session_replication_role = replica');
  const statuses = ['trial', 'active', 'cancelled', 'expired', 'past_due'];
  const plans = ['free', 'basic', 'pro'];
  const now = new Date();
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const monthEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  const f: FoundationFixture = { users: 0, subscriptions: 0, byStatus: {}, counters: 0, windows: { day: 0, month: 0, period: 0 }, duplicateLemon: { kept: '', unlinked: '' } };
  const ids: string[] = [];
  for (let u = 0; u < users; u++) {
    const id = randomUUID();
    ids.push(id);
    await src.query('insert into users (id, email) values ($1, $2)', [id, `f${u}@example.com`]);
    f.users++;
    if (u % 6 !== 5) {
      const status = statuses[u % 5] as string;
      await src.query(
        `insert into subscriptions (user_id, status, plan, lemon_squeezy_id, current_period_start, current_period_end, trial_ends_at)
         values ($1, $2, $3, $4, now() - interval '10 days', now() + interval '20 days', $5)`,
        [id, status, plans[u % 3], `ls_${u}`, status === 'trial' ? new Date(Date.now() + 4 * DAY) : null],
      );
      f.subscriptions++;
      const tallyStatus = ({ trial: 'trialing', cancelled: 'canceled', expired: 'canceled' } as Record<string, string>)[status] ?? status;
      f.byStatus[tallyStatus] = (f.byStatus[tallyStatus] ?? 0) + 1;
    }
    await src.query('insert into usage_counters (user_id, metric, count, window_start, window_end) values ($1, $2, $3, $4, $5)', [id, 'api_calls', 10 + u, new Date(today), new Date(today + DAY)]);
    await src.query('insert into usage_counters (user_id, metric, count, window_start, window_end) values ($1, $2, $3, $4, $5)', [id, 'agent_runs', u, monthStart, monthEnd]);
    f.counters += 2;
    f.windows.day = (f.windows.day ?? 0) + 1;
    f.windows.month = (f.windows.month ?? 0) + 1;
    if (u % 4 === 0) {
      await src.query("insert into usage_counters (user_id, metric, count, window_start, window_end) values ($1, 'storage_mb', 42, now() - interval '3 days', now() + interval '4 days')", [id]);
      f.counters++;
      f.windows.period = (f.windows.period ?? 0) + 1;
    }
  }
  // A subscription without a period (the seed allows it): the written rule fills it.
  const noPeriod = randomUUID();
  await src.query('insert into users (id, email) values ($1, $2)', [noPeriod, 'noperiod@example.com']);
  await src.query("insert into subscriptions (user_id, status, plan) values ($1, 'active', 'basic')", [noPeriod]);
  f.users++;
  f.subscriptions++;
  f.byStatus.active = (f.byStatus.active ?? 0) + 1;
  // One Lemon Squeezy id on two subscriptions.
  const twins = [randomUUID(), randomUUID()];
  const subIds = ['00000000-0000-4000-8000-00000000000a', 'ffffffff-ffff-4fff-8fff-fffffffffffa'];
  for (const [i, uid] of twins.entries()) {
    await src.query('insert into users (id, email) values ($1, $2)', [uid, `twin${i}@example.com`]);
    await src.query("insert into subscriptions (id, user_id, status, plan, lemon_squeezy_id, current_period_start, current_period_end) values ($1, $2, 'active', 'pro', 'ls_twin', now(), now() + interval '30 days')", [subIds[i], uid]);
    f.users++;
    f.subscriptions++;
    f.byStatus.active = (f.byStatus.active ?? 0) + 1;
  }
  f.duplicateLemon = { kept: subIds[0] as string, unlinked: subIds[1] as string };
  // A counter whose window ends before it starts.
  await src.query("insert into usage_counters (user_id, metric, count, window_start, window_end) values ($1, 'api_calls', 3, now(), now() - interval '1 day')", [ids[0]]);
  // Rows of a user who does not exist.
  const ghost = randomUUID();
  await src.query("insert into subscriptions (user_id, status, plan) values ($1, 'active', 'pro')", [ghost]);
  await src.query("insert into usage_counters (user_id, metric, count, window_start, window_end) values ($1, 'api_calls', 1, now(), now() + interval '1 day')", [ghost]);
  return f;
}
