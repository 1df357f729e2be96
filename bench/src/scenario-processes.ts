import { checkpoint, reconcileCheck } from './checks.js';
import { interleavedDebits } from './ab-debit.js';
import type { BenchContext, ScenarioResult } from './scenarios.js';

// ---------------------------------------------------------------------------------------------
// Scenario 11 (issue 21, "If the node thread remains the bound, … measure two processes against
// one"): `TALLY_PROCESSES=2` against one process, scenario 2's load, interleaved.
// ---------------------------------------------------------------------------------------------

/**
 * HTTP debit over the spread accounts (ab-debit.ts) against two `node bin/tally.js start` on the
 * same schema: one with `TALLY_PROCESSES=<n>` (default 2: the supervisor and its servers, each
 * with the bench's pool), one ordinary process, as shipped otherwise (logging at the bench's level).
 * The n-process side goes in the Tally columns, the single process in the baseline columns; ratio =
 * n ÷ 1. CPU is the whole process tree's. Checks: each side's debits and reconcile.
 */
export async function processesScaling(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const n = opts.processes;
  const conn = opts.connections;
  const run = await interleavedDebits(
    ctx,
    [
      { mode: 'many', name: `tally (${n} processes)`, env: { TALLY_PROCESSES: String(n) }, logLevel: opts.tallyLogLevel, stdout: 'parse' },
      { mode: 'one', name: 'tally (1 process)', env: { TALLY_PROCESSES: '1' }, logLevel: opts.tallyLogLevel, stdout: 'parse' },
    ] as const,
    opts.processRounds,
    'b11',
  );
  try {
    const many = run.measured('many');
    const one = run.measured('one');
    const checks = await run.checks();
    checks.push(await reconcileCheck(tally.database));
    await checkpoint(tally.database);
    const cpuPer = (mode: 'many' | 'one') => (run.side(mode).cpu / Math.max(1, run.side(mode).written)) * 1e6;
    return {
      id: 11,
      name: `${n} processes vs 1: HTTP debit, ${ctx.accounts.spread.length} accounts, ${conn} conn`,
      shape: {
        tally: `POST /v1/credits/debit (random user of ${ctx.accounts.spread.length}), ${conn} connections, TALLY_PROCESSES=${n} (pool ${opts.serverPoolMax} each); ${opts.processRounds} interleaved rounds`,
        baseline: 'the same against one Tally process — in the baseline columns',
      },
      tally: many,
      baseline: one,
      ratio: one.opsPerSec > 0 ? many.opsPerSec / one.opsPerSec : null,
      targets: [],
      extra: { rounds: run.rounds, cpu_us_per_debit: { many: cpuPer('many'), one: cpuPer('one') }, processes: n },
      checks,
    };
  } finally {
    await run.stop();
  }
}
