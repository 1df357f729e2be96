import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { gatewayDrift } from '../../src/modules/gateway/gateway.reconcile.js';
import { must } from '../../src/lib/must.js';
import { type Check, check, checkpoint, reconcileCheck } from './checks.js';
import { type ServerChild, startFakeUpstream, startTally } from './children.js';
import { type FirstByteResult, runFirstByteLoad } from './first-byte.js';
import { runHttpLoad } from './http-load.js';
import type { BenchContext, ScenarioResult } from './scenarios.js';
import { balanceOf, fundedUser, serviceApi } from './service-api.js';
import { FUNDING } from './setup.js';
import { Latencies, sleep, StatusCounts } from './stats.js';
import { type Target, target } from './targets.js';

// ---------------------------------------------------------------------------------------------
// Scenario 7 (issue 14, "Speed"): the gateway's overhead over a fake OpenAI-compatible upstream.
// ---------------------------------------------------------------------------------------------

const MODEL = 'bench-gpt';
/** Prices that make the fake's fixed usage (8 prompt + 4 completion tokens) cost exactly 1 credit. */
const PRICES = { input: '62500', output: '125000', request_fee: '0', max_output_tokens: 64 };
const JSON_BODY = `{"model":"${MODEL}","messages":[{"role":"user","content":"one two three"}],"max_tokens":16}`;
const STREAM_BODY = `{"model":"${MODEL}","messages":[{"role":"user","content":"one two three"}],"max_tokens":16,"stream":true}`;
/** The first token of a stream: the first event carrying content (not headers, not a keep-alive). */
const firstToken = (chunk: string) => chunk.includes('"content"');

interface Side {
  url: string;
  path: string;
  /** The Authorization header of the next request (through Tally: the users' keys in turn). */
  auth: () => string;
}

const pct = (l: Latencies, p: number) => must(l.percentiles([p])[0], 'one percentile asked');

/**
 * Latency through Tally minus directly to the same fake upstream (its own process), in
 * interleaved rounds (direct then Tally, then Tally then direct…), at low connection counts where
 * the difference is Tally's own work and not queueing: JSON completions with autocannon, streams
 * with a client that times the first token. Then non-streaming throughput through Tally. Checks:
 * every request Tally answered was charged exactly once (a settled usage record each, 1 credit
 * each by the prices above, each one reaching the upstream once), the balance moved by what the
 * records say, and reconcile (ledger and gateway invariants) finds no drift.
 */
export async function gatewayOverhead(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const tag = randomBytes(4).toString('hex');
  const userIds = Array.from({ length: opts.gatewayUsers }, (_, i) => `bench_gw_${tag}_${i}`);
  const credential = `sk-bench-${tag}`;
  const started: ServerChild[] = [];
  try {
    ctx.log(`  set-up:   fake upstream (its own process), cost model llm:bench-gpt, upstream, ${userIds.length} funded user(s) with a tly_ key each`);
    const fake = await startFakeUpstream({ nodeArgs: opts.childNodeArgs });
    started.push(fake);
    await serviceApi(tally, 'POST', '/v1/cost-models', { metric: `llm:${MODEL}`, metadata: { gateway: PRICES } });
    await serviceApi(tally, 'POST', '/v1/gateway/upstreams', { type: 'openai', base_url: `${fake.url}/v1`, credentials: credential, models: ['bench-*'], priority: 1, weight: 100 });
    const keys: string[] = [];
    for (const id of userIds) keys.push(`Bearer ${await fundedUser(tally, id, FUNDING)}`);
    const server = await startTally({ url: opts.url, schema: tally.schema, poolMax: opts.serverPoolMax, logLevel: opts.tallyLogLevel, secrets: tally.secrets, nodeArgs: opts.childNodeArgs });
    started.push(server);
    const balanceBefore = await balancesOf(ctx, userIds);

    let turn = 0;
    const direct: Side = { url: fake.url, path: '/v1/chat/completions', auth: () => 'Bearer sk-direct' };
    const gateway: Side = { url: server.url, path: '/gateway/v1/chat/completions', auth: () => must(keys[turn++ % keys.length], 'a key per user') };
    // What Tally answered: statuses, bad stream bodies, and how many requests autocannon may have
    // left in flight when it stopped (Tally still completes and charges those).
    const tallyStatuses = new StatusCounts();
    const directStatuses = new StatusCounts();
    let badStreams = 0;
    let inflightSlack = 0;
    let clientErrors = 0;
    const json = async (side: Side, connections: number, seconds: number) => {
      const m = await runHttpLoad({ url: side.url, path: side.path, connections, seconds, next: () => ({ body: JSON_BODY, headers: { authorization: side.auth() } }) });
      const into = side === gateway ? tallyStatuses : directStatuses;
      for (const [s, n] of Object.entries(m.statuses)) for (let i = 0; i < n; i++) into.add(Number(s));
      if (side === gateway) inflightSlack += connections;
      clientErrors += m.errors + m.timeouts;
      return m;
    };
    const stream = async (side: Side, connections: number, seconds: number): Promise<FirstByteResult> => {
      const r = await runFirstByteLoad({
        url: side.url,
        method: 'POST',
        path: side.path,
        connections,
        seconds,
        next: () => ({ body: STREAM_BODY, headers: { authorization: side.auth(), 'content-type': 'application/json' } }),
        first: firstToken,
        onAnswer: (status, answer) => {
          const body = answer.toString('utf8');
          (side === gateway ? tallyStatuses : directStatuses).add(status);
          if (status !== 200 || !body.includes(' w4') || !body.trimEnd().endsWith('data: [DONE]')) badStreams++;
        },
      });
      clientErrors += r.errors;
      return r;
    };

    ctx.log(`  warm-up:  ${opts.warmupSeconds}s each of JSON and streams, direct and through Tally`);
    for (const side of [direct, gateway]) {
      await json(side, 8, opts.warmupSeconds);
      await stream(side, 8, opts.warmupSeconds);
    }

    const roundSeconds = Math.max(1, Math.round(opts.seconds / opts.gatewayRounds));
    const targets: Target[] = [];
    const perConnections: Record<string, unknown>[] = [];
    for (const connections of opts.gatewayConnections) {
      ctx.log(`  overhead: ${connections} connection(s), ${opts.gatewayRounds} rounds of ${roundSeconds}s per side and kind, interleaved`);
      const lat = { direct: { json: new Latencies(), ttft: new Latencies() }, tally: { json: new Latencies(), ttft: new Latencies() } };
      const rounds: Record<string, number>[] = [];
      for (let r = 0; r < opts.gatewayRounds; r++) {
        const order = r % 2 === 0 ? (['direct', 'tally'] as const) : (['tally', 'direct'] as const);
        const round: Record<string, number> = {};
        for (const which of order) {
          const side = which === 'direct' ? direct : gateway;
          const m = await json(side, connections, roundSeconds);
          const s = await stream(side, connections, roundSeconds);
          round[`${which}_json_p50_ms`] = m.p50;
          round[`${which}_ttft_p50_ms`] = pct(s.firstByte, 50);
          addFrom(lat[which].json, m.samples);
          addFrom(lat[which].ttft, s.firstByte);
        }
        rounds.push(round);
      }
      const d = (which: 'direct' | 'tally', kind: 'json' | 'ttft', p: number) => pct(lat[which][kind], p);
      const over = (kind: 'json' | 'ttft', p: number) => d('tally', kind, p) - d('direct', kind, p);
      const how = (kind: 'json' | 'ttft', p: number) =>
        `${connections} conn: Tally ${d('tally', kind, p).toFixed(2)} − direct ${d('direct', kind, p).toFixed(2)} ms over ${lat.tally[kind].count} / ${lat.direct[kind].count} requests`;
      targets.push(
        target(`gateway overhead p50, JSON, ${connections} conn`, over('json', 50), 'ms', 'max', 1.5, how('json', 50)),
        target(`gateway overhead p99, JSON, ${connections} conn`, over('json', 99), 'ms', 'max', 3, how('json', 99)),
        target(`stream TTFT overhead p99, ${connections} conn`, over('ttft', 99), 'ms', 'max', 3, how('ttft', 99)),
      );
      perConnections.push({
        connections,
        json: { direct_p50_ms: d('direct', 'json', 50), direct_p99_ms: d('direct', 'json', 99), tally_p50_ms: d('tally', 'json', 50), tally_p99_ms: d('tally', 'json', 99), overhead_p50_ms: over('json', 50), overhead_p99_ms: over('json', 99) },
        ttft: { direct_p50_ms: d('direct', 'ttft', 50), direct_p99_ms: d('direct', 'ttft', 99), tally_p50_ms: d('tally', 'ttft', 50), tally_p99_ms: d('tally', 'ttft', 99), overhead_p50_ms: over('ttft', 50), overhead_p99_ms: over('ttft', 99) },
        rounds,
      });
    }

    const conn = opts.gatewayThroughputConnections;
    ctx.log(`  throughput: non-streaming through Tally, ${conn} connections, ${opts.warmupSeconds}s warm-up + ${opts.seconds}s; then the fake alone, same load`);
    await json(gateway, conn, opts.warmupSeconds);
    const tallyM = await json(gateway, conn, opts.seconds);
    await json(direct, conn, opts.warmupSeconds);
    const directM = await json(direct, conn, opts.seconds);
    targets.push(target(`gateway requests/s, JSON, ${conn} conn`, tallyM.opsPerSec, 'ops/s', 'min', 1500, `the fake upstream alone: ${Math.round(directM.opsPerSec)} ops/s under the same load`));

    const checks = await chargedOnce(ctx, { userIds, credential, fake, tallyStatuses, directStatuses, badStreams, inflightSlack, clientErrors, balanceBefore });
    await checkpoint(tally.database);
    return {
      id: 7,
      name: `gateway: chat completions through Tally, ${conn} conn, ${userIds.length} payer(s) (Tally only)`,
      shape: {
        tally: `POST /gateway/v1/chat/completions (tly_ keys of ${userIds.length} funded user(s) in turn; durable hold, settle), fake upstream in its own process; overhead at ${opts.gatewayConnections.join(', ')} conn in ${opts.gatewayRounds} interleaved rounds; throughput at ${conn} conn`,
        baseline: null,
      },
      tally: tallyM,
      baseline: null,
      ratio: null,
      targets,
      extra: { overhead: perConnections, direct_throughput: directM, fake_usage: { prompt_tokens: 8, completion_tokens: 4 }, prices: PRICES },
      checks,
    };
  } finally {
    for (const child of started.reverse()) await child.stop();
  }
}

/** The users' balances and holds, summed. */
async function balancesOf(ctx: BenchContext, userIds: string[]): Promise<{ balance: number; held: number }> {
  const sum = { balance: 0, held: 0 };
  for (const id of userIds) {
    const b = await balanceOf(ctx.tally, id);
    sum.balance += b.balance;
    sum.held += b.held;
  }
  return sum;
}

function addFrom(into: Latencies, from: Latencies): void {
  for (const v of from.values()) into.add(v);
}

async function chargedOnce(
  ctx: BenchContext,
  s: {
    userIds: string[];
    credential: string;
    fake: ServerChild;
    tallyStatuses: StatusCounts;
    directStatuses: StatusCounts;
    badStreams: number;
    inflightSlack: number;
    clientErrors: number;
    balanceBefore: { balance: number; held: number };
  },
): Promise<Check[]> {
  const { tally } = ctx;
  const t = sql.table(`${tally.database.schema}.gateway_requests`);
  type Row = { total: number; pending: number; completed: number; provider: number; charged: string; micros: string };
  const records = async () =>
    must(
      (
        await sql<Row>`select count(*)::int as total, (count(*) filter (where status = 'pending'))::int as pending,
          (count(*) filter (where status = 'completed'))::int as completed, (count(*) filter (where usage_source = 'provider'))::int as provider,
          coalesce(sum(charged), 0)::text as charged, coalesce(sum(cost_micros), 0)::text as micros
          from ${t} where user_id = any(${s.userIds}::text[])`.execute(tally.database.root)
      ).rows[0],
      'an aggregate returns one row',
    );
  // Settlement runs right after each answer; requests autocannon abandoned at its deadline finish too.
  let rec = await records();
  for (let i = 0; i < 200 && rec.pending > 0; i++) {
    await sleep(100);
    rec = await records();
  }
  const served = (await (await fetch(`${s.fake.url}/stats`)).json()) as Record<string, { json: number; stream: number }>;
  const mine = served[`Bearer ${s.credential}`] ?? { json: 0, stream: 0 };
  const answered = s.tallyStatuses.get(200);
  const bad = s.tallyStatuses.count((x) => x !== 200);
  const after = await balancesOf(ctx, s.userIds);
  const charged = Number(rec.charged);
  const drift = await gatewayDrift(tally.database);
  return [
    check('tally', 'answers', bad === 0 && s.badStreams === 0, `Tally ${JSON.stringify(s.tallyStatuses.toJSON())}, direct ${JSON.stringify(s.directStatuses.toJSON())}; ${s.badStreams} stream(s) without every token and [DONE]`),
    check('tally', 'errors/timeouts', s.clientErrors === 0, `${s.clientErrors} connection error(s) or timeout(s), both sides`, false),
    check(
      'tally',
      'one settled record per request',
      rec.pending === 0 && rec.completed === rec.total && rec.provider === rec.total && rec.total >= answered && rec.total - answered <= s.inflightSlack,
      `${rec.total} usage record(s) (${rec.completed} completed, ${rec.provider} priced from the provider's usage, ${rec.pending} pending) for ${answered} 200 answer(s)` +
        ` (up to ${s.inflightSlack} more may be requests in flight when a load run stopped)`,
    ),
    check('tally', 'each reached the upstream once', mine.json + mine.stream === rec.total, `the fake served ${mine.json} JSON + ${mine.stream} stream request(s) for Tally's credential; ${rec.total} record(s)`),
    check(
      'tally',
      'charged exactly once',
      charged === rec.total && Number(rec.micros) === rec.total * 1_000_000 && s.balanceBefore.balance - after.balance === charged && after.held === 0,
      `${charged} credit(s) charged for ${rec.total} record(s) of exactly 1 credit (${rec.micros} micro-credits); balance ${s.balanceBefore.balance} → ${after.balance}, ${after.held} held`,
    ),
    check('tally', 'gateway invariants', drift.length === 0, drift.length === 0 ? 'total_micros = Σ cost_micros, Σ charged = floor, every hold captured as recorded' : JSON.stringify(drift.slice(0, 5))),
    await reconcileCheck(tally.database),
  ];
}
