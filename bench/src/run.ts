import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import pg from 'pg';
import { PROJECT_ROOT, VERSION } from '../../src/version.js';
import { stopAllServers } from './children.js';
import { type BenchOptions, benchOptions } from './options.js';
import { ceilingTable, details, machineInfo, machineLine, storageTable, table } from './report.js';
import { gatewayOverhead } from './scenario-gateway.js';
import { importSpeed } from './scenario-import.js';
import { loggingCost } from './scenario-logging.js';
import { processesScaling } from './scenario-processes.js';
import { storageLatency } from './scenario-storage.js';
import { targetsTable } from './targets.js';
import { type BenchContext, checkLatency, eventsBatch, httpHot, httpSpread, holdsHot, type ScenarioResult, sdkHot } from './scenarios.js';
import type { Measurement } from './stats.js';
import { benchAccounts, dropBaseline, dropTally, openTally, postgresInfo, seedBaseline, seedTally, type TallySide } from './setup.js';
import { must } from '../../src/lib/must.js';

const SCENARIOS: Record<number, (ctx: BenchContext) => Promise<ScenarioResult>> = {
  1: httpHot,
  2: httpSpread,
  3: sdkHot,
  4: holdsHot,
  5: eventsBatch,
  6: checkLatency,
  7: gatewayOverhead,
  8: storageLatency,
  9: loggingCost,
  10: importSpeed,
  11: processesScaling,
};

const redact = (url: string): string => {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
};

const say = (line: string) => process.stdout.write(line + '\n');

/**
 * `tally bench`: Tally against the seed projects' per-call SQL function, side by side on the same
 * PostgreSQL in one run. Exit 1 when any of Tally's correctness checks fails (drift, a lost or
 * phantom write, an answer other than 2xx/402) or a scenario could not run.
 */
export async function benchCommand(cli: { only?: string } = {}): Promise<number> {
  const opts = benchOptions(process.env, cli.only);
  if (!existsSync(opts.baselineSql)) {
    process.stderr.write(`bench: baseline SQL not found at ${opts.baselineSql} (set BENCH_BASELINE_SQL)\n`);
    return 2;
  }
  say(`Tally ${VERSION} bench — PostgreSQL ${redact(opts.url)}`);
  say(
    `${opts.seconds}s measured + ${opts.warmupSeconds}s warm-up per side per scenario; scenarios ${[...opts.only].sort((a, b) => a - b).join(',')}; baseline ${relative(PROJECT_ROOT, opts.baselineSql)}`,
  );

  let tally: TallySide | null = null;
  let baselineLoaded = false;
  const baselineAdmin = new pg.Pool({ connectionString: opts.url, max: 2 });
  const cleanup = async () => {
    await stopAllServers();
    if (tally) {
      await tally.app.server.close().catch(() => undefined);
      if (!opts.keep) await dropTally(tally.database, tally.schema).catch((e: unknown) => say(`could not drop ${tally?.schema}: ${String(e)}`));
      await tally.database.close().catch(() => undefined);
    }
    await baselineAdmin.end().catch(() => undefined);
    if (baselineLoaded && !opts.keep) await dropBaseline(opts).catch((e: unknown) => say(`could not drop schema baseline: ${String(e)}`));
  };
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nbench: ${signal}, cleaning up…\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const results: ScenarioResult[] = [];
  const failures: string[] = [];
  try {
    const t0 = Date.now();
    tally = await openTally(opts);
    const accounts = benchAccounts(opts.accounts);
    say(`set-up: Tally schema ${tally.schema} migrated; ${accounts.spread.length + 3} users created and funded on both sides…`);
    await seedTally(tally, accounts);
    baselineLoaded = true;
    await seedBaseline(opts, accounts);
    say(`set-up done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const machine = machineInfo(await postgresInfo(tally.database));
    const ctx: BenchContext = { opts, tally, accounts, baselineAdmin, log: say };

    for (const id of [...opts.only].sort((a, b) => a - b)) {
      say(`\n[${id}/${Object.keys(SCENARIOS).length}] ${scenarioTitle(id, opts)}`);
      try {
        const result = await must(SCENARIOS[id], `scenario ${id} exists`)(ctx);
        results.push(result);
        const b = result.baseline;
        say(
          `  → Tally ${Math.round(result.tally.opsPerSec)} ops/s` +
            (b ? `, baseline ${Math.round(b.opsPerSec)} ops/s, ratio ${result.ratio?.toFixed(2) ?? '—'}×` : ' (Tally only)') +
            (result.ceiling ? `; empty route ${Math.round(result.ceiling.opsPerSec)} ops/s` : ''),
        );
        for (const c of result.checks.filter((c) => !c.ok)) {
          const line = `scenario ${id} ${c.side} ${c.name}: ${c.detail}`;
          if (c.fatal) failures.push(line);
          process.stderr.write(`  ${c.fatal ? 'FAILED' : 'warning'}: ${line}\n`);
        }
      } catch (err) {
        const line = `scenario ${id} could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
        failures.push(line);
        process.stderr.write(`  FAILED: ${line}\n`);
        await stopAllServers();
      }
    }

    say('\n' + table(results));
    const ceiling = ceilingTable(results);
    if (ceiling) say('\nagainst the empty Fastify route (same load, same run):\n' + ceiling);
    const targets = targetsOf(results);
    if (targets) say('\nagainst the issues\' targets (reported, never failing the bench):\n' + targets);
    const storage = storageTable(results);
    if (storage) say('\nbytes written per debit (WAL: the side\'s own relations and commits, by pg_walinspect; "(cluster)": the whole cluster\'s):\n' + storage);
    say('\n' + details(results));
    say('\n' + machineLine(machine));
    writeResults(opts, results, machine, failures);
    say(`\nresults: ${relative(process.cwd(), opts.resultsFile) || opts.resultsFile}`);
    if (failures.length > 0) {
      process.stderr.write(`\nbench FAILED (${failures.length}):\n${failures.map((f) => `  - ${f}`).join('\n')}\n`);
      return 1;
    }
    say('all correctness checks passed');
    return 0;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (!interrupted) await cleanup();
  }
}

function scenarioTitle(id: number, opts: BenchOptions): string {
  switch (id) {
    case 1:
      return `HTTP debit on one hot account, ${opts.connections} connections`;
    case 2:
      return `HTTP debit over ${opts.accounts} accounts (random per request), ${opts.connections} connections`;
    case 3:
      return 'in-process (SDK) debits on one hot account';
    case 4:
      return 'hold + capture cycles in process (Tally only)';
    case 5:
      return `usage events, POST /v1/events/batch of 1,000 over ${opts.accounts} users, vs the SQL function per event`;
    case 6:
      return `entitlement checks, POST /v1/check, ${opts.connections} connections (Tally only)`;
    case 7:
      return `gateway overhead: POST /gateway/v1/chat/completions vs the fake upstream directly, ${opts.gatewayConnections.join(' and ')} connections, ${opts.gatewayRounds} interleaved rounds; then ${opts.gatewayThroughputConnections} connections`;
    case 8:
      return `storage on the local driver: 1 KB uploads and range reads, ${opts.storageConnections.join(' and ')} connections; then one ${opts.storageBigMb} MB streamed upload`;
    case 10:
      return `tally import: ${opts.importRows.toLocaleString('en-US')} ledger-relevant video-credits rows (001's shape, generated set-based), in a child process; then again`;
    case 11:
      return `${opts.processes} Tally processes (TALLY_PROCESSES) vs 1: HTTP debit over ${opts.accounts} accounts, ${opts.connections} connections, ${opts.processRounds} interleaved rounds`;
    default:
      return `request logging cost: HTTP debit over ${opts.accounts} accounts with logging on (as shipped) vs off, ${opts.loggingRounds} interleaved rounds`;
  }
}

const targetsOf = (results: ScenarioResult[]): string => targetsTable(results.map((r) => ({ id: r.id, targets: r.targets ?? [] })));

const measurementJson = (m: Measurement) => ({
  ops_per_sec: Math.round(m.opsPerSec * 10) / 10,
  p50_ms: Math.round(m.p50 * 100) / 100,
  p99_ms: Math.round(m.p99 * 100) / 100,
  ok: m.ok,
  statuses: m.statuses,
  errors: m.errors,
  timeouts: m.timeouts,
  seconds: m.seconds,
  concurrency: m.concurrency,
});

function writeResults(opts: BenchOptions, results: ScenarioResult[], machine: ReturnType<typeof machineInfo>, failures: string[]): void {
  mkdirSync(dirname(opts.resultsFile), { recursive: true });
  const json = {
    generated_at: new Date().toISOString(),
    tally_version: VERSION,
    ok: failures.length === 0,
    failures,
    options: {
      database: redact(opts.url),
      baseline_sql: opts.baselineSql,
      seconds: opts.seconds,
      warmup_seconds: opts.warmupSeconds,
      connections: opts.connections,
      accounts: opts.accounts,
      server_pool_max: opts.serverPoolMax,
      sdk_inflight: opts.sdkInflight,
      sdk_baseline_clients: opts.sdkBaselineClients,
      hold_inflight: opts.holdInflight,
      gateway_connections: opts.gatewayConnections,
      gateway_rounds: opts.gatewayRounds,
      gateway_throughput_connections: opts.gatewayThroughputConnections,
      gateway_users: opts.gatewayUsers,
      storage_connections: opts.storageConnections,
      storage_big_mb: opts.storageBigMb,
      logging_rounds: opts.loggingRounds,
      processes: opts.processes,
      process_rounds: opts.processRounds,
      import_rows: opts.importRows,
      tally_log_level: opts.tallyLogLevel,
    },
    machine,
    table: table(results).split('\n'),
    ceiling_table: ceilingTable(results).split('\n'),
    storage_table: storageTable(results).split('\n'),
    targets_table: targetsOf(results).split('\n'),
    scenarios: results.map((r) => ({
      id: r.id,
      name: r.name,
      shape: r.shape,
      ratio: r.ratio === null ? null : Math.round(r.ratio * 1000) / 1000,
      tally: measurementJson(r.tally),
      baseline: r.baseline ? measurementJson(r.baseline) : null,
      ceiling: r.ceiling ? measurementJson(r.ceiling) : null,
      tally_of_ceiling: r.ceiling && r.ceiling.opsPerSec > 0 ? Math.round((r.tally.opsPerSec / r.ceiling.opsPerSec) * 1000) / 1000 : null,
      storage: r.storage ?? null,
      targets: r.targets ?? null,
      extra: r.extra ?? null,
      checks: r.checks,
    })),
  };
  writeFileSync(opts.resultsFile, JSON.stringify(json, null, 2) + '\n');
}
