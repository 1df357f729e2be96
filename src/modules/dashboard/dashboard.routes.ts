import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

/**
 * The package root, found by walking up to Tally's package.json: this file runs both from src/
 * (tests, tsx) and from dist/src/ (npm start), at different depths.
 */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'tally') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('dashboard: cannot find the tally package root');
    dir = up;
  }
}

/** Where `npm run build` puts the dashboard (vite's outDir in dashboard/vite.config.ts). */
export const defaultDashboardDir = (): string => join(packageRoot(), 'dist', 'dashboard');

const notBuilt = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tally dashboard not built</title></head>
<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem">
<h1>The Tally dashboard is not built</h1>
<p>The API is running, but the web dashboard's files are missing. Build them with <code>npm run build</code>
(<code>npm ci</code> and <code>npm start</code> do it for you), then reload this page.</p></body></html>`;

/**
 * Serves the dashboard's static build at /dashboard/ with a single-page-app fallback: any other
 * /dashboard/... path answers index.html and the app's router takes over. The dashboard holds no
 * privileges: it is static files that call the same API with the user's own credentials.
 * Without a build the server still starts and /dashboard says how to build it (503).
 */
export async function registerDashboard(app: FastifyInstance, dir: string): Promise<void> {
  const index = join(dir, 'index.html');
  const built = existsSync(index);
  // The router ignores trailing slashes: '/dashboard' is '/dashboard/' (asset URLs are absolute).
  if (!built) {
    app.get('/dashboard', { schema: { hide: true } }, async (_request, reply) =>
      reply.code(503).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(notBuilt),
    );
    app.get('/dashboard/*', { schema: { hide: true } }, async (_request, reply) =>
      reply.code(503).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(notBuilt),
    );
    return;
  }
  const html = readFileSync(index, 'utf8');
  await app.register(fastifyStatic, {
    root: dir,
    prefix: '/dashboard/',
    // Only files present at start-up get routes; everything else falls through to index.html below.
    wildcard: false,
    index: false,
    decorateReply: false,
    setHeaders: (res, path) => {
      // Vite fingerprints assets: they can be cached forever; index.html never.
      res.header('cache-control', path.includes(`${join(dir, 'assets')}`) ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  });
  const spa = async (_request: unknown, reply: import('fastify').FastifyReply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      // The app only talks to this origin; no inline scripts (Vite emits module files).
      .header('content-security-policy', "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
      .header('x-content-type-options', 'nosniff')
      .send(html);
  app.get('/dashboard', { schema: { hide: true } }, spa);
  app.get('/dashboard/*', { schema: { hide: true } }, spa);
}
