import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { must } from '../../src/lib/must.js';
import { type Check, settled, tallyEntries, tallyExisting } from './checks.js';
import { type ServerChild, startTally } from './children.js';
import { runHttpLoad } from './http-load.js';
import { cpuOfTree } from './proc.js';
import { type BenchContext, debitChecks, pickFrom, transactionIdOf } from './scenarios.js';
import { Latencies, type Measurement, measurement, StatusCounts } from './stats.js';

/** One side of an interleaved comparison: a Tally process (or a supervisor of several) and what it did. */
export interface AbSide {
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
  /** CPU seconds the process used during its measured rounds (its children's too, once they exit: see cpuOf). */
  cpu: number;
}

export interface AbRun<M extends string> {
  side(mode: M): AbSide;
  measured(mode: M): Measurement;
  rounds: Record<M, number>[];
  /** Each side's debit checks (answers, ledger rows, every 2xx durable), named by the side. */
  checks(): Promise<Check[]>;
}

/**
 * HTTP debit over the spread accounts (scenario 2's load) against two `node bin/tally.js start`
 * processes on the same schema, each with its own environment. Both run throughout (same warm-up);
 * the measured rounds alternate which goes first, so drift on a shared machine falls on both. The
 * caller stops the servers (`stop`), after reading what it needs.
 */
export async function interleavedDebits<M extends string>(
  ctx: BenchContext,
  sides: readonly { mode: M; name: string; env: Record<string, string>; logLevel: string; stdout: 'parse' | 'ship' }[],
  rounds: number,
  tagPrefix: string,
): Promise<AbRun<M> & { stop(): Promise<void> }> {
  const { opts, tally } = ctx;
  const tag = randomBytes(4).toString('hex');
  const pick = pickFrom(ctx.accounts.spread);
  const auth = `Bearer ${tally.secrets.serviceKey}`;
  let n = 0;
  const next = () => ({ body: `{"user_id":"${pick()}","amount":1,"reason":"bench"}`, headers: { authorization: auth, 'idempotency-key': `${tagPrefix}-${tag}-${n++}` } });
  const conn = opts.connections;
  const started = new Map<M, AbSide>();
  const stop = async () => {
    for (const s of started.values()) await s.server.stop();
  };
  try {
    for (const s of sides) {
      const server = await startTally({ url: opts.url, schema: tally.schema, poolMax: opts.serverPoolMax, logLevel: s.logLevel, secrets: tally.secrets, nodeArgs: opts.childNodeArgs, name: s.name, env: s.env, stdout: s.stdout });
      started.set(s.mode, { server, latencies: new Latencies(), statuses: new StatusCounts(), ok: 0, seconds: 0, errors: 0, timeouts: 0, ids: [], written: 0, stdoutLines: 0, apiLogs: 0, cpu: 0 });
    }
    const side = (mode: M) => must(started.get(mode), 'every side started');
    const modes = sides.map((s) => s.mode);
    ctx.log(`  warm-up:  ${opts.warmupSeconds}s on each (${sides.map((s) => `${s.mode}: ${s.name}`).join('; ')})`);
    for (const mode of modes) await runHttpLoad({ url: side(mode).server.url, path: '/v1/credits/debit', connections: conn, seconds: opts.warmupSeconds, next });

    const roundSeconds = Math.max(1, Math.round(opts.seconds / rounds));
    ctx.log(`  measured: ${rounds} rounds of ${roundSeconds}s per side, ${conn} connections, alternating which goes first`);
    const perRound: Record<M, number>[] = [];
    const apiLogs = sql.table(`${tally.database.schema}.api_logs`);
    const countApiLogs = async () =>
      must((await sql<{ n: number }>`select count(*)::int as n from ${apiLogs}`.execute(tally.database.root)).rows[0], 'a count returns one row').n;
    for (let r = 0; r < rounds; r++) {
      const round = {} as Record<M, number>;
      for (const mode of r % 2 === 0 ? modes : [...modes].reverse()) {
        const s = side(mode);
        const debitsBefore = await settled(() => tallyEntries(tally.database, 'debit'));
        const logsBefore = await countApiLogs();
        const linesBefore = s.server.stdoutVolume().lines;
        const cpuBefore = cpuOfTree(s.server.pid) ?? Number.NaN;
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
        s.cpu += (cpuOfTree(s.server.pid) ?? Number.NaN) - cpuBefore;
        for (const v of m.samples.values()) s.latencies.add(v);
        for (const [status, count] of Object.entries(m.statuses)) for (let i = 0; i < count; i++) s.statuses.add(Number(status));
        s.ok += m.ok;
        s.seconds += m.seconds;
        s.errors += m.errors;
        s.timeouts += m.timeouts;
        round[mode] = m.opsPerSec;
      }
      perRound.push(round);
    }
    const measured = (mode: M): Measurement => {
      const s = side(mode);
      return measurement(s.latencies, s.statuses, s.ok, s.seconds, conn, s.errors, s.timeouts);
    };
    const checks = async (): Promise<Check[]> => {
      const out: Check[] = [];
      for (const mode of modes) {
        const s = side(mode);
        const found = await tallyExisting(tally.database, s.ids.filter(Boolean));
        // Named by the side; the Check type knows only tally and baseline.
        for (const c of debitChecks('tally', measured(mode), 201, s.written, conn * rounds, { ids: s.ids.length, found })) out.push({ ...c, name: `${mode}: ${c.name}` });
      }
      return out;
    };
    return { side, measured, rounds: perRound, checks, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
