import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../src/version.js';
import { sleep } from './stats.js';

/** An HTTP server under test, running in its own node process (compiled dist code). */
export interface ServerChild {
  name: string;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** The secrets the Tally child runs with (given in the environment, so it writes no data dir). */
export interface TallySecrets {
  serviceKey: string;
  jwtSecret: string;
  encryptionKey: string;
}

/** Every server child still running, so an interrupted bench can stop them. */
const running = new Set<ServerChild>();

/** Stops every server child still running (on SIGINT/SIGTERM of the bench). */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...running].map((c) => c.stop()));
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });

const compiled = (relative: string): string => {
  const file = join(PROJECT_ROOT, relative);
  if (!existsSync(file)) throw new Error(`${relative} is missing: run \`npm run build\` first (npm run bench does)`);
  return file;
};

/**
 * Tally exactly as deployed: `node bin/tally.js start` (migrates — a no-op here, the bench already
 * did — starts the scheduler and serves), on the bench schema, with no balance cap.
 */
export async function startTally(opts: {
  url: string;
  schema: string;
  poolMax: number;
  logLevel: string;
  secrets: TallySecrets;
  nodeArgs: string[];
}): Promise<ServerChild> {
  compiled('dist/src/cli/main.js');
  const port = await freePort();
  return launch('tally', [...opts.nodeArgs, join(PROJECT_ROOT, 'bin', 'tally.js'), 'start'], port, {
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: opts.url,
    DATABASE_POOL_MAX: String(opts.poolMax),
    TALLY_DB_SCHEMA: opts.schema,
    TALLY_BALANCE_CAP: '0',
    TALLY_SIGNUP_BONUS: '0',
    TALLY_SERVICE_KEY: opts.secrets.serviceKey,
    TALLY_JWT_SECRET: opts.secrets.jwtSecret,
    TALLY_ENCRYPTION_KEY: opts.secrets.encryptionKey,
    LOG_LEVEL: opts.logLevel,
    // Ledger tuning passes through, so a bench run can compare settings.
    ...Object.fromEntries(
      ['TALLY_LEDGER_MAX_BATCH', 'TALLY_LEDGER_MAX_PARALLEL', 'TALLY_CHECK_CACHE_MS', 'TALLY_DB_POOLER'].flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : [])),
    ),
  });
}

/** The seed design over HTTP (baseline-server.ts). */
export async function startBaseline(opts: { url: string; poolMax: number; serviceKey: string; nodeArgs: string[] }): Promise<ServerChild> {
  const entry = compiled('dist/bench/src/baseline-server.js');
  const port = await freePort();
  return launch('baseline', [...opts.nodeArgs, entry], port, {
    NODE_ENV: 'production',
    BASELINE_DATABASE_URL: opts.url,
    BASELINE_PORT: String(port),
    BASELINE_POOL_MAX: String(opts.poolMax),
    BASELINE_SERVICE_KEY: opts.serviceKey,
  });
}

async function launch(name: string, args: string[], port: number, env: Record<string, string>): Promise<ServerChild> {
  // Only what a server needs from the parent's environment: no DATABASE_URL or TALLY_* leaks in.
  const base: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'NODE_OPTIONS']) {
    const v = process.env[k];
    if (v !== undefined) base[k] = v;
  }
  const child = spawn(process.execPath, args, { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: PROJECT_ROOT });
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const state: { exited: { code: number | null; signal: NodeJS.Signals | null } | null } = { exited: null };
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      state.exited = { code, signal };
      resolve();
    }),
  );

  const url = `http://127.0.0.1:${port}`;
  const handle: ServerChild = { name, url, pid: requirePid(child), stop: () => stop() };
  running.add(handle);
  const stop = async () => {
    running.delete(handle);
    if (state.exited) return;
    child.kill('SIGTERM');
    const killed = await Promise.race([exit.then(() => true), sleep(10_000).then(() => false)]);
    if (!killed) {
      child.kill('SIGKILL');
      await exit;
    }
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (state.exited) {
      running.delete(handle);
      throw new Error(`${name} server exited during start-up (${JSON.stringify(state.exited)}):\n${tail}`);
    }
    try {
      const res = await fetch(`${url}/health`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${name} server did not become healthy within 30 s:\n${tail}`);
    }
    await sleep(100);
  }
  return handle;
}

const requirePid = (child: ChildProcess): number => {
  if (child.pid === undefined) throw new Error('child process has no pid');
  return child.pid;
};
