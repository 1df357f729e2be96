import { randomBytes } from 'node:crypto';
import { statusOf } from '../../src/http/errors.js';
import pg from 'pg';
import { TallyError } from '../../src/sdk/credits.sdk.js';
import {
  baselineDebits,
  type Check,
  check,
  checkpoint,
  reconcileCheck,
  settled,
  tallyEntries,
  tallyExisting,
  tallyHolds,
} from './checks.js';
import { startBaseline, startEmpty, startTally } from './children.js';
import { type HttpLoad, runHttpLoad } from './http-load.js';
import type { BenchOptions } from './options.js';
import type { BenchAccounts, TallySide } from './setup.js';
import { Latencies, type Measurement, measurement, since, StatusCounts } from './stats.js';
import { type StorageUse, storageMark, storageUse } from './storage.js';
import type { Target } from './targets.js';
import { must } from '../../src/lib/must.js';

export interface ScenarioResult {
  id: number;
  name: string;
  /** The load both sides got. */
  shape: { tally: string; baseline: string | null };
  tally: Measurement;
  baseline: Measurement | null;
  /** Tally ops/s ÷ baseline ops/s. */
  ratio: number | null;
  /** The empty Fastify route under the same load (HTTP scenarios): the stack's own ceiling. */
  ceiling?: Measurement;
  /** Bytes written per debit (debit scenarios). */
  storage?: { tally: StorageUse; baseline: StorageUse | null };
  /** Numbers an issue sets a target for (scenarios 7–10), met or not. */
  targets?: Target[];
  /** More of the scenario's numbers, for the JSON (each side of a difference, rounds…). */
  extra?: Record<string, unknown>;
  checks: Check[];
}

export interface BenchContext {
  opts: BenchOptions;
  tally: TallySide;
  accounts: BenchAccounts;
  /** A small pool for the baseline's counts. */
  baselineAdmin: pg.Pool;
  log: (line: string) => void;
}

export const pickFrom = (ids: string[]) => () => must(ids[Math.floor(Math.random() * ids.length)], 'ids to pick from');

/** The id of the ledger entry in a Movement answer (cheap: no JSON.parse on the hot path). */
const TXN_ID = /"transaction":\{"id":"([^"]+)"/;
export function transactionIdOf(body: string): string {
  const m = TXN_ID.exec(body);
  if (m) return must(m[1], 'the pattern captures the id');
  try {
    const parsed = JSON.parse(body) as { transaction?: { id?: unknown } };
    return typeof parsed.transaction?.id === 'string' ? parsed.transaction.id : '';
  } catch {
    return '';
  }
}

export const describeStatuses = (m: Measurement): string =>
  Object.entries(m.statuses)
    .map(([s, n]) => `${s}×${n}`)
    .join(' ') || 'none';

/** Checks shared by every debit scenario (HTTP or in process): answers, durability, ledger count. */
export function debitChecks(
  side: 'tally' | 'baseline',
  m: Measurement,
  okStatus: number,
  written: number,
  inflightAtStop: number,
  committed: { ids: number; found: number } | null,
): Check[] {
  const ok = m.statuses[String(okStatus)] ?? 0;
  const bad = Object.entries(m.statuses)
    .filter(([s]) => Number(s) !== okStatus && Number(s) !== 402)
    .reduce((sum, [, n]) => sum + n, 0);
  const checks = [
    check(side, 'answers', bad === 0, `${describeStatuses(m)}${bad ? ` — ${bad} answer(s) neither ${okStatus} nor 402` : ''}`),
    check(side, 'errors/timeouts', m.errors === 0 && m.timeouts === 0, `${m.errors} error(s), ${m.timeouts} timeout(s)`, false),
    check(
      side,
      'ledger rows vs answers',
      written >= ok && written - ok <= inflightAtStop,
      `${written} debit row(s) written during the run, ${ok} ${okStatus} answer(s)` +
        (inflightAtStop > 0 ? ` (up to ${inflightAtStop} may commit unanswered: in flight when the load stopped)` : ' (must be equal)'),
    ),
  ];
  if (committed) {
    checks.push(
      check(
        side,
        'every 2xx durable',
        committed.ids === ok && committed.found === committed.ids,
        `${committed.found} of ${committed.ids} answered transaction ids found in the ledger (${ok} ${okStatus} answers)`,
      ),
    );
  }
  return checks;
}

// ---------------------------------------------------------------------------------------------
// Scenarios 1 and 2: HTTP debit, Tally's server vs the baseline server, each in its own process.
// ---------------------------------------------------------------------------------------------

/**
 * Tally's server in its own process for one HTTP scenario: warm-up, then the measured run
 * (`mark` runs between the two, to count rows written by the measured run only), and the server
 * stopped whatever happens.
 */
async function measureTallyHttp(
  ctx: BenchContext,
  load: Omit<HttpLoad, 'url' | 'seconds'>,
  mark: () => Promise<void> = async () => {},
): Promise<Measurement> {
  const { opts, tally } = ctx;
  const server = await startTally({
    url: opts.url,
    schema: tally.schema,
    poolMax: opts.serverPoolMax,
    logLevel: opts.tallyLogLevel,
    secrets: tally.secrets,
    nodeArgs: opts.childNodeArgs,
  });
  try {
    const { onAnswer: _measuredOnly, ...warm } = load;
    await runHttpLoad({ ...warm, url: server.url, seconds: opts.warmupSeconds });
    await mark();
    return await runHttpLoad({ ...load, url: server.url, seconds: opts.seconds });
  } finally {
    await server.stop();
  }
}

/**
 * The ceiling for an HTTP scenario: the empty Fastify route (empty-server.ts) in its own process,
 * under the same load (path, bodies, headers, connections, warm-up and measured seconds).
 */
async function measureCeiling(ctx: BenchContext, load: Omit<HttpLoad, 'url' | 'seconds' | 'onAnswer'>): Promise<Measurement> {
  const { opts } = ctx;
  ctx.log(`  ceiling:  starting the empty Fastify route, same load`);
  const server = await startEmpty({ nodeArgs: opts.childNodeArgs });
  try {
    await runHttpLoad({ ...load, url: server.url, seconds: opts.warmupSeconds });
    return await runHttpLoad({ ...load, url: server.url, seconds: opts.seconds });
  } finally {
    await server.stop();
  }
}

async function httpDebit(ctx: BenchContext, id: number, name: string, pick: () => string): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const tag = randomBytes(4).toString('hex');
  let n = 0;
  const body = () => `{"user_id":"${pick()}","amount":1,"reason":"bench"}`;
  const conn = opts.connections;

  // Tally: POST /v1/credits/debit with a unique Idempotency-Key per request.
  const tallyAuth = `Bearer ${tally.secrets.serviceKey}`;
  const tallyNext = () => ({ body: body(), headers: { authorization: tallyAuth, 'idempotency-key': `b${id}-${tag}-${n++}` } });
  ctx.log(`  tally:    starting the server (node bin/tally.js start), ${opts.warmupSeconds}s warm-up, ${opts.seconds}s measured`);
  const ids: string[] = [];
  let before = 0;
  let tallyMark = await storageMark(ctx.baselineAdmin, tally.schema);
  const tallyM = await measureTallyHttp(
    ctx,
    {
      path: '/v1/credits/debit',
      connections: conn,
      next: tallyNext,
      onAnswer: (status, answer) => {
        if (status === 201) ids.push(transactionIdOf(answer));
      },
    },
    async () => {
      before = await settled(() => tallyEntries(tally.database, 'debit'));
      tallyMark = await storageMark(ctx.baselineAdmin, tally.schema);
    },
  );
  const written = (await settled(() => tallyEntries(tally.database, 'debit'))) - before;
  const tallyStorage = await storageUse(ctx.baselineAdmin, tally.schema, tallyMark, written);
  const found = await tallyExisting(tally.database, ids.filter(Boolean));
  const checks = debitChecks('tally', tallyM, 201, written, conn, { ids: ids.length, found });
  checks.push(await reconcileCheck(tally.database));
  await checkpoint(tally.database);

  // Baseline: POST /debit → one call of the SQL function.
  const baselineKey = randomBytes(24).toString('hex');
  const baseNext = () => ({ body: body(), headers: { authorization: `Bearer ${baselineKey}` } });
  ctx.log(`  baseline: starting the server (Fastify + pg Pool of ${opts.serverPoolMax}), same load`);
  const base = await startBaseline({ url: opts.url, poolMax: opts.serverPoolMax, serviceKey: baselineKey, nodeArgs: opts.childNodeArgs });
  let baseM: Measurement;
  let baseWritten: number;
  let baseStorage: StorageUse;
  try {
    await runHttpLoad({ url: base.url, path: '/debit', connections: conn, seconds: opts.warmupSeconds, next: baseNext });
    const before = await settled(() => baselineDebits(ctx.baselineAdmin));
    const mark = await storageMark(ctx.baselineAdmin, 'baseline');
    baseM = await runHttpLoad({ url: base.url, path: '/debit', connections: conn, seconds: opts.seconds, next: baseNext });
    baseWritten = (await settled(() => baselineDebits(ctx.baselineAdmin))) - before;
    baseStorage = await storageUse(ctx.baselineAdmin, 'baseline', mark, baseWritten);
  } finally {
    await base.stop();
  }
  checks.push(...debitChecks('baseline', baseM, 200, baseWritten, conn, null));
  await checkpoint(tally.database);

  // The same requests Tally got (path, body, headers), answered by an empty route.
  const ceiling = await measureCeiling(ctx, { path: '/v1/credits/debit', connections: conn, next: tallyNext });

  return {
    id,
    name,
    shape: {
      tally: `POST /v1/credits/debit, ${conn} connections, unique Idempotency-Key each, DATABASE_POOL_MAX=${opts.serverPoolMax}`,
      baseline: `POST /debit → baseline.debit_user_credits_transaction, ${conn} connections, pg Pool max ${opts.serverPoolMax}`,
    },
    tally: tallyM,
    baseline: baseM,
    ratio: baseM.opsPerSec > 0 ? tallyM.opsPerSec / baseM.opsPerSec : null,
    ceiling,
    storage: { tally: tallyStorage, baseline: baseStorage },
    checks,
  };
}

export const httpHot = (ctx: BenchContext) =>
  httpDebit(ctx, 1, `HTTP debit, 1 hot account, ${ctx.opts.connections} conn`, () => ctx.accounts.hotHttp);

export const httpSpread = (ctx: BenchContext) =>
  httpDebit(ctx, 2, `HTTP debit, ${ctx.accounts.spread.length} accounts, ${ctx.opts.connections} conn`, pickFrom(ctx.accounts.spread));

// ---------------------------------------------------------------------------------------------
// In-process load: `concurrency` loops, each calling again as soon as its call resolves.
// ---------------------------------------------------------------------------------------------

interface Call {
  /** The answer's status (2xx counts as done). Throwing counts as an error. */
  (): Promise<number>;
}

/** An SDK call's answer, or the status of the TallyError it threw (anything else is an error). */
async function answered<R>(call: () => Promise<R>): Promise<R | number> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof TallyError) return statusOf(err.code);
    throw err;
  }
}

async function closedLoop(seconds: number, concurrency: number, call: Call): Promise<Measurement> {
  const latencies = new Latencies();
  const statuses = new StatusCounts();
  let errors = 0;
  let firstError: unknown;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (process.hrtime.bigint() < end) {
        const t0 = process.hrtime.bigint();
        try {
          const status = await call();
          latencies.add(since(t0));
          statuses.add(status);
        } catch (err) {
          errors++;
          firstError ??= err;
        }
      }
    }),
  );
  // Every call that started before the deadline is answered: the measured time runs to the last.
  const elapsed = since(start) / 1000;
  if (firstError) process.stderr.write(`  first error: ${firstError instanceof Error ? firstError.message : String(firstError)}\n`);
  return measurement(latencies, statuses, statuses.count((s) => s >= 200 && s < 300), elapsed, concurrency, errors);
}

// ---------------------------------------------------------------------------------------------
// Scenario 3: in-process debits on one hot account — CreditsService.execute vs the SQL function.
// ---------------------------------------------------------------------------------------------

export async function sdkHot(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const sdk = tally.app.services.sdk.credits;
  const userId = ctx.accounts.hotSdk;
  const tag = randomBytes(4).toString('hex');
  let n = 0;
  const ids: string[] = [];
  let collect = false;
  // The typed in-process SDK: the route's validation, operation and idempotency scope, then
  // CreditsService.execute. A unique Idempotency-Key per call, as over HTTP.
  const tallyCall: Call = () =>
    answered(async () => {
      const movement = await sdk.debit({ user_id: userId, amount: 1, reason: 'bench sdk' }, { idempotencyKey: `b3-${tag}-${n++}` });
      if (collect) ids.push(movement.transaction.id);
      return 201;
    });
  ctx.log(`  tally:    sdk.credits.debit (→ CreditsService.execute), ${opts.sdkInflight} calls in flight`);
  await closedLoop(opts.warmupSeconds, opts.sdkInflight, tallyCall);
  const before = await settled(() => tallyEntries(tally.database, 'debit'));
  const tallyMark = await storageMark(ctx.baselineAdmin, tally.schema);
  collect = true;
  const tallyM = await closedLoop(opts.seconds, opts.sdkInflight, tallyCall);
  const written = (await tallyEntries(tally.database, 'debit')) - before;
  const tallyStorage = await storageUse(ctx.baselineAdmin, tally.schema, tallyMark, written);
  const found = await tallyExisting(tally.database, ids.filter(Boolean));
  const checks = debitChecks('tally', tallyM, 201, written, 0, { ids: ids.length, found });
  checks.push(await reconcileCheck(tally.database));
  await checkpoint(tally.database);

  ctx.log(`  baseline: select baseline.debit_user_credits_transaction(…) through a pg Pool of ${opts.sdkBaselineClients}`);
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.sdkBaselineClients });
  let baseM: Measurement;
  let baseWritten: number;
  let baseStorage: StorageUse;
  try {
    const baseCall: Call = async () => {
      try {
        await pool.query('select baseline.debit_user_credits_transaction($1, $2, $3, $4)', [userId, 1, 'bench sdk', '{}']);
        return 200;
      } catch (err) {
        if (err instanceof Error && err.message.includes('insufficient credits')) return 402;
        throw err;
      }
    };
    await closedLoop(opts.warmupSeconds, opts.sdkBaselineClients, baseCall);
    const baseBefore = await baselineDebits(ctx.baselineAdmin);
    const mark = await storageMark(ctx.baselineAdmin, 'baseline');
    baseM = await closedLoop(opts.seconds, opts.sdkBaselineClients, baseCall);
    baseWritten = (await baselineDebits(ctx.baselineAdmin)) - baseBefore;
    baseStorage = await storageUse(ctx.baselineAdmin, 'baseline', mark, baseWritten);
  } finally {
    await pool.end();
  }
  checks.push(...debitChecks('baseline', baseM, 200, baseWritten, 0, null));
  await checkpoint(tally.database);

  return {
    id: 3,
    name: `SDK debit, 1 hot account, ${opts.sdkInflight} vs ${opts.sdkBaselineClients} in flight`,
    shape: {
      tally: `sdk.credits.debit in process (→ CreditsService.execute), ${opts.sdkInflight} concurrent calls, unique Idempotency-Key each, pool ${opts.serverPoolMax}`,
      baseline: `pool.query(select baseline.debit_user_credits_transaction(…)), ${opts.sdkBaselineClients} concurrent calls on a pg Pool of ${opts.sdkBaselineClients}`,
    },
    tally: tallyM,
    baseline: baseM,
    ratio: baseM.opsPerSec > 0 ? tallyM.opsPerSec / baseM.opsPerSec : null,
    storage: { tally: tallyStorage, baseline: baseStorage },
    checks,
  };
}

// ---------------------------------------------------------------------------------------------
// Scenario 4: hold + capture cycles in process (Tally only: the baseline has no holds).
// ---------------------------------------------------------------------------------------------

export async function holdsHot(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const sdk = tally.app.services.sdk.credits;
  const userId = ctx.accounts.hotHolds;
  const tag = randomBytes(4).toString('hex');
  let n = 0;
  const holdStatuses = new StatusCounts();
  const captureStatuses = new StatusCounts();
  const cycle: Call = async () => {
    const held = await answered(() => sdk.hold({ user_id: userId, amount: 2 }, { idempotencyKey: `b4h-${tag}-${n++}` }));
    holdStatuses.add(typeof held === 'number' ? held : 201);
    if (typeof held === 'number') return held;
    const captured = await answered(() => sdk.capture(held.id, {}, { idempotencyKey: `b4c-${tag}-${n++}` }));
    const status = typeof captured === 'number' ? captured : 200;
    captureStatuses.add(status);
    return status;
  };
  ctx.log(`  tally:    hold then capture (whole amount), ${opts.holdInflight} cycles in flight`);
  await closedLoop(opts.warmupSeconds, opts.holdInflight, cycle);
  holdStatuses.byStatus.clear();
  captureStatuses.byStatus.clear();
  const capturesBefore = await tallyEntries(tally.database, 'capture');
  const holdsBefore = await tallyHolds(tally.database);
  const m = await closedLoop(opts.seconds, opts.holdInflight, cycle);
  const captures = (await tallyEntries(tally.database, 'capture')) - capturesBefore;
  const holdsAfter = await tallyHolds(tally.database);
  const holds = holdsAfter.total - holdsBefore.total;
  const badHolds = holdStatuses.count((s) => s !== 201 && s !== 402);
  const badCaptures = captureStatuses.count((s) => s !== 200);
  const okCycles = m.ok;
  const checks: Check[] = [
    check(
      'tally',
      'answers',
      badHolds === 0 && badCaptures === 0,
      `holds ${JSON.stringify(holdStatuses.toJSON())}, captures ${JSON.stringify(captureStatuses.toJSON())}`,
    ),
    check('tally', 'errors', m.errors === 0, `${m.errors} rejected call(s)`, false),
    check(
      'tally',
      'holds and captures durable',
      holds === holdStatuses.get(201) && captures === okCycles && holdsAfter.open === 0,
      `${holds} hold row(s) for ${holdStatuses.get(201)} 201 answer(s); ${captures} capture entr(ies) for ${okCycles} 200 answer(s); ${holdsAfter.open} hold(s) left open`,
    ),
    await reconcileCheck(tally.database),
  ];
  await checkpoint(tally.database);
  return {
    id: 4,
    name: `holds: hold+capture, 1 hot account, ${opts.holdInflight} in flight (Tally only)`,
    shape: {
      tally: `sdk.credits.hold then sdk.credits.capture (whole amount), ${opts.holdInflight} concurrent cycles; ops/s = cycles/s, latency per cycle`,
      baseline: null,
    },
    tally: m,
    baseline: null,
    ratio: null,
    checks,
  };
}

// ---------------------------------------------------------------------------------------------
// Scenario 5: usage events in batches over HTTP vs the SQL function once per event.
// ---------------------------------------------------------------------------------------------

export const BENCH_METRIC = 'bench_tokens';
const EVENTS_PER_BATCH = 1000;

export async function eventsBatch(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const pick = pickFrom(ctx.accounts.spread);
  const tag = randomBytes(4).toString('hex');
  let n = 0;
  const batch = () => {
    const events = [];
    for (let i = 0; i < EVENTS_PER_BATCH; i++) {
      events.push(`{"user_id":"${pick()}","metric":"${BENCH_METRIC}","quantity":1,"action_hash":"b5-${tag}-${n++}"}`);
    }
    return `{"events":[${events.join(',')}]}`;
  };
  const auth = `Bearer ${tally.secrets.serviceKey}`;
  let k = 0;
  const next = () => ({ body: batch(), headers: { authorization: auth, 'idempotency-key': `b5-${tag}-k${k++}` } });
  ctx.log(`  tally:    POST /v1/events/batch, ${EVENTS_PER_BATCH} events a request over ${ctx.accounts.spread.length} users, ${opts.batchConnections} connections`);
  let applied = 0;
  let refused = 0;
  let before = 0;
  const requests = await measureTallyHttp(
    ctx,
    {
      path: '/v1/events/batch',
      connections: opts.batchConnections,
      next,
      onAnswer: (status, answer) => {
        if (status !== 200) return;
        applied += (answer.match(/"status":201/g) ?? []).length;
        refused += (answer.match(/"status":(?!201)\d+/g) ?? []).length;
      },
    },
    async () => {
      before = await settled(() => tallyEntries(tally.database, 'debit'));
    },
  );
  const written = (await settled(() => tallyEntries(tally.database, 'debit'))) - before;
  // Throughput in events: every request carries EVENTS_PER_BATCH.
  const tallyM: Measurement = { ...requests, opsPerSec: applied / (requests.seconds || 1), ok: applied };
  const checks: Check[] = [
    check('tally', 'answers', refused === 0 && Object.keys(requests.statuses).every((s) => s === '200'), `requests ${describeStatuses(requests)}; ${applied} events applied, ${refused} refused`),
    check('tally', 'errors/timeouts', requests.errors === 0 && requests.timeouts === 0, `${requests.errors} error(s), ${requests.timeouts} timeout(s)`, false),
    check(
      'tally',
      'ledger rows vs events',
      written >= applied && written - applied <= opts.batchConnections * EVENTS_PER_BATCH,
      `${written} debit row(s) written, ${applied} events answered 201`,
    ),
    await reconcileCheck(tally.database),
  ];
  await checkpoint(tally.database);

  ctx.log(`  baseline: select baseline.debit_user_credits_transaction(…) once per event, ${opts.sdkBaselineClients} in flight over ${ctx.accounts.spread.length} users`);
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.sdkBaselineClients });
  let baseM: Measurement;
  try {
    const baseCall: Call = async () => {
      await pool.query('select baseline.debit_user_credits_transaction($1, $2, $3, $4)', [pick(), 1, 'bench event', '{}']);
      return 200;
    };
    await closedLoop(opts.warmupSeconds, opts.sdkBaselineClients, baseCall);
    baseM = await closedLoop(opts.seconds, opts.sdkBaselineClients, baseCall);
  } finally {
    await pool.end();
  }
  checks.push(check('baseline', 'errors', baseM.errors === 0, `${baseM.errors} error(s)`, false));
  await checkpoint(tally.database);
  return {
    id: 5,
    name: `usage events: batches of ${EVENTS_PER_BATCH} over ${ctx.accounts.spread.length} users`,
    shape: {
      tally: `POST /v1/events/batch, ${EVENTS_PER_BATCH} events a request (random user each, cost model quantity × 1), ${opts.batchConnections} connections; ops/s = events/s, latency per request`,
      baseline: `select baseline.debit_user_credits_transaction(…) per event (random user), ${opts.sdkBaselineClients} concurrent calls`,
    },
    tally: tallyM,
    baseline: baseM,
    ratio: baseM.opsPerSec > 0 ? tallyM.opsPerSec / baseM.opsPerSec : null,
    checks,
  };
}

// ---------------------------------------------------------------------------------------------
// Scenario 6: POST /v1/check latency (Tally only: the baseline cannot answer the question).
// ---------------------------------------------------------------------------------------------

export async function checkLatency(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const pick = pickFrom(ctx.accounts.spread);
  const auth = `Bearer ${tally.secrets.serviceKey}`;
  const next = () => ({ body: `{"user_id":"${pick()}","metric":"${BENCH_METRIC}","quantity":5}`, headers: { authorization: auth } });
  ctx.log(`  tally:    POST /v1/check, ${opts.connections} connections`);
  const bodies = new StatusCounts();
  const m = await measureTallyHttp(ctx, {
    path: '/v1/check',
    connections: opts.connections,
    next,
    onAnswer: (status, answer) => bodies.add(status === 200 && answer.includes('"allowed":true') ? 1 : 0),
  });
  const checks: Check[] = [
    check('tally', 'answers', Object.keys(m.statuses).every((s) => s === '200') && bodies.get(0) === 0, `${describeStatuses(m)}; ${bodies.get(1)} allowed, ${bodies.get(0)} other`),
    check('tally', 'errors/timeouts', m.errors === 0 && m.timeouts === 0, `${m.errors} error(s), ${m.timeouts} timeout(s)`, false),
  ];
  const ceiling = await measureCeiling(ctx, { path: '/v1/check', connections: opts.connections, next });
  return {
    id: 6,
    name: `entitlement check: POST /v1/check, ${opts.connections} conn (Tally only)`,
    shape: { tally: `POST /v1/check (random user of ${ctx.accounts.spread.length}), ${opts.connections} connections, nothing written`, baseline: null },
    tally: m,
    baseline: null,
    ratio: null,
    ceiling,
    checks,
  };
}
