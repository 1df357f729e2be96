import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSource, type Source } from './import-source.js';

/**
 * Seed 000 (`app-builder`) as an import source, built from the seed's own SQL
 * (import-sources/app-builder.sql): on PostgreSQL as the seed runs it on Supabase, and as the SQLite
 * `cc.db` SQLAlchemy makes of the same tables. Filled with generated rows and every anomaly.
 */
const SEED_SQL = () => readFileSync(join(import.meta.dirname, 'import-sources', 'app-builder.sql'), 'utf8');

/**
 * Three changes, and only these: the seed checks `pg_type` by name in every schema (scoped here to
 * the fixture's, so fixtures never share enum types); it names a column `window`, a reserved word
 * PostgreSQL refuses unquoted (`syntax error at or near "window"`); and it gives two constraints the
 * name `uq_user_provider` (users and user_providers), which PostgreSQL refuses in one schema
 * (`relation "uq_user_provider" already exists`). The seed's SQL does not run on PostgreSQL as written.
 */
export function createAppBuilderPostgres(): Promise<Source> {
  return createSource('app-builder', (sql) =>
    sql.replaceAll('WHERE typname =', 'WHERE typnamespace = current_schema()::regnamespace AND typname =').replace(/^(\s+)window(\s)/m, '$1"window"$2')
      .replace('CONSTRAINT uq_user_provider UNIQUE (user_id, provider)', 'CONSTRAINT uq_user_providers_user UNIQUE (user_id, provider)'),
  );
}

const ENUMS = ['point_transaction_type', 'payment_provider', 'payment_status', 'plan_shared_mode', 'allowance_type', 'allowance_window', 'allowance_rollover_policy', 'subscription_status', 'overage_charge_status', 'budget_guard_behavior', 'cost_metric'];

/** The seed's DDL as SQLite has it from SQLAlchemy: enums as strings, JSON as text, times without zone. */
export function sqliteDdl(): string {
  let sql = SEED_SQL().replace(/DO \$\$[\s\S]*?END \$\$;/g, '');
  for (const e of ENUMS) sql = sql.replace(new RegExp(`(\\s)${e}(\\s)`, 'g'), '$1VARCHAR(32)$2');
  return sql.replaceAll('JSONB', 'JSON').replaceAll('TIMESTAMPTZ', 'DATETIME').replaceAll('DEFAULT now()', 'DEFAULT CURRENT_TIMESTAMP');
}

export interface SqliteSource {
  file: string;
  close(): void;
}

/** What goes into a source, whichever it is: one row at a time. */
export type Insert = (table: string, row: Record<string, unknown>) => Promise<void>;

export async function createAppBuilderSqlite(file: string): Promise<{ insert: Insert; close(): void }> {
  const { default: Sqlite } = await import('better-sqlite3');
  const db = new Sqlite(file);
  db.exec(sqliteDdl());
  // The fixture writes orphans on purpose (SQLite enforces no foreign keys unless asked; better-sqlite3 asks).
  db.pragma('foreign_keys = off');
  const sqliteTime = (d: Date) => d.toISOString().replace('T', ' ').replace('Z', '000');
  return {
    insert: async (table, row) => {
      const cols = Object.keys(row);
      const values = cols.map((c) => {
        const v = row[c];
        return v instanceof Date ? sqliteTime(v) : typeof v === 'boolean' ? Number(v) : v !== null && typeof v === 'object' ? JSON.stringify(v) : v;
      });
      db.prepare(`insert into "${table}" (${cols.map((c) => `"${c}"`).join(', ')}) values (${cols.map(() => '?').join(', ')})`).run(...values);
    },
    close: () => db.close(),
  };
}

export function postgresInsert(src: Source): Insert {
  return async (table, row) => {
    const cols = Object.keys(row);
    const values = cols.map((c) => {
      const v = row[c];
      return v !== null && typeof v === 'object' && !(v instanceof Date) ? JSON.stringify(v) : v;
    });
    await src.query(`insert into "${table}" (${cols.map((c) => `"${c}"`).join(', ')}) values (${cols.map((_, i) => `$${i + 1}`).join(', ')})`, values);
  };
}

export interface AppBuilderFixture {
  /** Per user, the credits Tally must open with (points + live allowance left + live rollover). */
  balances: Map<string, number>;
  /** user_providers that must arrive as identities (none with a token: 000's cannot be recovered). */
  identities: number;
  total: number;
  pointTransactions: number;
  consumptionEvents: number;
  subscriptions: number;
  canceledSubscriptions: number;
  guards: number;
  payments: number;
  paidCents: number;
  /** Live buckets that become grants (allowances with something left, rollover buckets), by table. */
  liveAllowances: number;
  liveRollovers: number;
  expiredAllowances: number;
  expiredRollovers: number;
  /** A user whose grants are checked exactly: class, amount, expiry. */
  sample: { id: string; grants: { class: string; amount: number; expires_at: string | null }[] };
}

const DAY = 86_400_000;

/**
 * `users` ordinary users — points that equal their transactions, BC allowances partly used, some
 * Usage allowances without expiry, rollover buckets, expired allowances and buckets (not credits any
 * more), consumption events, subscriptions to two plans, budget guards — then each anomaly once or
 * twice: points that drifted from their transactions, negative points (paid from buckets; one left in
 * debt), an allowance used beyond its total, a user with two guards, points above the cap, and
 * orphans of every child table (and a bucket without its allowance, a subscription without its plan).
 */
export async function fillAppBuilder(insert: Insert, users: number): Promise<AppBuilderFixture> {
  const now = Date.now();
  const at = (days: number) => new Date(now + days * DAY);
  const balances = new Map<string, number>();
  const f = { identities: 0, pointTransactions: 0, consumptionEvents: 0, subscriptions: 0, canceledSubscriptions: 0, guards: 0, payments: 0, paidCents: 0, liveAllowances: 0, liveRollovers: 0, expiredAllowances: 0, expiredRollovers: 0 };
  let seq = 0;
  const id = (p: string) => `${p}-${String(++seq).padStart(6, '0')}`;
  await insert('plans', { id: 'plan-pro', name: 'Pro', description: 'BC and RC monthly', bc_monthly: 100, rc_monthly: 40, usage_bonus_rate: '0.1000', trial_days: 7, shared_mode: 'hybrid', payg_enabled: true, price_usd: '19.99', is_active: true });
  await insert('plans', { id: 'plan-team', name: 'Team Plan', bc_monthly: 500, rc_monthly: 0, trial_days: 1, shared_mode: 'shared_pool', payg_enabled: false, price_usd: '99.00', is_active: true });

  const user = async (uid: string, points: number, history: number[] = [points]) => {
    await insert('users', { id: uid, provider: 'github', provider_user_id: `gh-${uid}`, email: `${uid}@example.com`, name: `User ${uid}`, is_email_verified: true, level: 2, points, metadata_json: { tier: 'x' } });
    for (const [i, change] of history.entries()) {
      await insert('point_transactions', { id: id('pt'), user_id: uid, type: change >= 0 ? 'recharge' : 'usage', change, description: `move ${i}`, balance_after: history.slice(0, i + 1).reduce((a, b) => a + b, 0), created_at: at(-30 + i) });
      f.pointTransactions++;
    }
    balances.set(uid, points);
  };
  const allowance = async (uid: string, type: string, total: number, used: number, expires: Date | null) => {
    const aid = id('al');
    await insert('allowances', { id: aid, user_id: uid, plan_id: 'plan-pro', type, total, used, window: 'monthly', rollover_policy: '1_cycle', expires_at: expires, source: `src-${aid}` });
    const left = Math.max(total - used, 0);
    if (left > 0 && (expires === null || expires.getTime() > now)) {
      balances.set(uid, (balances.get(uid) ?? 0) + left);
      f.liveAllowances++;
    }
    if (expires !== null && expires.getTime() <= now) f.expiredAllowances++;
    return aid;
  };
  const rollover = async (uid: string, aid: string, remain: number, expires: Date | null) => {
    await insert('rollover_buckets', { id: id('rb'), user_id: uid, allowance_id: aid, remain, expires_at: expires });
    if (remain > 0 && (expires === null || expires.getTime() > now)) {
      balances.set(uid, (balances.get(uid) ?? 0) + remain);
      f.liveRollovers++;
    }
    if (expires !== null && expires.getTime() <= now) f.expiredRollovers++;
  };

  let sample: AppBuilderFixture['sample'] | null = null;
  for (let u = 0; u < users; u++) {
    const uid = `user-${String(u).padStart(4, '0')}`;
    const points = (u * 37) % 90;
    await user(uid, points, points === 0 ? [] : [points + 5, -5]);
    const bcExpiry = at(10 + (u % 5));
    const bc = await allowance(uid, 'BC', 100, (u * 7) % 100, bcExpiry);
    if (u % 4 === 0) await allowance(uid, 'RC', 50, 0, at(-1)); // expired yesterday: not credits
    if (u % 2 === 1) await allowance(uid, 'Usage', 30, 10, null); // never expires
    if (u % 3 === 0) await rollover(uid, bc, 20, at(40));
    if (u % 5 === 0) await rollover(uid, bc, 15, at(-2)); // expired
    for (let e = 0; e < 2; e++) {
      await insert('consumption_events', { id: id('ce'), user_id: uid, allowance_id: bc, type: 'build', amount: 3 + e, complexity_score: e, action_hash: `hash-${uid}-${e}`, metadata_json: { e } });
      f.consumptionEvents++;
    }
    if (u % 2 === 0) {
      await insert('user_subscriptions', { id: id('us'), user_id: uid, plan_id: u % 4 === 0 ? 'plan-team' : 'plan-pro', status: u % 8 === 2 ? 'canceled' : 'active', payg_enabled: true, is_primary: true, current_period_start: at(-5), current_period_end: at(25), canceled_at: u % 8 === 2 ? at(-1) : null });
      f.subscriptions++;
      if (u % 8 === 2) f.canceledSubscriptions++;
    }
    if (u % 2 === 1) {
      await insert('payments', { id: id('pay'), user_id: uid, provider: u % 4 === 1 ? 'stripe' : 'creem', status: u % 6 === 5 ? 'failed' : 'succeeded', amount: 999 + u, currency: 'USD', points: 100, provider_payment_id: `pi_${uid}`, metadata_json: { u } });
      f.payments++;
      f.paidCents += 999 + u;
    }
    if (u % 3 === 0) {
      await insert('budget_guards', { id: id('bg'), user_id: uid, monthly_cap: '25.50', behavior: u % 2 ? 'suspend' : 'throttle', notify: true, currency: 'usd', current_window_spend: '3.25' });
      f.guards++;
    }
    if (u === 3) {
      sample = {
        id: uid,
        grants: [
          { class: 'default', amount: points, expires_at: null },
          { class: 'BC', amount: 100 - ((u * 7) % 100), expires_at: bcExpiry.toISOString() },
          { class: 'Usage', amount: 20, expires_at: null },
          { class: 'BC', amount: 20, expires_at: at(40).toISOString() },
        ],
      };
    }
  }
  // Points that drifted from their transactions: the points win.
  await user('drift', 40, [100, -90]);
  // Negative points, paid from a live bucket (40 left), and negative beyond its buckets (debt 5).
  await user('negative-paid', -10, [-10]);
  await allowance('negative-paid', 'BC', 50, 0, at(12));
  await user('negative-debt', -30, [-30]);
  const nd = await allowance('negative-debt', 'BC', 100, 80, at(12));
  await rollover('negative-debt', nd, 5, at(30));
  // Used beyond its total: nothing left of it.
  await user('overused', 7, [7]);
  await allowance('overused', 'RC', 10, 15, at(9));
  // Two guards for one user: the lowest id is imported.
  await insert('budget_guards', { id: 'bg-dup-1', user_id: 'overused', workspace_id: 'w1', monthly_cap: '10.00', behavior: 'throttle', notify: false, currency: 'usd', current_window_spend: '0' });
  await insert('budget_guards', { id: 'bg-dup-2', user_id: 'overused', workspace_id: 'w2', monthly_cap: '20.00', behavior: 'throttle', notify: false, currency: 'usd', current_window_spend: '0' });
  f.guards++;
  // Above Tally's default cap (50,000): imported as it is.
  await user('whale', 60_000, [60_000]);
  await user('zero', 0, []);
  // Linked accounts: 000 kept a token hash and a refresh token under its own key (key_rotation), or none.
  await insert('user_providers', { id: 'up-1', user_id: 'whale', provider: 'github', provider_user_id: 'gh-whale-2', access_token_hash: 'sha256:abc123', refresh_token_enc: 'gAAAAB-source-key-ciphertext', raw_profile: { login: 'whale' } });
  await insert('user_providers', { id: 'up-2', user_id: 'whale', provider: 'google', provider_user_id: 'g-whale', access_token_hash: 'sha256:def456' });
  await insert('user_providers', { id: 'up-3', user_id: 'zero', provider: 'github', provider_user_id: 'gh-zero-2', raw_profile: { login: 'zero' } });
  f.identities += 3;
  await insert('user_providers', { id: 'up-ghost', user_id: 'ghost', provider: 'github', provider_user_id: 'gh-ghost' });
  // Orphans: rows of a user who does not exist, a bucket without its allowance, a subscription without its plan.
  await insert('point_transactions', { id: 'pt-ghost', user_id: 'ghost', type: 'recharge', change: 100, balance_after: 100 });
  const ghostAllowance = 'al-ghost';
  await insert('allowances', { id: ghostAllowance, user_id: 'ghost', type: 'BC', total: 100, used: 0, window: 'monthly', expires_at: at(5) });
  await insert('rollover_buckets', { id: 'rb-ghost', user_id: 'ghost', allowance_id: ghostAllowance, remain: 10, expires_at: at(5) });
  await insert('rollover_buckets', { id: 'rb-lost', user_id: 'drift', allowance_id: 'al-gone', remain: 10, expires_at: at(5) });
  await insert('user_subscriptions', { id: 'us-ghost', user_id: 'ghost', plan_id: 'plan-pro', status: 'active', current_period_start: at(-1) });
  await insert('user_subscriptions', { id: 'us-noplan', user_id: 'drift', plan_id: 'plan-gone', status: 'active', current_period_start: at(-1) });
  await insert('consumption_events', { id: 'ce-ghost', user_id: 'ghost', type: 'build', amount: 1, action_hash: 'hash-ghost' });
  await insert('budget_guards', { id: 'bg-ghost', user_id: 'ghost', monthly_cap: '5.00', current_window_spend: '0' });
  await insert('payments', { id: 'pay-ghost', user_id: 'ghost', provider: 'stripe', status: 'succeeded', amount: 500, provider_payment_id: 'pi_ghost' });
  if (!sample) throw new Error('fixture: no sample user');
  return { balances, total: [...balances.values()].reduce((a, b) => a + b, 0), ...f, sample };
}

/** The plaintext service tokens of fillAppBuilderWork: they must never be found in Tally's rows. */
export const WORK_TOKENS = ['ghp_PLAINTEXT_token_000111222', 'vercel-PLAINTEXT-token-333444'];

/**
 * 000's ownerless tables (`tally import --owner`): two projects with sessions, messages, a tool call,
 * a request, a commit, an env var (its value under 000's own key) and a connection; three service
 * tokens in plain text (one whose provider Tally refuses), a session whose project is gone (orphan)
 * and a message whose session is in the other project (unknown_value).
 */
export async function fillAppBuilderWork(insert: Insert): Promise<void> {
  const at = (days: number) => new Date(Date.now() + days * DAY);
  await insert('service_tokens', { id: 'st-1', provider: 'github', name: 'deploy', token: WORK_TOKENS[0], created_at: at(-9), updated_at: at(-9), last_used: at(-1) });
  await insert('service_tokens', { id: 'st-2', provider: 'vercel', name: 'main', token: WORK_TOKENS[1], created_at: at(-9), updated_at: at(-9) });
  await insert('service_tokens', { id: 'st-3', provider: 'Bad Provider!', name: 'x', token: 'bad-PLAINTEXT-token', created_at: at(-9), updated_at: at(-9) });
  await insert('projects', { id: 'prj-a', name: 'Alpha', description: 'first', status: 'idle', preview_port: 3000, preferred_cli: 'claude', fallback_enabled: true, settings: { theme: 'dark' }, created_at: at(-8), updated_at: at(-8) });
  await insert('projects', { id: 'prj-b', name: 'Beta', status: 'running', preferred_cli: 'remote', fallback_enabled: false, created_at: at(-7), updated_at: at(-7) });
  await insert('sessions', { id: 'ses-a1', project_id: 'prj-a', claude_session_id: 'claude-1', status: 'completed', model: 'sonnet', cli_type: 'claude', transcript_format: 'json', total_messages: 2, total_tokens: 100, total_cost_usd: '0.012000', started_at: at(-6), completed_at: at(-6) });
  await insert('sessions', { id: 'ses-b1', project_id: 'prj-b', status: 'active', cli_type: 'claude', transcript_format: 'json', started_at: at(-5) });
  await insert('sessions', { id: 'ses-ghost', project_id: 'prj-gone', status: 'active', cli_type: 'claude', transcript_format: 'json', started_at: at(-5) });
  await insert('messages', { id: 'm-001', project_id: 'prj-a', role: 'user', content: 'build me a site', session_id: 'ses-a1', conversation_id: 'conv-1', created_at: at(-6) });
  await insert('messages', { id: 'm-002', project_id: 'prj-a', role: 'assistant', content: 'done', metadata_json: { step: 1 }, parent_message_id: 'm-001', session_id: 'ses-a1', token_count: 100, cost_usd: '0.012000', created_at: at(-6) });
  await insert('messages', { id: 'm-003', project_id: 'prj-b', role: 'user', content: 'hello', session_id: 'ses-b1', created_at: at(-5) });
  await insert('messages', { id: 'm-004', project_id: 'prj-a', role: 'assistant', content: 'lost', session_id: 'ses-b1', created_at: at(-5) });
  await insert('tools_usage', { id: 'tu-1', session_id: 'ses-a1', project_id: 'prj-a', message_id: 'm-002', tool_name: 'Write', tool_action: 'create', files_affected: ['index.html'], lines_added: 3, lines_removed: 1, is_error: false, created_at: at(-6) });
  await insert('user_requests', { id: 'ur-1', project_id: 'prj-a', user_message_id: 'm-001', session_id: 'ses-a1', instruction: 'build me a site', request_type: 'act', is_completed: true, is_successful: true, created_at: at(-6), completed_at: at(-6) });
  await insert('commits', { id: 'c-1', project_id: 'prj-a', session_id: 'ses-a1', commit_sha: 'abc1234def5678', message: 'first site', author_type: 'ai', files_changed: ['index.html'], stats: { added: 3 }, committed_at: at(-6) });
  await insert('env_vars', { id: 'ev-1', project_id: 'prj-a', key: 'API_KEY', value_encrypted: 'gAAAAB-000-own-key-ciphertext', scope: 'runtime', var_type: 'string', is_secret: true, created_at: at(-6), updated_at: at(-6) });
  await insert('project_service_connections', { id: 'psc-1', project_id: 'prj-a', provider: 'github', status: 'connected', service_data: { repo: 'me/alpha' }, created_at: at(-6), updated_at: at(-6) });
}
