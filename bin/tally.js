#!/usr/bin/env node
// The `tally` command: the compiled CLI (`npm run build`, run by `npm ci` and `npm start`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (!existsSync(compiled)) {
  process.stderr.write('tally: not built yet; run `npm run build` (npm ci and npm start do it for you)\n');
  process.exit(1);
}
const { main } = await import(compiled);
await main(process.argv);
