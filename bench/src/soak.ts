import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { sql } from 'kysely';
import { PROJECT_ROOT, VERSION } from '../../src/version.js';
import { reconcileCheck } from './checks.js';
import { type ServerChild, startTally, stopAllServers } from './children.js';
import { cpuOf } from './proc.js';
import { benchOptions, int } from './options.js';
import { machineInfo, machineLine } from './report.js';
import { benchAccounts, dropTally, openTally, postgresInfo, seedTally, type TallySide } from './setup.js';
import { type ChildSample, type DbSample, DEFAULT_THRESHOLDS, judge, type Sample, type SoakThresholds, type Verdict, type Window } from './soak-judge.js';
import { EXPIRING_HOLD_TTL_S, Generator, JOB_PROVIDER, KINDS, MIX, PACKAGE, Recorder, REQUESTS_PER_FLOW, request, round2 } from './soak-load.js';
import { sleep } from './stats.js';
import { must } from '../../src/lib/must.js';

/**
 * `tally bench --soak [seconds]` (issue 22, "Steady under time"): two Tally processes on one fresh
 * bench schema, mixed traffic at a fixed arrival rate, a sample every minute (RSS, latency per
 * request kind, open holds, idempotency rows, the background queue, /ready), then a verdict with
 * stated thresholds (soak-judge.ts). Exit 1 when it fails.
 */
export interface SoakOptions {
  /** Measured seconds (after the warm-up). */
  seconds: number;
  /** Requests per second, all kinds, over both processes. */
  rate: number;
  warmupSeconds: number;
  /** Seconds between samples (60: "every minute"). */
  intervalSeconds: number;
  /** Flows in flight past which new arrivals are dropped (and the soak fails). */
  maxInflight: number;
  /** How long to wait after the load for holds to expire and be swept, the queue to empty. */
  drainSeconds: number;
  processes: number;
  resultsFile: string;
  thresholds: SoakThresholds;
}

const num = (env: NodeJS.ProcessEnv, name: string, fallback: number): number => {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return n;
};

export function soakOptions(env: NodeJS.ProcessEnv, seconds: string | true | undefined): SoakOptions {
  const measured = seconds === undefined || seconds === true ? 300 : Number(seconds);
  if (!Number.isInteger(measured) || measured < 10) throw new Error(`--soak takes whole seconds ≥ 10, got "${String(seconds)}"`);
  return {
    seconds: measured,
    rate: int(env, 'BENCH_SOAK_RATE', 200),
    warmupSeconds: int(env, 'BENCH_SOAK_WARMUP_SECONDS', 10, 0),
    intervalSeconds: int(env, 'BENCH_SOAK_INTERVAL_SECONDS', 60),
    maxInflight: int(env, 'BENCH_SOAK_MAX_INFLIGHT', 2000),
    drainSeconds: int(env, 'BENCH_SOAK_DRAIN_SECONDS', 90),
    processes: int(env, 'BENCH_SOAK_PROCESSES', 2),
    resultsFile: join(PROJECT_ROOT, 'bench', 'results', 'soak-latest.json'),
    thresholds: {
      ...DEFAULT_THRESHOLDS,
      rssGrowthMb: num(env, 'BENCH_SOAK_RSS_GROWTH_MB', DEFAULT_THRESHOLDS.rssGrowthMb),
      p99Factor: num(env, 'BENCH_SOAK_P99_FACTOR', DEFAULT_THRESHOLDS.p99Factor),
    },
  };
}

const say = (line: string) => process.stdout.write(line + '\n');

/** VmRSS and VmHWM of a process, MB. */
function memoryOf(pid: number): { rss: number | null; hwm: number | null } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : null;
    };
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: null, hwm: null };
  }
}

function fdsOf(pid: number): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

async function sampleChild(child: ServerChild): Promise<ChildSample> {
  const t0 = performance.now();
  let status = 0;
  let ready: unknown = null;
  try {
    const a = await request(child.url, 'GET', '/ready', null, {}, 10_000);
    status = a.status;
    ready = JSON.parse(a.body) as unknown;
  } catch (err) {
    ready = String(err);
  }
  const ms = round2(performance.now() - t0);
  const mem = memoryOf(child.pid);
  const logs = child.logs();
  return {
    name: child.name,
    pid: child.pid,
    rss_mb: mem.rss,
    hwm_mb: mem.hwm,
    fds: fdsOf(child.pid),
    cpu_s: cpuOf(child.pid),
    ready_status: status,
    ready_ms: ms,
    ready,
    log_warnings: logs.warnings,
    log_errors: logs.errors,
    exited: child.exited(),
  };
}

async function sampleDb(tally: TallySide, tag: string): Promise<DbSample> {
  const t = (name: string) => sql.table(`${tally.schema}.${name}`);
  const row = (
    await sql<Record<keyof DbSample, number>>`select
      (select count(*) from ${t('credit_holds')} where status = 'held')::int as open_holds,
      (select count(*) from ${t('credit_holds')} where status = 'held' and expires_at <= now())::int as expired_unswept_holds,
      (select count(*) from ${t('idempotency_keys')})::int as idempotency_keys,
      (select count(*) from ${t('idempotency_keys')} where key like ${tag + '-%'})::int as idempotency_client_keys,
      (select count(*) from ${t('background_jobs')} where status = 'pending' and run_at <= now())::int as queue_due,
      (select count(*) from ${t('background_jobs')} where status = 'pending')::int as queue_pending,
      (select count(*) from ${t('background_jobs')} where status = 'running')::int as queue_running,
      (select count(*) from ${t('background_jobs')} where status = 'failed')::int as queue_failed,
      (select count(*) from ${t('background_jobs')})::int as queue_rows,
      (select count(*) from ${t('credit_ledger')})::int as ledger_entries,
      (select count(*) from ${t('jobs')} where status in ('pending', 'processing'))::int as jobs_open,
      (select count(*) from ${t('webhook_events')})::int as webhook_events,
      (select count(*) from ${t('webhook_events')} where status = 'failed')::int as webhook_failed,
      (select count(*) from ${t('payments')})::int as payments,
      (select count(*) from ${t('payments')} where match_status <> 'matched')::int as payments_unmatched`.execute(tally.database.root)
  ).rows[0];
  if (!row) throw new Error('invariant broken: a select without from returns one row');
  return row;
}

/** Every table of the bench schema with its size (heap + indexes + TOAST) and live rows (the statistics' count). */
async function tableSizes(tally: TallySide): Promise<Record<string, { mb: number; rows: number }>> {
  const rows = (
    await sql<{ name: string; bytes: string; rows: string }>`select relname as name, pg_total_relation_size(relid)::text as bytes,
        n_live_tup::text as rows
      from pg_stat_user_tables where schemaname = ${tally.schema}`.execute(tally.database.root)
  ).rows;
  return Object.fromEntries(rows.map((r) => [r.name, { mb: Math.round((Number(r.bytes) / 2 ** 20) * 100) / 100, rows: Number(r.rows) }]));
}

const SHORT: Record<string, string> = {
  debit_hot: 'dHot',
  debit_spread: 'dSpr',
  debit_replay: 'dRep',
  hold: 'hold',
  hold_expiring: 'hExp',
  capture: 'capt',
  release: 'rel',
  event: 'evt',
  event_batch: 'batch',
  check: 'chk',
  webhook: 'wh',
  webhook_repeat: 'whRep',
  job_create: 'job',
  job_callback: 'cb',
  job_callback_repeat: 'cbRep',
};

const fmtMs = (n: number) => (n < 10 ? n.toFixed(1) : Math.round(n).toString());
const n0 = (n: number) => n.toLocaleString('en-US');

/** The progress line printed at every sample (CPU % of each process since the previous sample). */
function progressLine(s: Sample, prev: Sample | undefined, rate: number): string {
  const w = s.window;
  const parts = [`${s.label.padEnd(10)} ${s.at.slice(11, 19)}`];
  if (w) {
    const bad = Object.values(w.kinds).reduce((n, k) => n + Object.entries(k.statuses).filter(([st]) => Number(st) >= 500).reduce((m, [, c]) => m + c, 0), 0);
    parts.push(`${n0(w.requests)} req (${(w.requests / (w.seconds || 1)).toFixed(0)}/s of ${rate}) 5xx ${bad} err ${w.errors + w.timeouts} lag ${w.max_lag_ms} ms load ${w.load_mean}`);
    parts.push('p99 ' + KINDS.filter((k) => w.kinds[k]).map((k) => `${SHORT[k]} ${fmtMs(w.kinds[k]?.p99 ?? 0)}`).join(' '));
  }
  parts.push('RSS ' + s.children.map((c) => `${c.name} ${c.rss_mb ?? '?'}`).join(' ') + ' MB');
  if (prev) {
    const secs = s.elapsed_s - prev.elapsed_s;
    const cpu = s.children.map((c, i) => {
      const before = prev.children[i]?.cpu_s;
      return c.cpu_s === null || before === null || before === undefined || secs <= 0 ? '?' : `${Math.round(((c.cpu_s - before) / secs) * 100)}%`;
    });
    parts.push(`CPU ${cpu.join(' ')}`);
  }
  parts.push(
    `holds ${s.db.open_holds} (expired ${s.db.expired_unswept_holds}) idem ${n0(s.db.idempotency_keys)} queue due ${s.db.queue_due} pend ${s.db.queue_pending} jobs ${s.db.jobs_open}`,
  );
  parts.push('ready ' + s.children.map((c) => c.ready_status).join('/'));
  return parts.join(' | ');
}

export async function soakCommand(cli: { soak?: string | true }): Promise<number> {
  let bench: ReturnType<typeof benchOptions>;
  let opts: SoakOptions;
  try {
    bench = benchOptions(process.env);
    opts = soakOptions(process.env, cli.soak);
  } catch (err) {
    process.stderr.write(`soak: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  const tag = `soak-${randomBytes(4).toString('hex')}`;
  say(`Tally ${VERSION} soak — ${opts.seconds} s measured (+${opts.warmupSeconds} s warm-up) at ${opts.rate} requests/s over ${opts.processes} processes, a sample every ${opts.intervalSeconds} s`);
  say(`mix (flows): ${MIX}; ${REQUESTS_PER_FLOW.toFixed(2)} requests per flow`);

  let tally: TallySide | null = null;
  const children: ServerChild[] = [];
  const cleanup = async () => {
    await stopAllServers();
    if (tally) {
      await tally.app.server.close().catch(() => undefined);
      if (!bench.keep) await dropTally(tally.database, tally.schema).catch((e: unknown) => say(`could not drop ${tally?.schema}: ${String(e)}`));
      await tally.database.close().catch(() => undefined);
    }
  };
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nsoak: ${signal}, cleaning up…\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const t0 = Date.now();
    // The in-process app only sets up and reads: a small pool.
    tally = await openTally({ ...bench, serverPoolMax: 4 });
    const accounts = benchAccounts(bench.accounts);
    await seedTally(tally, accounts);
    const stripeSecret = `whsec_${randomBytes(16).toString('hex')}`;
    const jobSecret = randomBytes(32).toString('hex');
    const stripePriceId = `price_${tag}`;
    const pkg = await tally.app.server.inject({
      method: 'POST',
      url: '/v1/credit-packages',
      headers: { authorization: `Bearer ${tally.secrets.serviceKey}` },
      payload: { name: `soak ${tag}`, provider: 'stripe', provider_price_id: stripePriceId, credits: PACKAGE.credits, price_amount: PACKAGE.price, currency: PACKAGE.currency },
    });
    if (pkg.statusCode !== 201) throw new Error(`set-up /v1/credit-packages → ${pkg.statusCode}: ${pkg.body}`);
    for (let i = 0; i < opts.processes; i++) {
      children.push(
        await startTally({
          url: bench.url,
          schema: tally.schema,
          poolMax: bench.serverPoolMax,
          logLevel: bench.tallyLogLevel,
          secrets: tally.secrets,
          nodeArgs: bench.childNodeArgs,
          name: `tally-${String.fromCharCode(97 + i)}`,
          env: { STRIPE_WEBHOOK_SECRET: stripeSecret, TALLY_JOBS_CALLBACK_SECRETS: `${JOB_PROVIDER}=${jobSecret}` },
        }),
      );
    }
    say(
      `set-up: schema ${tally.schema}, ${accounts.spread.length + 3} users funded, a Stripe credit package, ${children.map((c) => `${c.name} pid ${c.pid}`).join(', ')} (pool ${bench.serverPoolMax} each) in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    const machine = machineInfo(await postgresInfo(tally.database));

    const recorder = new Recorder();
    const samples: Sample[] = [];
    const loadStart = Date.now();
    const take = async (label: string, minute: number | null, window: Window | null): Promise<Sample> => {
      const [kids, db] = await Promise.all([Promise.all(children.map(sampleChild)), sampleDb(must(tally, 'the Tally schema is set up'), tag)]);
      const s: Sample = {
        label,
        minute,
        at: new Date().toISOString(),
        elapsed_s: Math.round((Date.now() - loadStart) / 100) / 10,
        children: kids,
        loadgen_rss_mb: Math.round((process.memoryUsage().rss / 2 ** 20) * 10) / 10,
        loadavg_1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
        db,
        window,
      };
      say(progressLine(s, samples[samples.length - 1], opts.rate));
      samples.push(s);
      return s;
    };
    const sizesBefore = await tableSizes(tally);
    await take('start', null, null);

    const generator = new Generator({
      targets: children.map((c) => ({ name: c.name, url: c.url })),
      serviceKey: tally.secrets.serviceKey,
      tag,
      hot: accounts.hotHttp,
      spread: accounts.spread,
      stripeSecret,
      stripePriceId,
      jobSecret,
      recorder,
      maxInflight: opts.maxInflight,
    });
    const running = generator.run(opts.rate);
    recorder.load(loadavg()[0] ?? 0);
    const loadTimer = setInterval(() => recorder.load(loadavg()[0] ?? 0), 5000);
    if (opts.warmupSeconds > 0) {
      await sleep(opts.warmupSeconds * 1000);
      await take('warm', null, recorder.cut());
    }
    const measuredStart = Date.now();
    const windows = Math.ceil(opts.seconds / opts.intervalSeconds);
    for (let i = 1; i <= windows; i++) {
      const at = measuredStart + Math.min(i * opts.intervalSeconds, opts.seconds) * 1000;
      await sleep(Math.max(0, at - Date.now()));
      if (i === windows) generator.stop();
      const s = await take(`${opts.intervalSeconds === 60 ? 'minute' : 'window'} ${i}`, i, recorder.cut());
      const gone = s.children.filter((c) => c.exited);
      if (gone.length > 0) {
        // Nothing more to learn from load on a process that is not there.
        say(`${gone.map((c) => `${c.name} ended (${c.exited?.signal ?? `exit code ${c.exited?.code}`}, ${c.exited?.at})`).join('; ')}: stopping the load`);
        generator.stop();
        break;
      }
    }
    await running;
    clearInterval(loadTimer);
    const sentSeconds = (Date.now() - loadStart) / 1000;
    const left = await generator.drain(60_000);
    const end = await take('end', null, recorder.cut());
    if (left > 0) recorder.wrong('bench', 'flows unfinished 60 s after the load stopped', `${left} flow(s)`);

    // Holds left to expire need their TTL and a sweep (every 30 s); job timeouts are canceled on completion.
    const drainDeadline = Date.now() + opts.drainSeconds * 1000;
    let db = end.db;
    while ((db.open_holds > 0 || db.queue_due > 0 || db.jobs_open > 0) && children.every((c) => !c.exited()) && Date.now() < drainDeadline) {
      await sleep(2000);
      db = await sampleDb(tally, tag);
    }
    const _drained = await take('drained', null, null);
    const recon = await reconcileCheck(tally.database);
    // What the idempotency rows are, by caller scope (principal up to its first ':') and operation
    // (rows from before migration 0017: their path, ids as :id).
    const idemByScope = (
      await sql<{ scope: string; path: string; rows: number }>`select split_part(principal, ':', 1) as scope,
          coalesce(operation, regexp_replace(path, '[a-z]+_[0-9a-z]{20,}', ':id', 'g')) as path, count(*)::int as rows
        from ${sql.table(`${tally.schema}.idempotency_keys`)} group by 1, 2 order by 3 desc limit 20`.execute(tally.database.root)
    ).rows;
    const webhookErrors = (
      await sql<{ status: string; attempts: number; error: string }>`select status, attempts, error from ${sql.table(`${tally.schema}.webhook_events`)}
        where error is not null order by created_at limit 10`.execute(tally.database.root)
    ).rows;
    const sizesAfter = await tableSizes(tally);

    const totals = recorder.totals(opts.rate, sentSeconds);
    const verdicts = judge({ samples, totals, reconcile: { ok: recon.ok, detail: recon.detail }, thresholds: opts.thresholds, cores: machine.cores });
    const wholeRun = Object.fromEntries(
      KINDS.filter((k) => recorder.whole.get(k)).map((k) => {
        const lat = must(recorder.whole.get(k), `latencies of ${k}`);
        const [p50, p99, p999] = lat.percentiles([50, 99, 99.9]);
        return [k, { count: lat.count, p50: round2(p50 ?? 0), p99: round2(p99 ?? 0), p999: round2(p999 ?? 0) }];
      }),
    );

    say('\n' + report(samples, totals, wholeRun, sizesBefore, sizesAfter, verdicts, recorder.firstError));
    say(`idempotency rows by scope and operation (set-up included): ${idemByScope.map((r) => `${r.scope} ${r.path} ${n0(r.rows)}`).join('; ')}`);
    for (const w of webhookErrors) say(`webhook event with an error: ${w.status} after ${w.attempts} attempt(s): ${w.error.slice(0, 500)}`);
    say('\n' + machineLine(machine) + `\nload: ${opts.rate} requests/s open loop from this process; Tally children, load generator and PostgreSQL share this machine (and whatever else runs on it)`);
    const failed = verdicts.filter((v) => !v.ok);
    writeJson(opts, {
      generated_at: new Date().toISOString(),
      tally_version: VERSION,
      ok: failed.length === 0,
      failures: failed.map((v) => `${v.name}: ${v.detail}`),
      inconclusive: verdicts.filter((v) => v.inconclusive).map((v) => `${v.name}: ${v.detail}`),
      options: { ...opts, mix: MIX, requests_per_flow: round2(REQUESTS_PER_FLOW), expiring_hold_ttl_s: EXPIRING_HOLD_TTL_S, accounts: bench.accounts, server_pool_max: bench.serverPoolMax, tally_log_level: bench.tallyLogLevel },
      machine,
      verdicts,
      totals,
      whole_run: wholeRun,
      table_sizes: { before: sizesBefore, after: sizesAfter },
      samples,
      webhook_errors: webhookErrors,
      idempotency_by_scope: idemByScope,
      child_logs: children.map((c) => ({ name: c.name, error_lines: c.logs().errorLines, tail: c.logs().tail })),
    });
    say(`\nresults: ${relative(process.cwd(), opts.resultsFile) || opts.resultsFile}`);
    if (failed.length > 0) {
      process.stderr.write(`\nsoak FAILED (${failed.length}):\n${failed.map((v) => `  - ${v.name}: ${v.detail}`).join('\n')}\n`);
      for (const c of children) {
        const logs = c.logs();
        if (logs.errors > 0) process.stderr.write(`\n${c.name}: its first error lines\n${logs.errorLines.map((l) => l.slice(0, 2000)).join('\n')}\n`);
      }
      return 1;
    }
    const unsure = verdicts.filter((v) => v.inconclusive);
    say(unsure.length ? `soak passed; inconclusive (the machine got busier): ${unsure.map((v) => v.name).join(', ')}` : 'soak passed');
    return 0;
  } catch (err) {
    process.stderr.write(`soak could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (!interrupted) await cleanup();
  }
}

function report(
  samples: Sample[],
  totals: ReturnType<Recorder['totals']>,
  wholeRun: Record<string, { count: number; p50: number; p99: number; p999: number }>,
  before: Record<string, { mb: number; rows: number }>,
  after: Record<string, { mb: number; rows: number }>,
  verdicts: Verdict[],
  firstError: string,
): string {
  const out: string[] = [];
  const periodic = samples.filter((s) => s.minute !== null && s.window);
  const first = periodic[0];
  const last = periodic[periodic.length - 1];
  const start = samples.find((s) => s.label === 'start');
  const end = samples.find((s) => s.label === 'end');
  const drained = samples.find((s) => s.label === 'drained');

  out.push(`sent ${n0(totals.requests)} requests in all, ${totals.achieved_rate.toFixed(1)}/s (target ${totals.target_rate}/s); ${totals.dropped} dropped; ${totals.retries} 5xx retried; ${totals.errors} errors, ${totals.timeouts} timeouts${firstError ? ` (first: ${firstError})` : ''}`);
  out.push('\nmemory (VmRSS, MB): process | start | after first window | end | peak (VmHWM) | fds start → end');
  (start?.children ?? []).forEach((c, i) => {
    const e = end?.children[i];
    out.push(`  ${c.name} | ${c.rss_mb} | ${first?.children[i]?.rss_mb ?? '?'} | ${e?.rss_mb ?? '?'} | ${e?.hwm_mb ?? '?'} | ${c.fds} → ${e?.fds ?? '?'}`);
  });
  out.push(`  load generator: ${start?.loadgen_rss_mb} → ${end?.loadgen_rss_mb} MB`);
  const cpu = (a: Sample | undefined, b: Sample | undefined, i: number) => {
    const x = a?.children[i]?.cpu_s;
    const y = b?.children[i]?.cpu_s;
    const secs = (b?.elapsed_s ?? 0) - (a?.elapsed_s ?? 0);
    return x == null || y == null || secs <= 0 ? '?' : `${Math.round(((y - x) / secs) * 100)}%`;
  };
  const previous = (s: Sample | undefined) => (s ? samples[samples.indexOf(s) - 1] : undefined);
  out.push(`CPU (% of one core): process | ${first?.label ?? 'first'} | ${last?.label ?? 'last'} | start → end`);
  (start?.children ?? []).forEach((c, i) => out.push(`  ${c.name} | ${cpu(previous(first), first, i)} | ${cpu(previous(last), last, i)} | ${cpu(start, end, i)}`));
  const loads = samples.map((s) => s.loadavg_1m);
  out.push(`machine load average (1 min) at the samples: min ${Math.min(...loads)}, max ${Math.max(...loads)}, mean ${(loads.reduce((a, b) => a + b, 0) / loads.length).toFixed(1)} (2 cores; other work shares them)`);

  out.push(`\nlatency (ms): kind | ${first?.label ?? 'first'} count p50 p99 | ${last?.label ?? 'last'} count p50 p99 | whole run count p50 p99 p99.9 | answers`);
  for (const k of KINDS) {
    const a = first?.window?.kinds[k];
    const b = last?.window?.kinds[k];
    const w = wholeRun[k];
    if (!w) continue;
    const cell = (x: typeof a) => (x ? `${n0(x.count)} ${fmtMs(x.p50)} ${fmtMs(x.p99)}` : '—');
    const answers = Object.entries(totals.statuses[k] ?? {})
      .map(([s, n]) => `${s}×${n0(n)}`)
      .join(' ');
    out.push(`  ${k.padEnd(19)} | ${cell(a).padEnd(16)} | ${cell(b).padEnd(16)} | ${n0(w.count)} ${fmtMs(w.p50)} ${fmtMs(w.p99)} ${fmtMs(w.p999)} | ${answers}`);
  }

  const row = (label: string, f: (s: Sample) => number | string) =>
    `  ${label.padEnd(34)} | ${[start, first, last, end, drained].map((s) => (s ? String(f(s)) : '—').padStart(9)).join(' | ')}`;
  out.push(`\ndatabase: what | start | ${first?.label ?? 'first'} | ${last?.label ?? 'last'} | end | drained`);
  out.push(row('open holds (held)', (s) => s.db.open_holds));
  out.push(row('  of which expired, not yet swept', (s) => s.db.expired_unswept_holds));
  out.push(row('open jobs', (s) => s.db.jobs_open));
  out.push(row('queue: due (backlog)', (s) => s.db.queue_due));
  out.push(row('queue: pending (future timeouts)', (s) => s.db.queue_pending));
  out.push(row('queue: failed', (s) => s.db.queue_failed));
  out.push(row('queue: rows in all', (s) => s.db.queue_rows));
  out.push(row('idempotency_keys rows', (s) => s.db.idempotency_keys));
  out.push(row("  under this run's keys", (s) => s.db.idempotency_client_keys));
  out.push(row('ledger entries', (s) => s.db.ledger_entries));
  out.push(row('webhook events', (s) => s.db.webhook_events));
  out.push(row('payments (unmatched)', (s) => `${s.db.payments} (${s.db.payments_unmatched})`));
  out.push(`  distinct Idempotency-Keys answered: ${n0(totals.client_keys_answered)}`);

  const growth = Object.entries(after)
    .map(([name, a]) => ({ name, mb: a.mb - (before[name]?.mb ?? 0), a }))
    .filter((g) => g.mb >= 0.1)
    .sort((x, y) => y.mb - x.mb)
    .slice(0, 10);
  out.push('\ntables that grew (MB, heap + indexes): ' + growth.map((g) => `${g.name} +${g.mb.toFixed(1)} (${g.a.mb.toFixed(1)}, ~${n0(g.a.rows)} rows)`).join('; '));

  const unexpected = Object.entries(totals.statuses).flatMap(([k, by]) =>
    Object.entries(by)
      .filter(([s]) => !(Number(s) >= 200 && Number(s) < 300) && s !== '402')
      .map(([s, n]) => `${k} ${s}×${n}`),
  );
  out.push(`answers other than 2xx/402: ${unexpected.length ? unexpected.join(', ') : 'none'}`);

  out.push('\nverdicts:');
  for (const v of verdicts) out.push(`  ${v.inconclusive ? '??  ' : v.ok ? 'ok  ' : 'FAIL'} ${v.name}: ${v.detail}`);
  return out.join('\n');
}

function writeJson(opts: SoakOptions, json: unknown): void {
  mkdirSync(dirname(opts.resultsFile), { recursive: true });
  writeFileSync(opts.resultsFile, JSON.stringify(json, null, 2) + '\n');
}
