import cluster, { type Worker } from 'node:cluster';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/config.js';
import { openDatabase } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { createLogger } from '../logger.js';
import { defaultDashboardDir } from '../modules/dashboard/dashboard.routes.js';
import { REFUSED } from './running-server.js';

/** What `tally start` prints once serving: where everything is, and where the service key is kept. */
export function banner(config: Config, generatedSecrets: boolean, address: string, applied: readonly string[], processes: number[] = []): string {
  const where = config.database.kind === 'pglite' ? `PGlite at ${config.database.dataDir}` : 'PostgreSQL (DATABASE_URL)';
  const lines = [
    '',
    `  Tally is running at ${address}`,
    `  API docs:      ${address}/docs   (OpenAPI: ${address}/openapi.json)`,
    existsSync(join(defaultDashboardDir(), 'index.html'))
      ? `  Dashboard:     ${address}/dashboard`
      : `  Dashboard:     not built (run npm run build); ${address}/dashboard says so`,
    `  Database:      ${where}, schema "${config.database.schema}"${applied.length ? `, applied ${applied.join(', ')}` : ''}`,
    ...(processes.length > 1 ? [`  Processes:     ${processes.length} on one port (pids ${processes.join(', ')}; TALLY_PROCESSES)`] : []),
    generatedSecrets
      ? `  Service key:   ${config.auth.serviceKey}\n                 (generated now and kept in ${config.dataDir}/secrets.json; shown once)`
      : `  Service key:   from ${process.env['TALLY_SERVICE_KEY'] ? 'TALLY_SERVICE_KEY' : `${config.dataDir}/secrets.json`}`,
    '',
  ];
  return lines.join('\n') + '\n';
}

/** A process that dies this soon after it started counts towards giving up (a port taken, a bad config). */
const QUICK_DEATH_MS = 5_000;
const QUICK_DEATHS = 5;
/** A process's own shutdown is bounded at 15 s (start.ts); its supervisor waits a little longer. */
const SHUTDOWN_MS = 16_000;

/**
 * `TALLY_PROCESSES=n` (docs/operations.md, "Several processes"): one node process is one core, and
 * a Tally process's bound under load is its own event loop, so n server processes share the port
 * (node:cluster; this process accepts connections and hands each to one of them). Every server is
 * the ordinary one — its own pool, caches, scheduler and LISTEN connection, exactly as n Tally
 * processes on one database anywhere (the ledger, queue and caches are built for that) — and this
 * process only supervises: it migrates once, starts them, prints one banner when all listen,
 * starts another when one dies (giving up, exit 1, when they keep dying at start), and on SIGTERM
 * or SIGINT passes it on and exits once they have shut down. PostgreSQL only: the embedded database
 * is one process's (refused, exit 2).
 */
export async function superviseProcesses(config: Config, generatedSecrets: boolean): Promise<number> {
  const n = config.http.processes ?? 1;
  if (config.database.kind !== 'postgres') {
    process.stderr.write(`tally: TALLY_PROCESSES=${n} needs PostgreSQL (DATABASE_URL): the embedded database is opened by one process only\n`);
    return REFUSED;
  }
  const logger = createLogger(config.logLevel);
  const database = await openDatabase(config.database, { log: logger });
  const outcome = await migrate(database);
  await database.close();
  if (!outcome.ok) throw new Error(outcome.message);

  const startedAt = new Map<number, number>();
  const listening = new Map<number, string>();
  let quickDeaths = 0;
  let stopping = false;
  let serving: (code: number) => void = () => {};
  const ready = new Promise<number>((resolve) => (serving = resolve));
  let announced = false;

  const start = (): Worker => {
    const worker = cluster.fork();
    startedAt.set(worker.id, Date.now());
    worker.on('message', (m: unknown) => {
      if (typeof m !== 'object' || m === null || (m as { tally?: unknown }).tally !== 'listening') return;
      listening.set(worker.id, String((m as { address?: unknown }).address));
      if (announced || listening.size < n) return;
      announced = true;
      const pids = Object.values(cluster.workers ?? {}).flatMap((w) => (w?.process.pid ? [w.process.pid] : []));
      process.stdout.write(banner(config, generatedSecrets, [...listening.values()][0] ?? '', outcome.applied, pids));
      serving(0);
    });
    return worker;
  };
  const stop = (code: number) => {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    if (workers.length === 0) process.exit(code);
    for (const w of workers) w.process.kill('SIGTERM');
    setTimeout(() => {
      logger.error({ ms: SHUTDOWN_MS }, 'server processes did not stop in time; exiting');
      process.exit(1);
    }, SHUTDOWN_MS).unref();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(code);
    });
  };

  cluster.on('exit', (worker, code, signal) => {
    listening.delete(worker.id);
    if (stopping) return;
    const quick = Date.now() - (startedAt.get(worker.id) ?? 0) < QUICK_DEATH_MS;
    if (quick && ++quickDeaths >= QUICK_DEATHS) {
      logger.fatal({ pid: worker.process.pid, code, signal, deaths: quickDeaths }, 'server processes keep stopping at start; giving up');
      serving(1);
      stop(1);
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'a server process stopped; starting another');
    start();
  });
  process.once('SIGINT', () => stop(0));
  process.once('SIGTERM', () => stop(0));
  for (let i = 0; i < n; i++) start();
  return ready;
}
