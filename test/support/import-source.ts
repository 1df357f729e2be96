import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';

/**
 * A seed's own database as an import source: a fresh schema on the local PostgreSQL (on both test
 * projects the SOURCE is PostgreSQL; the target is PGlite or PostgreSQL), built from the seed's SQL
 * in test/support/import-sources/ and filled with generated rows.
 */
export const SOURCE_URL = process.env['TEST_DATABASE_URL'] || 'postgres://postgres@127.0.0.1:5432/test';

export interface Source {
  schema: string;
  client: pg.Client;
  query<T = Record<string, unknown>>(text: string, values?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

export async function createSource(shape: string, transform: (sql: string) => string = (x) => x): Promise<Source> {
  const schema = `src_${shape.replace(/-/g, '_')}_${randomBytes(4).toString('hex')}`;
  const client = new pg.Client({ connectionString: SOURCE_URL });
  await client.connect();
  await client.query(`create schema ${schema}`);
  await client.query(`set search_path to ${schema}, public`);
  try {
    await client.query(transform(readFileSync(join(import.meta.dirname, 'import-sources', `${shape}.sql`), 'utf8')));
  } catch (err) {
    // The seed's SQL failed: leave no schema behind in the shared test database.
    await client.query(`drop schema ${schema} cascade`);
    await client.end();
    throw err;
  }
  return {
    schema,
    client,
    query: async <T>(text: string, values: unknown[] = []) => (await client.query(text, values)).rows as T[],
    drop: async () => {
      await client.query(`drop schema ${schema} cascade`);
      await client.end();
    },
  };
}

/** What a video-credits fixture holds: per user the balance Tally must open with. */
export interface VideoCreditsFixture {
  balances: Map<string, number>;
  total: number;
  transactions: number;
  orphanTransactions: number;
  jobs: number;
  payments: number;
}

/**
 * `users` users whose transactions add up to their balance (sign-up 3, purchases, generations,
 * refunds), with jobs and payments; then every anomaly the import has a rule for, once each:
 * a balance that is not the sum of its transactions, a negative balance, a balance above the cap,
 * a duplicated payment id, and an orphaned transaction, job and payment.
 */
export async function fillVideoCredits(src: Source, users: number): Promise<VideoCreditsFixture> {
  await src.query('alter table credit_transactions drop constraint credit_transactions_user_id_fkey');
  await src.query('alter table video_jobs drop constraint video_jobs_user_id_fkey');
  await src.query('alter table payments drop constraint payments_user_id_fkey');
  const balances = new Map<string, number>();
  let transactions = 0;
  let jobs = 0;
  let payments = 0;
  const addUser = async (email: string, moves: number[], balance = moves.reduce((a, b) => a + b, 0)) => {
    const id = randomUUID();
    const credited = moves.filter((m) => m > 0).reduce((a, b) => a + b, 0);
    await src.query('insert into users (id, email, full_name, credits_balance, credits_total, credits_spent) values ($1, $2, $3, $4, $5, $6)', [
      id, email, `User ${email}`, balance, credited, credited - balance,
    ]);
    for (const [i, m] of moves.entries()) {
      const type = i === 0 || m > 0 ? (m > 0 && i > 0 && m < 20 ? 'refund' : 'credit') : 'debit';
      await src.query('insert into credit_transactions (user_id, amount, transaction_type, reason, created_at) values ($1, $2, $3, $4, now() - make_interval(mins => $5))', [
        id, m, type, type === 'debit' ? 'generation' : i === 0 ? 'signup' : 'purchase', 100 - i,
      ]);
      transactions++;
    }
    balances.set(id, balance);
    return id;
  };
  for (let u = 0; u < users; u++) {
    const moves = [3];
    for (let k = 0; k < u % 4; k++) moves.push(100);
    for (let k = 0; k < u % 3 && moves.reduce((a, b) => a + b, 0) >= 20; k++) moves.push(-20);
    if (u % 5 === 0) moves.push(10);
    const id = await addUser(`u${u}@example.com`, moves);
    const statuses = ['completed', 'failed', 'processing', 'pending'];
    for (let j = 0; j < u % 3; j++) {
      await src.query('insert into video_jobs (user_id, job_id, status, prompt, cost_credits, model) values ($1, $2, $3, $4, 20, $5)', [id, `ext-${u}-${j}`, statuses[(u + j) % 4], `prompt ${u}/${j}`, 'veo3']);
      jobs++;
    }
    if (u % 2 === 1) {
      await src.query("insert into payments (user_id, payment_id, amount, status) values ($1, $2, '9.99', 'completed')", [id, `pay_${u}`]);
      payments++;
    }
  }
  // A user whose balance drifted from their transactions: the balance wins.
  await addUser('drift@example.com', [3, 100, -20], 50);
  // A user the source let go below zero: imported as debt.
  await addUser('negative@example.com', [3, -18]);
  // Above Tally's default cap (50,000): imported as it is.
  await addUser('whale@example.com', [3, 60_000]);
  // Nothing left: an account with no opening entry.
  const zero = await addUser('zero@example.com', [3, -3]);
  // The same provider payment twice: the first (lowest id) is imported.
  await src.query("insert into payments (id, user_id, payment_id, amount, status) values ('00000000-0000-4000-8000-000000000001', $1, 'pay_dup', '19.00', 'completed'), ('ffffffff-ffff-4fff-8fff-ffffffffffff', $1, 'pay_dup', '19.00', 'completed')", [zero]);
  payments += 2;
  // Rows whose user does not exist.
  const ghost = randomUUID();
  await src.query("insert into credit_transactions (user_id, amount, transaction_type, reason) values ($1, 100, 'credit', 'purchase')", [ghost]);
  await src.query("insert into video_jobs (user_id, job_id, status, cost_credits) values ($1, 'ext-ghost', 'completed', 20)", [ghost]);
  await src.query("insert into payments (user_id, payment_id, amount, status) values ($1, 'pay_ghost', '5.00', 'completed')", [ghost]);
  return { balances, total: [...balances.values()].reduce((a, b) => a + b, 0), transactions, orphanTransactions: 1, jobs, payments };
}

/** What an llm-relay fixture holds, and what the import must make of it. */
export interface LlmRelayFixture {
  users: number;
  /** SHA-256 (hex) of `tly_…` keys: kept as they are. */
  keptHashes: string[];
  usageKept: number;
}

/**
 * Six users (three with argon2 hashes, three with bcrypt ones), keys hashed with SHA-256 (kept),
 * one with a bcrypt hash (rotation), one with permissions Tally cannot express (imported revoked),
 * upstreams of every kind (an OpenAI key, Anthropic OAuth tokens, an unknown type), usage records,
 * and one usage record whose key is gone (orphan).
 */
export async function fillLlmRelay(src: Source, argon2Hash: string): Promise<LlmRelayFixture> {
  const { createHash } = await import('node:crypto');
  await src.query('alter table usage_records drop constraint usage_records_api_key_id_fkey');
  const ids: string[] = [];
  for (let u = 0; u < 6; u++) {
    const hash = u < 3 ? argon2Hash : '$2b$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234';
    const [row] = await src.query<{ id: string }>("insert into users (email, username, password_hash, role, updated_at) values ($1, $2, $3, $4, now()) returning id::text as id", [`r${u}@example.com`, `r${u}`, hash, u === 0 ? 'admin' : 'user']);
    ids.push(String(row?.id));
  }
  const keptHashes: string[] = [];
  const keyIds: string[] = [];
  for (let k = 0; k < 4; k++) {
    const hash = createHash('sha256').update(`tly_relaykey${k}${randomBytes(8).toString('hex')}`).digest('hex');
    keptHashes.push(hash);
    const [row] = await src.query<{ id: string }>("insert into api_keys (user_id, name, key_hash, updated_at) values ($1, $2, $3, now()) returning id::text as id", [ids[k % 6], `key ${k}`, hash]);
    keyIds.push(String(row?.id));
  }
  const [bcryptKey] = await src.query<{ id: string }>("insert into api_keys (user_id, name, key_hash, updated_at) values ($1, 'old', '$2b$10$notsha256atall', now()) returning id::text as id", [ids[4]]);
  await src.query(`insert into api_keys (user_id, name, key_hash, permissions, updated_at) values ($1, 'narrow', $2, '["admin:all"]', now())`, [ids[5], createHash('sha256').update('tly_narrow').digest('hex')]);
  const [openai] = await src.query<{ id: string }>(`insert into upstream_accounts (type, email, credentials, priority, weight, updated_at) values ('openai', 'ops@example.com', '{"api_key": "sk-test-abcdefghijklmnop"}', 2, 50, now()) returning id::text as id`);
  await src.query(`insert into upstream_accounts (type, email, credentials, updated_at) values ('claude', 'oauth@example.com', '{"access_token": "at-123", "refresh_token": "rt-456"}', now())`);
  await src.query(`insert into upstream_accounts (type, email, credentials, updated_at) values ('gemini', 'g@example.com', '{"api_key": "g-key"}', now())`);
  let usageKept = 0;
  for (let r = 0; r < 8; r++) {
    await src.query("insert into usage_records (api_key_id, upstream_account_id, request_id, method, endpoint, status_code, tokens_used, cost) values ($1, $2, $3, 'POST', '/v1/chat/completions', 200, 1200, '0.0123')", [keyIds[r % 4], openai?.id, `req-${r}`]);
    usageKept++;
  }
  // A record of the key that is not imported (rotation), and one whose key never existed.
  await src.query("insert into usage_records (api_key_id, request_id, method, endpoint, cost) values ($1, 'req-old', 'POST', '/v1/messages', '0.5')", [bcryptKey?.id]);
  await src.query("insert into usage_records (api_key_id, request_id, method, endpoint, cost) values (999999, 'req-ghost', 'POST', '/v1/messages', '0.5')");
  return { users: ids.length, keptHashes, usageKept };
}
