#!/usr/bin/env node
// The `tally` command: the compiled CLI (`npm run build`, run by `npm ci` and `npm start`).
// It runs the bundle (scripts/bundle.mjs: a few files instead of ~1,200 modules, a faster start)
// when it is at least as new as every file tsc wrote, and tsc's output otherwise (after a bare
// `tsc -p tsconfig.build.json`, which rewrites only the files whose text changed).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const bundled = fileURLToPath(new URL('../dist/bundle/main.js', import.meta.url));
if (!existsSync(compiled)) {
  process.stderr.write('tally: not built yet; run `npm run build` (npm ci and npm start do it for you)\n');
  process.exit(1);
}

/** Whether some file under dir was written after `since` (about 300 stats: a few milliseconds). */
function newerThan(dir, since) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() ? newerThan(path, since) : statSync(path).mtimeMs > since) return true;
  }
  return false;
}

const current = existsSync(bundled) && !newerThan(fileURLToPath(new URL('../dist/src', import.meta.url)), statSync(bundled).mtimeMs);
const { main } = await import(current ? bundled : compiled);
await main(process.argv);
