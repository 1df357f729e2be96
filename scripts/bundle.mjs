#!/usr/bin/env node
// Bundles the compiled CLI (dist/src, from tsc) and its pure-JS dependencies into dist/bundle/ with
// esbuild, which `bin/tally.js` runs when it is current. Why: a start spent ~1.3 s of its ~3.4 s in
// Node's module loader resolving and reading ~1,200 small files (kysely, typebox, zod, fastify's
// tree, jose…), not in Tally; one bundle imports in about a third of that (issue 17, README "Stack").
// dist/src stays the reference build: tests import the sources, and bin/tally.js falls back to
// dist/src whenever the bundle is older than it.
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'bundle');

// Left to Node's loader: native addons and WebAssembly with their files beside them, packages that
// find their own files through __dirname at run time (pino's worker transports, the Swagger UI's
// static assets), and big dependencies that are only loaded on first use anyway (S3, Stripe, the
// bench's load generator, SQLite for `tally import`).
const external = [
  '@electric-sql/pglite',
  'argon2',
  'pg-native',
  'better-sqlite3',
  'pino',
  'thread-stream',
  '@fastify/swagger',
  '@fastify/swagger-ui',
  '@aws-sdk/*',
  '@smithy/*',
  'stripe',
  'autocannon',
  'hdr-histogram-js',
];

rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: [join(root, 'dist', 'src', 'cli', 'main.js')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  // Bundled CommonJS packages call require() for Node's built-ins and the externals above.
  banner: { js: "import { createRequire as __tallyRequire } from 'node:module'; const require = __tallyRequire(import.meta.url);" },
  logLevel: 'warning',
  legalComments: 'none',
});
