import { check, checkpoint, reconcileCheck } from './checks.js';
import { interleavedDebits } from './ab-debit.js';
import type { BenchContext, ScenarioResult } from './scenarios.js';
import { target } from './targets.js';

// ---------------------------------------------------------------------------------------------
// Scenario 9 (issue 19, "Proofs and speed"): what request logging costs debit throughput.
// ---------------------------------------------------------------------------------------------

/** The two Tally processes' logging environment: `on` is a default deployment's, `off` turns both off. */
const LOGGING = {
  on: { TALLY_REQUEST_LOG: 'on', TALLY_API_LOGS: 'on' },
  off: { TALLY_REQUEST_LOG: 'off', TALLY_API_LOGS: 'off' },
};

/**
 * HTTP debit over the spread accounts (scenario 2's load, interleaved: ab-debit.ts) against two
 * `node bin/tally.js start` processes on the same schema, both at LOG_LEVEL=info: one with the
 * request log and api_logs on, as shipped, one with both off. Each process's stdout is read and
 * discarded, as a log shipper reads a deployment's. Cost = 1 − on ÷ off throughput. Checks: each
 * side's debits, that logging really was on (a log line and an api_logs row per request on one
 * side, none on the other) and reconcile.
 */
export async function loggingCost(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const conn = opts.connections;
  const run = await interleavedDebits(
    ctx,
    [
      { mode: 'on', name: 'tally (logging on)', env: LOGGING.on, logLevel: 'info', stdout: 'ship' },
      { mode: 'off', name: 'tally (logging off)', env: LOGGING.off, logLevel: 'info', stdout: 'ship' },
    ] as const,
    opts.loggingRounds,
    'b9',
  );
  try {
    const on = run.measured('on');
    const off = run.measured('off');
    const checks = await run.checks();
    const sOn = run.side('on');
    const sOff = run.side('off');
    const requestsOn = sOn.statuses.count(() => true);
    const requestsOff = sOff.statuses.count(() => true);
    checks.push(
      check('tally', 'logging on: a log line and an api_logs row per request', sOn.stdoutLines >= requestsOn && sOn.apiLogs >= requestsOn,
        `${sOn.stdoutLines} stdout line(s) and ${sOn.apiLogs} api_logs row(s) for ${requestsOn} answer(s) (${(sOn.server.stdoutVolume().bytes / 2 ** 20).toFixed(1)} MB of stdout read and discarded in all)`),
      // A scheduler line at info may land in a round; a request log would be a line per request.
      check('tally', 'logging off: none', sOff.stdoutLines <= Math.max(10, requestsOff / 100) && sOff.apiLogs === 0, `${sOff.stdoutLines} stdout line(s), ${sOff.apiLogs} api_logs row(s) during its rounds of ${requestsOff} answer(s)`),
      await reconcileCheck(tally.database),
    );
    await checkpoint(tally.database);
    const cost = off.opsPerSec > 0 ? (1 - on.opsPerSec / off.opsPerSec) * 100 : Number.NaN;
    // Throughput on a loaded shared machine swings by more than 5% from one second to the next; the
    // process's own CPU per request does not depend on the neighbours nearly as much.
    const cpuPer = (x: typeof sOn) => (x.cpu / Math.max(1, x.written)) * 1e6;
    return {
      id: 9,
      name: `request logging on vs off: HTTP debit, ${ctx.accounts.spread.length} accounts, ${conn} conn`,
      shape: {
        tally: `POST /v1/credits/debit (random user of ${ctx.accounts.spread.length}), ${conn} connections; logging on: TALLY_REQUEST_LOG=on, TALLY_API_LOGS=on, LOG_LEVEL=info, stdout read and discarded; ${opts.loggingRounds} interleaved rounds`,
        baseline: `the same, TALLY_REQUEST_LOG=off and TALLY_API_LOGS=off (LOG_LEVEL=info) — in the baseline columns`,
      },
      tally: on,
      baseline: off,
      ratio: off.opsPerSec > 0 ? on.opsPerSec / off.opsPerSec : null,
      targets: [
        target('throughput lost to request logging', cost, '%', 'max', 5, `on ${Math.round(on.opsPerSec)} ops/s vs off ${Math.round(off.opsPerSec)} ops/s, ${opts.loggingRounds} interleaved rounds; p99 on ${on.p99.toFixed(1)} ms, off ${off.p99.toFixed(1)} ms; server CPU per debit on ${Math.round(cpuPer(sOn))} µs, off ${Math.round(cpuPer(sOff))} µs`),
        target(
          'server CPU per debit added by logging (same bound, steadier view)',
          (cpuPer(sOn) / cpuPer(sOff) - 1) * 100,
          '%',
          'max',
          5,
          `utime + stime of each process during its rounds ÷ debits it wrote: on ${Math.round(cpuPer(sOn))} µs, off ${Math.round(cpuPer(sOff))} µs`,
        ),
      ],
      extra: {
        rounds: run.rounds,
        stdout_bytes_on: sOn.server.stdoutVolume().bytes,
        api_logs_rows_on: sOn.apiLogs,
        cpu_us_per_debit: { on: cpuPer(sOn), off: cpuPer(sOff) },
      },
      checks,
    };
  } finally {
    await run.stop();
  }
}
