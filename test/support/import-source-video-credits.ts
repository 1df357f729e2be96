import { createHash, randomUUID } from 'node:crypto';
import { fillVideoCredits, type Source } from './import-source.js';

/** What the subscriptions, keys and daily statistics of a video-credits fixture must become. */
export interface VideoCreditsDerivedFixture {
  users: string[];
  /** SHA-256 (hex) of `tly_…` keys: kept as they are (one of them revoked: inactive in the source). */
  keptHashes: string[];
  revokedHash: string;
  /** The two subscriptions of one user: the newer is the primary. */
  twoLive: { user: string; older: string; newer: string };
  /** usage_stats rows that become counters, and the counters they make (user, metric, day, quantity). */
  stats: number;
  counters: { user: string; metric: string; day: string; quantity: number }[];
}

const DAY = 86_400_000;
const dayKey = (days: number) => new Date(Date.now() + days * DAY).toISOString().slice(0, 10);

/**
 * Seed 001's subscriptions and auxiliary tables over `fillVideoCredits` users: live, canceled and
 * duplicated subscriptions (two live for one user; one Creem id on two rows), an unknown plan name,
 * keys hashed with SHA-256 (kept; one inactive) and with bcrypt (rotation), daily statistics (one
 * with a negative count), and an orphan in each table.
 */
export async function fillVideoCreditsDerived(src: Source): Promise<VideoCreditsDerivedFixture> {
  await fillVideoCredits(src, 8);
  for (const table of ['user_subscriptions', 'api_keys', 'usage_stats']) await src.query(`alter table ${table} drop constraint ${table}_user_id_fkey`);
  const users = (await src.query<{ id: string }>("select id::text as id from users where email like 'u%@example.com' order by email")).map((u) => u.id);
  const [u0, u1, u2, u3, u4, u5] = users as [string, string, string, string, string, string];
  const ghost = randomUUID();
  const sub = (user: string, plan: string, status: string, providerId: string | null, daysAgo: number, id: string = randomUUID()) =>
    src.query("insert into user_subscriptions (id, user_id, plan_type, plan_status, subscription_id, created_at) values ($1, $2, $3, $4, $5, now() - make_interval(days => $6))", [id, user, plan, status, providerId, daysAgo]).then(() => id);
  await sub(u0, 'pro', 'active', 'sub_1', 40);
  await sub(u1, 'basic', 'canceled', 'sub_2', 70);
  const older = await sub(u2, 'basic', 'active', 'sub_3', 60);
  const newer = await sub(u2, 'creator', 'active', 'sub_4', 10);
  await sub(u3, 'pro', 'active', 'sub_dup', 5, '00000000-0000-4000-8000-00000000000a');
  await sub(u4, 'pro', 'active', 'sub_dup', 5, 'ffffffff-ffff-4fff-8fff-fffffffffffa');
  await sub(u5, 'Pro Monthly!', 'active', null, 3);
  await sub(ghost, 'pro', 'active', null, 3);

  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const keptHashes = [sha(`tly_vc_${randomUUID()}`), sha(`tly_vc_${randomUUID()}`)];
  const revokedHash = sha(`tly_vc_${randomUUID()}`);
  await src.query("insert into api_keys (user_id, name, key_prefix, key_hash, last_used_at) values ($1, 'cli', 'tly_ab', $2, now()), ($3, 'ci', null, $4, null)", [u0, keptHashes[0], u1, keptHashes[1]]);
  await src.query("insert into api_keys (user_id, name, key_hash, is_active) values ($1, 'old', $2, false)", [u0, revokedHash]);
  await src.query("insert into api_keys (user_id, name, key_hash) values ($1, 'bcrypt', '$2b$10$notsha256atall')", [u2]);
  await src.query("insert into api_keys (user_id, name, key_hash) values ($1, 'ghost', $2)", [ghost, sha('tly_ghost')]);

  const stat = (user: string, days: number, videos: number, credits: number) =>
    src.query('insert into usage_stats (user_id, date, videos_generated, credits_used) values ($1, $2, $3, $4)', [user, dayKey(days), videos, credits]);
  await stat(u0, 0, 2, 40);
  await stat(u0, -1, 1, 20);
  await stat(u1, -3, 3, 60);
  await stat(u2, -1, 1, -5);
  await stat(ghost, 0, 1, 20);
  const counters = [
    { user: u0, metric: 'videos_generated', day: dayKey(0), quantity: 2 },
    { user: u0, metric: 'credits_used', day: dayKey(0), quantity: 40 },
    { user: u0, metric: 'videos_generated', day: dayKey(-1), quantity: 1 },
    { user: u0, metric: 'credits_used', day: dayKey(-1), quantity: 20 },
    { user: u1, metric: 'videos_generated', day: dayKey(-3), quantity: 3 },
    { user: u1, metric: 'credits_used', day: dayKey(-3), quantity: 60 },
  ];
  return { users, keptHashes, revokedHash, twoLive: { user: u2, older, newer }, stats: 3, counters };
}
