#!/usr/bin/env node
// `npm start` runs this first: it builds only what changed since the last build, and says what it
// is doing while it does, so a warm start goes straight to "listening" (issue 17). `npm run build`
// still builds everything unconditionally.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SKIP = new Set(['node_modules', 'dist', 'results', '.tally']);

/** The newest modification time under these paths (files and folders: a deleted file touches its folder). */
function newest(paths) {
  let max = 0;
  const walk = (p) => {
    if (!existsSync(p)) return;
    const st = statSync(p);
    max = Math.max(max, st.mtimeMs);
    if (st.isDirectory()) for (const e of readdirSync(p)) if (!SKIP.has(e)) walk(join(p, e));
  };
  for (const p of paths) walk(join(root, p));
  return max;
}

const builtAt = (file) => (existsSync(join(root, file)) ? statSync(join(root, file)).mtimeMs : 0);

const parts = [
  {
    name: 'the server (tsc, then one bundle)',
    inputs: ['src', 'bench', 'tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json'],
    output: 'dist/bundle/main.js',
    command: ['npm', ['run', '-s', 'build:server']],
  },
  {
    name: 'the dashboard (vite)',
    inputs: ['dashboard', 'package.json', 'package-lock.json'],
    output: 'dist/dashboard/index.html',
    command: ['npm', ['run', '-s', 'build:dashboard']],
  },
];

// `--server` builds only the server (the CLI tests run the compiled `tally`: test/support/cli.ts).
const wanted = process.argv.includes('--server') ? parts.slice(0, 1) : parts;

for (const part of wanted) {
  const built = builtAt(part.output);
  if (built > 0 && newest(part.inputs) <= built) continue;
  const started = Date.now();
  process.stderr.write(`tally: building ${part.name}${built ? ' (sources changed)' : ' (first build)'}…\n`);
  const [cmd, args] = part.command;
  const result = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) {
    process.stderr.write(`tally: building ${part.name} failed (exit ${result.status ?? result.signal})\n`);
    process.exit(result.status ?? 1);
  }
  // tsc leaves an output whose text did not change untouched, so the marker could stay older than
  // the sources it was just built from (and every start would rebuild): mark the build's time.
  const now = new Date();
  utimesSync(join(root, part.output), now, now);
  process.stderr.write(`tally: built ${part.name} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}
