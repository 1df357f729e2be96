import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type CapturedRun, capturingIo } from '../../src/cli/io.js';
import { run } from '../../src/cli/main.js';

const ROOT = join(import.meta.dirname, '..', '..');

/**
 * The real `tally` command as users run it: `node bin/tally.js`, on the compiled sources. Built
 * first if the sources changed since the last build (scripts/build-if-stale.mjs --server; after
 * `npm ci` it is already built), under a lock so two test files never run tsc at once. Running the
 * compiled CLI instead of the TypeScript sources through tsx saves seconds per command.
 */
export async function tallyCommand(): Promise<string[]> {
  const dir = join(ROOT, 'node_modules', '.cache', 'tally-test');
  mkdirSync(dir, { recursive: true });
  const lock = join(dir, 'build.lock');
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch {
      // Another file is building; a lock older than 10 minutes was left by a killed run.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 600_000) rmSync(lock, { force: true });
      } catch {
        // gone meanwhile
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    const built = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-if-stale.mjs'), '--server'], { cwd: ROOT, encoding: 'utf8' });
    if (built.status !== 0) throw new Error(`building the CLI failed:\n${built.stderr}`);
  } finally {
    rmSync(lock, { force: true });
  }
  return [join(ROOT, 'bin', 'tally.js')];
}

/**
 * `tally <args>` in this process, on `env`: the code the binary runs (src/cli/main.ts `run`), its
 * output collected — without a Node start and a PGlite start per command.
 */
export async function tallyInProcess(env: NodeJS.ProcessEnv, ...args: string[]): Promise<CapturedRun> {
  const io = capturingIo(env);
  return io.captured(await run(['node', 'tally', ...args], io));
}
