import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { must } from '../../src/lib/must.js';
import { type Check, check, checkpoint, reconcileCheck, settled, tallyEntries, tallyExisting } from './checks.js';
import { type ServerChild, startTally } from './children.js';
import { runHttpLoad } from './http-load.js';
import { cpuOf } from './proc.js';
import { type BenchContext, debitChecks, pickFrom, type ScenarioResult, transactionIdOf } from './scenarios.js';
import { Latencies, type Measurement, measurement, StatusCounts } from './stats.js';
import { target } from './targets.js';

// ---------------------------------------------------------------------------------------------
// Scenario 9 (issue 19, "Proofs and speed"): what request logging costs debit throughput.
// ---------------------------------------------------------------------------------------------

type Mode = 'on' | 'off';

/** The two Tally processes' logging environment: `on` is a default deployment's, `off` turns both off. */
const LOGGING: Record<Mode, Record<string, string>> = {
  on: { TALLY_REQUEST_LOG: 'on', TALLY_API_LOGS: 'on' },
  off: { TALLY_REQUEST_LOG: 'off', TALLY_API_LOGS: 'off' },
};

interface SideTally {
  server: ServerChild;
  latencies: Latencies;
  statuses: StatusCounts;
  ok: number;
  seconds: number;
  errors: number;
  timeouts: number;
  ids: string[];
  written: number;
  stdoutLines: number;
  apiLogs: number;
  /** CPU seconds the process used during its measured rounds (including its api_logs flushes after them). */
  cpu: number;
}

/**
 * HTTP debit over the spread accounts (scenario 2's load) against two `node bin/tally.js start`
 * processes on the same schema, both at LOG_LEVEL=info: one with the request log and api_logs on,
 * as shipped, one with both off. Both run throughout (same warm-up); the measured rounds alternate
 * which goes first, so drift on a shared machine falls on both. Each process's stdout is read and
 * discarded, as a log shipper reads a deployment's. Cost = 1 − on ÷ off throughput. Checks: each
 * side's debits (answers, ledger rows, every 2xx durable), that logging really was on (a log line
 * and an api_logs row per request on one side, none on the other) and reconcile.
 */
export async function loggingCost(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const tag = randomBytes(4).toString('hex');
  const pick = pickFrom(ctx.accounts.spread);
  const auth = `Bearer ${tally.secrets.serviceKey}`;
  let n = 0;
  const next = () => ({ body: `{"user_id":"${pick()}","amount":1,"reason":"bench"}`, headers: { authorization: auth, 'idempotency-key': `b9-${tag}-${n++}` } });
  const conn = opts.connections;
  const sides = new Map<Mode, SideTally>();
  try {
    for (const mode of ['on', 'off'] as const) {
      const server = await startTally({
        url: opts.url,
        schema: tally.schema,
        poolMax: opts.serverPoolMax,
        logLevel: 'info',
        secrets: tally.secrets,
        nodeArgs: opts.childNodeArgs,
        name: `tally (logging ${mode})`,
        env: LOGGING[mode],
        stdout: 'ship',
      });
      sides.set(mode, { server, latencies: new Latencies(), statuses: new StatusCounts(), ok: 0, seconds: 0, errors: 0, timeouts: 0, ids: [], written: 0, stdoutLines: 0, apiLogs: 0, cpu: 0 });
    }
    const side = (mode: Mode) => must(sides.get(mode), 'both sides started');
    ctx.log(`  warm-up:  ${opts.warmupSeconds}s on each (logging on: TALLY_REQUEST_LOG=on TALLY_API_LOGS=on LOG_LEVEL=info; off: both off)`);
    for (const mode of ['on', 'off'] as const) await runHttpLoad({ url: side(mode).server.url, path: '/v1/credits/debit', connections: conn, seconds: opts.warmupSeconds, next });

    const roundSeconds = Math.max(1, Math.round(opts.seconds / opts.loggingRounds));
    ctx.log(`  measured: ${opts.loggingRounds} rounds of ${roundSeconds}s per side, ${conn} connections, alternating which goes first`);
    const rounds: { on: number; off: number }[] = [];
    const apiLogs = sql.table(`${tally.database.schema}.api_logs`);
    const countApiLogs = async () =>
      must((await sql<{ n: number }>`select count(*)::int as n from ${apiLogs}`.execute(tally.database.root)).rows[0], 'a count returns one row').n;
    for (let r = 0; r < opts.loggingRounds; r++) {
      const round = { on: 0, off: 0 };
      for (const mode of r % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
        const s = side(mode);
        const debitsBefore = await settled(() => tallyEntries(tally.database, 'debit'));
        const logsBefore = await countApiLogs();
        const linesBefore = s.server.stdoutVolume().lines;
        const cpuBefore = cpuOf(s.server.pid) ?? Number.NaN;
        const m = await runHttpLoad({
          url: s.server.url,
          path: '/v1/credits/debit',
          connections: conn,
          seconds: roundSeconds,
          next,
          onAnswer: (status, answer) => {
            if (status === 201) s.ids.push(transactionIdOf(answer));
          },
        });
        s.written += (await settled(() => tallyEntries(tally.database, 'debit'))) - debitsBefore;
        // api_logs are written in batches, a partial one after TALLY_API_LOGS_FLUSH_MS (1 s).
        s.apiLogs += (await settled(countApiLogs)) - logsBefore;
        s.stdoutLines += s.server.stdoutVolume().lines - linesBefore;
        s.cpu += (cpuOf(s.server.pid) ?? Number.NaN) - cpuBefore;
        for (const v of m.samples.values()) s.latencies.add(v);
        for (const [status, count] of Object.entries(m.statuses)) for (let i = 0; i < count; i++) s.statuses.add(Number(status));
        s.ok += m.ok;
        s.seconds += m.seconds;
        s.errors += m.errors;
        s.timeouts += m.timeouts;
        round[mode] = m.opsPerSec;
      }
      rounds.push(round);
    }

    const measured = (mode: Mode): Measurement => {
      const s = side(mode);
      return measurement(s.latencies, s.statuses, s.ok, s.seconds, conn, s.errors, s.timeouts);
    };
    const on = measured('on');
    const off = measured('off');
    const checks: Check[] = [];
    for (const mode of ['on', 'off'] as const) {
      const s = side(mode);
      const found = await tallyExisting(tally.database, s.ids.filter(Boolean));
      const m = mode === 'on' ? on : off;
      // Named by the side; the Check type knows only tally and baseline.
      for (const c of debitChecks('tally', m, 201, s.written, conn * opts.loggingRounds, { ids: s.ids.length, found })) checks.push({ ...c, name: `logging ${mode}: ${c.name}` });
    }
    const sOn = side('on');
    const sOff = side('off');
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
    const cpuPer = (x: SideTally) => (x.cpu / Math.max(1, x.written)) * 1e6;
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
        rounds,
        stdout_bytes_on: sOn.server.stdoutVolume().bytes,
        api_logs_rows_on: sOn.apiLogs,
        cpu_us_per_debit: { on: cpuPer(sOn), off: cpuPer(sOff) },
      },
      checks,
    };
  } finally {
    for (const s of sides.values()) await s.server.stop();
  }
}
