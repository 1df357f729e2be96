import { isAbsolute, join, resolve } from 'node:path';
import { PROJECT_ROOT } from '../../src/version.js';

/**
 * What `tally bench` runs, read from the environment once. The bench is a development tool: it
 * reads its own BENCH_* variables here and hands the Tally child process a normal Tally
 * environment (see children.ts); the server's configuration code is not involved.
 */
export interface BenchOptions {
  /** PostgreSQL both sides run on. */
  url: string;
  /** baseline.sql, loaded into the `baseline` schema. */
  baselineSql: string;
  /** Measured seconds per run (each side of each scenario). */
  seconds: number;
  /** Unmeasured seconds before each measured run (JIT, pools, caches). */
  warmupSeconds: number;
  /** autocannon connections for the HTTP scenarios. */
  connections: number;
  /** Accounts in the spread scenario. */
  accounts: number;
  /** PostgreSQL pool size of both HTTP servers (Tally's DATABASE_POOL_MAX and the baseline's pg Pool). */
  serverPoolMax: number;
  /** In-process calls kept in flight on Tally's CreditsService (SDK scenario). */
  sdkInflight: number;
  /** autocannon connections for the usage-batch scenario (each request carries 1,000 events). */
  batchConnections: number;
  /** pg Pool clients (= calls in flight) for the baseline function in the SDK scenario. */
  sdkBaselineClients: number;
  /** hold + capture cycles kept in flight (holds scenario). */
  holdInflight: number;
  /** LOG_LEVEL of the Tally child (the baseline server logs nothing). */
  tallyLogLevel: string;
  /** Extra node flags for the server children (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`). */
  childNodeArgs: string[];
  /** Gateway scenario (7): the low connection counts its overhead is measured at, and the interleaved rounds. */
  gatewayConnections: number[];
  gatewayRounds: number;
  /** Gateway scenario (7): connections of the throughput run. */
  gatewayThroughputConnections: number;
  /** Gateway scenario (7): funded users (one key each) the requests go round; 1 = one payer account. */
  gatewayUsers: number;
  /** Storage scenario (8): connection counts of the 1 KB uploads and the range reads; MB of the big upload. */
  storageConnections: number[];
  storageBigMb: number;
  /** Logging scenario (9): interleaved on/off rounds. */
  loggingRounds: number;
  /** Processes scenario (11): TALLY_PROCESSES of the many side, and interleaved rounds. */
  processes: number;
  processRounds: number;
  /** Import scenario (10): ledger-relevant source rows generated and imported (a tenth users, the rest transactions). */
  importRows: number;
  /** Keep the bench schemas afterwards (for digging into them). */
  keep: boolean;
  /** Which scenarios to run (1–10). */
  only: Set<number>;
  /** Where the JSON report goes. */
  resultsFile: string;
}

/** A BENCH_* integer setting (≥ min), or the fallback when unset; a bad value is a one-line error. */
export const int = (env: NodeJS.ProcessEnv, name: string, fallback: number, min = 1): number => {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}, got "${raw}"`);
  return n;
};

/** A BENCH_* list of connection counts ("1,8"), or the fallback when unset. */
const connectionList = (env: NodeJS.ProcessEnv, name: string, fallback: string): number[] => {
  const list = (env[name] || fallback).split(',').map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${name} takes connection counts, e.g. "1,8", got "${env[name]}"`);
  return list;
};

/** Every scenario, in order (run.ts maps each to its function). */
export const ALL_SCENARIOS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

export function benchOptions(env: NodeJS.ProcessEnv, only?: string): BenchOptions {
  const seconds = int(env, 'BENCH_SECONDS', 10);
  const baselineSql = env['BENCH_BASELINE_SQL'] || join(PROJECT_ROOT, '..', 'shared', 'bench', 'baseline.sql');
  const selected = (only ?? env['BENCH_ONLY'] ?? ALL_SCENARIOS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (selected.length === 0 || selected.some((n) => !ALL_SCENARIOS.includes(n))) {
    throw new Error(`--only / BENCH_ONLY takes scenario numbers 1-${ALL_SCENARIOS.length}, got "${only ?? env['BENCH_ONLY']}"`);
  }
  const gatewayConnections = connectionList(env, 'BENCH_GATEWAY_CONNECTIONS', '1,8');
  const storageConnections = connectionList(env, 'BENCH_STORAGE_CONNECTIONS', '1,8');
  return {
    url:
      env['BENCH_DATABASE_URL'] || env['DATABASE_URL'] || env['TEST_DATABASE_URL'] || 'postgres://postgres@127.0.0.1:5432/postgres',
    baselineSql: isAbsolute(baselineSql) ? baselineSql : resolve(PROJECT_ROOT, baselineSql),
    seconds,
    // A short smoke run gets a short warm-up.
    warmupSeconds: int(env, 'BENCH_WARMUP_SECONDS', seconds < 5 ? 1 : 2),
    connections: int(env, 'BENCH_CONNECTIONS', 64),
    accounts: int(env, 'BENCH_ACCOUNTS', 2000),
    serverPoolMax: int(env, 'BENCH_POOL_MAX', 20),
    sdkInflight: int(env, 'BENCH_SDK_INFLIGHT', 1024),
    sdkBaselineClients: int(env, 'BENCH_SDK_BASELINE_CLIENTS', 64),
    batchConnections: int(env, 'BENCH_BATCH_CONNECTIONS', 4),
    holdInflight: int(env, 'BENCH_HOLD_INFLIGHT', 512),
    tallyLogLevel: env['BENCH_TALLY_LOG_LEVEL'] || 'warn',
    childNodeArgs: (env['BENCH_CHILD_NODE_ARGS'] ?? '').split(/\s+/).filter(Boolean),
    gatewayConnections,
    gatewayRounds: int(env, 'BENCH_GATEWAY_ROUNDS', 4),
    gatewayThroughputConnections: int(env, 'BENCH_GATEWAY_THROUGHPUT_CONNECTIONS', 64),
    gatewayUsers: int(env, 'BENCH_GATEWAY_USERS', 1),
    storageConnections,
    storageBigMb: int(env, 'BENCH_STORAGE_BIG_MB', 1024),
    loggingRounds: int(env, 'BENCH_LOGGING_ROUNDS', 4),
    processes: int(env, 'BENCH_PROCESSES', 2),
    processRounds: int(env, 'BENCH_PROCESS_ROUNDS', 4),
    importRows: int(env, 'BENCH_IMPORT_ROWS', 1_000_000, 10),
    keep: env['BENCH_KEEP'] === '1',
    only: new Set(selected),
    resultsFile: join(PROJECT_ROOT, 'bench', 'results', 'latest.json'),
  };
}
