import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { PROJECT_ROOT } from '../../src/version.js';
import { type Check, check, reconcileCheck } from './checks.js';
import { hwmOf, rssOf } from './proc.js';
import type { BenchContext, ScenarioResult } from './scenarios.js';
import { Latencies, measurement, StatusCounts } from './stats.js';
import { target } from './targets.js';

// ---------------------------------------------------------------------------------------------
// Scenario 10 (issue 20, "Proofs"): `tally import` of 1,000,000 ledger-relevant source rows.
// ---------------------------------------------------------------------------------------------

/** Transactions per source user: with the user's balance row, ten ledger-relevant rows a user. */
const PER_USER = 9;
/** Issue 20's bound: 1,000,000 rows in under 2 minutes. */
const BOUND_SECONDS_PER_MILLION = 120;

/** The seed's own SQL (001, video-credits), as the import tests build it. */
const SOURCE_SQL = join(PROJECT_ROOT, 'test', 'support', 'import-sources', 'video-credits.sql');

interface ImportRun {
  code: number | null;
  seconds: number;
  /** The child's highest RSS (VmHWM, sampled every 50 ms until it exits), bytes. */
  peakRss: number;
  report: ImportReportView | null;
  stderrTail: string;
}

/** The parts of `tally import --json`'s report the checks read (src/modules/import/import.report.ts). */
interface ImportReportView {
  status: string;
  tables: { table: string; imported: number; skipped: number }[];
  credits: { source_total: number; source_accounts: number; tally_total: number; tally_accounts: number; match: boolean };
  anomalies: { total: number };
  reconcile: { ok: boolean };
}

/**
 * A seed-shaped source (001's video-credits) in its own schema `bench_src_<random>` on the bench's
 * PostgreSQL, filled set-based (`generate_series`): BENCH_IMPORT_ROWS ledger-relevant rows (default
 * 1,000,000), a tenth users with a balance, nine tenths their credit transactions, every balance the
 * sum of its transactions (no anomalies). Then `node bin/tally.js import` in its own process into the
 * bench's Tally schema, as an operator runs it, timed from spawn to exit, its RSS high-water mark
 * sampled. Checks: exit 0, every row imported, credits in the source = the generated total = Tally's,
 * per account (the report's match), `reconcile()` clean, and a second run imports nothing.
 */
export async function importSpeed(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const users = Math.max(1, Math.round(opts.importRows / (PER_USER + 1)));
  const transactions = users * PER_USER;
  const rows = users + transactions;
  const schema = `bench_src_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: opts.url });
  await admin.connect();
  try {
    const t0 = Date.now();
    const expectedTotal = await fillSource(admin, schema, users);
    ctx.log(`  source:   ${schema}: ${users.toLocaleString('en-US')} users + ${transactions.toLocaleString('en-US')} transactions (${rows.toLocaleString('en-US')} rows, ${expectedTotal.toLocaleString('en-US')} credits) generated in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const first = await runImport(ctx, schema);
    ctx.log(`  import:   exit ${first.code} in ${first.seconds.toFixed(1)} s (${Math.round(rows / first.seconds).toLocaleString('en-US')} rows/s), peak RSS ${(first.peakRss / 2 ** 20).toFixed(0)} MB`);
    const second = await runImport(ctx, schema);
    ctx.log(`  again:    exit ${second.code} in ${second.seconds.toFixed(1)} s`);

    const checks = importChecks(first, second, { users, transactions, expectedTotal });
    checks.push(await reconcileCheck(tally.database));
    const rowsPerSec = rows / first.seconds;
    const bound = (BOUND_SECONDS_PER_MILLION * rows) / 1_000_000;
    const statuses = new StatusCounts();
    if (first.code !== null) statuses.add(first.code === 0 ? 200 : 500);
    return {
      id: 10,
      name: `tally import, ${rows.toLocaleString('en-US')} video-credits rows (ops/s = rows/s)`,
      shape: {
        tally: `node bin/tally.js import --from <bench PostgreSQL> --source-schema ${schema} --schema video-credits --json into the bench schema; ${users} users (balance rows) + ${transactions} credit_transactions, batches of 500 users and 5,000 transactions`,
        baseline: null,
      },
      tally: measurement(new Latencies(), statuses, first.code === 0 ? rows : 0, first.seconds, 1),
      baseline: null,
      ratio: null,
      targets: [
        target(
          `import time, ${rows.toLocaleString('en-US')} rows`,
          first.seconds,
          's',
          'max',
          bound,
          `${Math.round(rowsPerSec).toLocaleString('en-US')} rows/s, spawn to exit; bound ${BOUND_SECONDS_PER_MILLION} s per 1,000,000 rows${rows === 1_000_000 ? '' : ', scaled to this size'}`,
        ),
        target('import peak RSS', first.peakRss / 2 ** 20, 'MB', 'max', 256, `the child's VmHWM; batches (500 users, 5,000 transactions) streamed by key, never the whole source`),
      ],
      extra: { rows, users, transactions, credits: expectedTotal, seconds: first.seconds, rows_per_sec: rowsPerSec, peak_rss_bytes: first.peakRss, second_run_seconds: second.seconds },
      checks,
    };
  } finally {
    if (!opts.keep) await admin.query(`drop schema if exists ${schema} cascade`).catch(() => undefined);
    await admin.end();
  }
}

/**
 * The source, set-based. User i's transactions k = 0…8: a sign-up credit of 100, then debits of
 * 1–7 and purchases of 10–29 alternating; the balance is their sum. Returns Σ balances.
 */
async function fillSource(admin: pg.Client, schema: string, users: number): Promise<number> {
  await admin.query(`create schema ${schema}`);
  await admin.query(`set search_path to ${schema}, public`);
  await admin.query(readFileSync(SOURCE_SQL, 'utf8'));
  const amount = `(case when k = 0 then 100 when k % 2 = 1 then -(1 + (i + k) % 7) else 10 + (i * k) % 20 end)`;
  const id = `(md5('bench-import-' || i)::uuid)`;
  await admin.query(
    `insert into users (id, email, full_name, credits_balance, credits_total, credits_spent, created_at)
     select ${id}, 'bench-import-' || i || '@example.com', 'User ' || i, s.balance, s.credited, s.credited - s.balance, now() - interval '30 days'
     from generate_series(1, $1::int) i,
       lateral (select sum(${amount})::int as balance, sum(greatest(${amount}, 0))::int as credited from generate_series(0, ${PER_USER - 1}) k) s`,
    [users],
  );
  await admin.query(
    `insert into credit_transactions (user_id, amount, transaction_type, reason, created_at)
     select ${id}, ${amount}, case when k = 0 or k % 2 = 0 then 'credit' else 'debit' end,
       case when k = 0 then 'signup' when k % 2 = 1 then 'generation' else 'purchase' end,
       now() - interval '30 days' + make_interval(mins => k)
     from generate_series(1, $1::int) i, generate_series(0, ${PER_USER - 1}) k`,
    [users],
  );
  await admin.query('analyze users; analyze credit_transactions');
  await admin.query('set search_path to default');
  const [r] = (await admin.query<{ total: string }>(`select coalesce(sum(credits_balance), 0)::text as total from ${schema}.users`)).rows;
  return Number(r?.total ?? 0);
}

/** One `tally import` child, as an operator runs it; its RSS high-water mark read every 50 ms. */
function runImport(ctx: BenchContext, schema: string): Promise<ImportRun> {
  const { opts, tally } = ctx;
  const env: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'NODE_OPTIONS']) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  Object.assign(env, {
    NODE_ENV: 'production',
    DATABASE_URL: opts.url,
    TALLY_DB_SCHEMA: tally.schema,
    TALLY_BALANCE_CAP: '0',
    TALLY_SIGNUP_BONUS: '0',
    TALLY_SERVICE_KEY: tally.secrets.serviceKey,
    TALLY_JWT_SECRET: tally.secrets.jwtSecret,
    TALLY_ENCRYPTION_KEY: tally.secrets.encryptionKey,
    TALLY_JOBS_CALLBACK_SECRET: tally.secrets.jobsCallbackSecret,
    LOG_LEVEL: 'warn',
  });
  const args = [...opts.childNodeArgs, join(PROJECT_ROOT, 'bin', 'tally.js'), 'import', '--from', opts.url, '--source-schema', schema, '--schema', 'video-credits', '--json'];
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => {
    err = (err + c.toString('utf8')).slice(-4000);
  });
  let peak = 0;
  const sample = () => {
    const pid = child.pid;
    if (pid !== undefined) peak = Math.max(peak, ...[hwmOf(pid), rssOf(pid)].filter((n) => Number.isFinite(n)));
  };
  const timer = setInterval(sample, 50);
  return new Promise((resolve, reject) => {
    child.on('error', (e) => {
      clearInterval(timer);
      reject(e);
    });
    child.on('exit', () => sample());
    child.on('close', (code) => {
      clearInterval(timer);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      let report: ImportReportView | null = null;
      try {
        report = JSON.parse(Buffer.concat(out).toString('utf8')) as ImportReportView;
      } catch {
        report = null;
      }
      resolve({ code, seconds, peakRss: peak, report, stderrTail: err.slice(-1500) });
    });
  });
}

function importChecks(first: ImportRun, second: ImportRun, want: { users: number; transactions: number; expectedTotal: number }): Check[] {
  const r = first.report;
  const importedOf = (run: ImportRun, table: string) => run.report?.tables.find((t) => t.table === table)?.imported ?? Number.NaN;
  const checks: Check[] = [
    check('tally', 'import exit', first.code === 0 && r?.status === 'completed', `exit ${first.code}, status ${r?.status ?? 'no report'}${first.code === 0 ? '' : `: ${first.stderrTail}`}`),
    check(
      'tally',
      'rows imported',
      importedOf(first, 'users') === want.users && importedOf(first, 'credit_transactions') === want.transactions,
      `users ${importedOf(first, 'users')} of ${want.users}, credit_transactions ${importedOf(first, 'credit_transactions')} of ${want.transactions}`,
    ),
    check(
      'tally',
      'credits match',
      r !== null && r.credits.match && r.credits.source_total === want.expectedTotal && r.credits.tally_total === want.expectedTotal && r.credits.tally_accounts === want.users,
      r ? `generated ${want.expectedTotal}, source ${r.credits.source_total} in ${r.credits.source_accounts} accounts, Tally ${r.credits.tally_total} in ${r.credits.tally_accounts}; per account: ${r.credits.match ? 'match' : 'MISMATCH'}` : 'no report',
    ),
    check('tally', 'no anomalies', r !== null && r.anomalies.total === 0, `${r?.anomalies.total ?? '?'} anomalies in a consistent source`),
    check('tally', 'import reconcile', r?.reconcile.ok === true, `the import's own reconcile: ${r?.reconcile.ok ? 'clean' : 'DRIFT'}`),
  ];
  const again = second.report?.tables.reduce((a, t) => a + t.imported, 0) ?? Number.NaN;
  checks.push(check('tally', 'second run imports nothing', second.code === 0 && again === 0, `exit ${second.code}, ${again} rows imported${second.code === 0 ? '' : `: ${second.stderrTail}`}`));
  return checks;
}
