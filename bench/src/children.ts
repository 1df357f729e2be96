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
  /** What it logged: the last 4,000 characters, how many pino lines at warn (40) and error/fatal (50/60), the first 20 of the latter. */
  logs(): { tail: string; warnings: number; errors: number; errorLines: string[] };
  /** How it ended, if it has (exit code or signal, and when): null while it runs. */
  exited(): { code: number | null; signal: NodeJS.Signals | null; at: string } | null;
  /** Lines and bytes it wrote to stdout so far. */
  stdoutVolume(): { lines: number; bytes: number };
}

/**
 * The secrets the Tally child runs with, all given in the environment: with any one missing, Tally
 * reads (or creates) `<TALLY_DATA_DIR>/secrets.json`, i.e. `./.tally` in the project.
 */
export interface TallySecrets {
  serviceKey: string;
  jwtSecret: string;
  encryptionKey: string;
  /** TALLY_JOBS_CALLBACK_SECRET (the soak signs job callbacks with a provider secret of its own). */
  jobsCallbackSecret: string;
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
  /** A name for error messages (several children may run at once). */
  name?: string;
  /** More of Tally's environment (the soak: webhook and callback secrets, queue poll). */
  env?: Record<string, string>;
  /**
   * `parse` (default): every stdout line is scanned for pino warn/error levels. `ship`: stdout is
   * read and discarded, as a log shipper reads a deployment's (lines and bytes counted; the logging
   * scenario, so the bench's own line parsing does not weigh on the side that logs). Stderr is
   * always parsed.
   */
  stdout?: 'parse' | 'ship';
}): Promise<ServerChild> {
  compiled('dist/src/cli/main.js');
  const port = await freePort();
  return launch(opts.name ?? 'tally', [...opts.nodeArgs, join(PROJECT_ROOT, 'bin', 'tally.js'), 'start'], port, {
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
    TALLY_JOBS_CALLBACK_SECRET: opts.secrets.jobsCallbackSecret,
    LOG_LEVEL: opts.logLevel,
    // Ledger tuning passes through, so a bench run can compare settings.
    ...Object.fromEntries(
      ['TALLY_LEDGER_MAX_BATCH', 'TALLY_LEDGER_MAX_PARALLEL', 'TALLY_CHECK_CACHE_MS', 'TALLY_DB_POOLER'].flatMap((k) => {
        const v = process.env[k];
        return v ? [[k, v]] : [];
      }),
    ),
    ...opts.env,
  }, opts.stdout ?? 'parse');
}

/** The gateway scenario's fake OpenAI-compatible provider (fake-upstream.ts), in its own process. */
export async function startFakeUpstream(opts: { nodeArgs: string[] }): Promise<ServerChild> {
  const entry = compiled('dist/bench/src/fake-upstream.js');
  const port = await freePort();
  return launch('fake upstream', [...opts.nodeArgs, entry], port, { NODE_ENV: 'production', FAKE_PORT: String(port) });
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

/** The ceiling: an empty Fastify POST route (empty-server.ts), in its own process too. */
export async function startEmpty(opts: { nodeArgs: string[] }): Promise<ServerChild> {
  const entry = compiled('dist/bench/src/empty-server.js');
  const port = await freePort();
  return launch('empty route', [...opts.nodeArgs, entry], port, { NODE_ENV: 'production', EMPTY_PORT: String(port) });
}

async function launch(name: string, args: string[], port: number, env: Record<string, string>, stdout: 'parse' | 'ship' = 'parse'): Promise<ServerChild> {
  // Only what a server needs from the parent's environment: no DATABASE_URL or TALLY_* leaks in.
  const base: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'NODE_OPTIONS']) {
    const v = process.env[k];
    if (v !== undefined) base[k] = v;
  }
  const child = spawn(process.execPath, args, { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: PROJECT_ROOT });
  let tail = '';
  let partial = '';
  let warnings = 0;
  let errors = 0;
  const errorLines: string[] = [];
  const keep = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    tail = (tail + text).slice(-4000);
    const lines = (partial + text).split('\n');
    partial = (lines.pop() ?? '').slice(-100_000);
    for (const line of lines) {
      if (/"level":40\b/.test(line)) warnings++;
      else if (/"level":(50|60)\b/.test(line)) {
        errors++;
        if (errorLines.length < 20) errorLines.push(line.slice(0, 8000));
      }
    }
  };
  const volume = { lines: 0, bytes: 0 };
  child.stdout?.on('data', (chunk: Buffer) => {
    volume.bytes += chunk.length;
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) volume.lines++;
    if (stdout === 'parse') keep(chunk);
    // Shipped: only the tail is kept (start-up failures show it), at the cost of one short string.
    else tail = (tail + chunk.toString('utf8', Math.max(0, chunk.length - 4000))).slice(-4000);
  });
  child.stderr?.on('data', keep);
  const state: { exited: { code: number | null; signal: NodeJS.Signals | null; at: string } | null } = { exited: null };
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      state.exited = { code, signal, at: new Date().toISOString() };
      resolve();
    }),
  );

  const url = `http://127.0.0.1:${port}`;
  const handle: ServerChild = { name, url, pid: requirePid(child), stop: () => stop(), logs: () => ({ tail, warnings, errors, errorLines }), exited: () => state.exited, stdoutVolume: () => ({ ...volume }) };
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
