import cluster from 'node:cluster';
import { createApp } from '../app.js';
import { loadConfig } from '../config/load.js';
import { openDatabase } from '../db/database.js';
import { DataDirLocked } from '../db/data-dir-lock.js';
import { REFUSED, who } from './running-server.js';
import { migrate } from '../db/migrate.js';
import { createLogger } from '../logger.js';
import { startScheduler } from '../scheduler.js';
import { banner, superviseProcesses } from './start-processes.js';

/**
 * `tally start`: migrate, serve, and print where to find everything. Answers once serving (0) or
 * refused (2); the process then lives until a signal stops it.
 */
export async function startCommand(): Promise<number> {
  const { config, generatedSecrets } = loadConfig();
  // Several processes on one port: this one migrates and supervises them (start-processes.ts).
  if (cluster.isPrimary && (config.http.processes ?? 1) > 1) return superviseProcesses(config, generatedSecrets);
  const logger = createLogger(config.logLevel);
  let database;
  try {
    database = await openDatabase(config.database, { log: logger });
  } catch (err) {
    if (!(err instanceof DataDirLocked)) throw err;
    process.stderr.write(
      `tally: ${who(err.holder)} already has the embedded database open (${err.dataDir}); ` +
        `${err.holder.url ? 'use that server, or stop it' : 'wait for it to finish, or stop it'} before starting another, or give this one its own TALLY_DATA_DIR\n`,
    );
    return REFUSED;
  }
  const outcome = await migrate(database);
  if (!outcome.ok) {
    await database.close();
    throw new Error(outcome.message);
  }
  const app = await createApp({ config, database, logger });
  const address = await app.server.listen({ port: config.http.port, host: config.http.host });
  // Where the CLI finds this server: commands it can run through the HTTP API go here (src/cli/running-server.ts).
  database.dataDirLock?.announce(address);
  // Route schemas compile on first use; compile the rest now, off the start's critical path.
  app.server.warmSchemas().catch((err: unknown) => logger.error({ err }, 'a route schema does not compile'));
  const stopScheduler = startScheduler(app.services, logger, 30_000, config.queue?.pollMs ?? 1_000);
  // A supervised process tells its supervisor, which prints the one banner (start-processes.ts).
  if (cluster.isWorker) process.send?.({ tally: 'listening', address });
  else process.stdout.write(banner(config, generatedSecrets, address, outcome.applied));

  // SIGTERM: stop accepting (new requests on open connections get 503), let requests in flight
  // finish — a money request is answered after its commit or not at all — then stop the workers
  // and release the database. Bounded: past SHUTDOWN_MS the process exits anyway (docs/operations.md).
  const SHUTDOWN_MS = 15_000;
  // Clients keep connections alive (load balancers, SDKs, fetch): close() waits for every one of
  // them. Once no request is in flight, the rest are closed; requests in flight finish first.
  let inFlight = 0;
  let closing = false;
  const raw = app.server.server;
  const closeIdle = () => closing && inFlight === 0 && raw.closeAllConnections();
  raw.on('request', (_req, res) => {
    inFlight++;
    res.once('close', () => {
      inFlight--;
      closeIdle();
    });
  });
  const shutdown = async (signal: string) => {
    // Once: a supervised process may get SIGINT from the terminal and SIGTERM from its supervisor.
    if (closing) return;
    logger.info({ signal }, 'shutting down');
    closing = true;
    setTimeout(() => {
      logger.error({ ms: SHUTDOWN_MS }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, SHUTDOWN_MS).unref();
    try {
      const closed = app.server.close();
      closeIdle();
      await closed;
      await stopScheduler(); // after the server: no request can enqueue work the worker would miss
      await database.close();
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    }
    logger.info('shut down');
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  return 0;
}
