import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { createTestDb, TARGET, testConfig, type TestDb } from './support/harness.js';

/** How the server serves the dashboard's build: files, the SPA fallback, and a clear page without a build. */
describe(`the dashboard is served at /dashboard (${TARGET})`, () => {
  let db: TestDb;
  const built = mkdtempSync(join(tmpdir(), 'tally-dash-'));
  mkdirSync(join(built, 'assets'));
  writeFileSync(join(built, 'index.html'), '<!doctype html><title>Tally dashboard</title><div id="root"></div>');
  writeFileSync(join(built, 'assets', 'app-abc123.js'), 'console.log("app")');
  const make = (dashboardDir: string) =>
    createApp({ config: testConfig(db.database), database: db.database, logger: pino({ level: 'silent' }) as unknown as FastifyBaseLogger, dashboardDir });

  beforeAll(async () => {
    db = await createTestDb();
  });
  afterAll(async () => {
    await db.close();
  });

  it('serves files, answers index.html for app paths, and leaves the API and its 404s alone', async () => {
    const app = await make(built);
    try {
      for (const url of ['/dashboard', '/dashboard/', '/dashboard/users/usr_123', '/dashboard/payments?tab=unmatched']) {
        const res = await app.server.inject({ url });
        expect(res.statusCode, url).toBe(200);
        expect(res.headers['content-type']).toMatch(/text\/html/);
        expect(res.body).toContain('<div id="root">');
        expect(res.headers['content-security-policy']).toContain("default-src 'self'");
      }
      const asset = await app.server.inject({ url: '/dashboard/assets/app-abc123.js' });
      expect(asset.statusCode).toBe(200);
      expect(asset.body).toBe('console.log("app")');
      expect(asset.headers['cache-control']).toContain('immutable');
      // The API keeps its own JSON 404s; the dashboard's routes are not part of the OpenAPI document.
      const api404 = await app.server.inject({ url: '/v1/nope' });
      expect(api404.statusCode).toBe(404);
      expect(JSON.parse(api404.body).error.code).toBe('not_found');
      const doc = JSON.parse((await app.server.inject({ url: '/openapi.json' })).body) as { paths: Record<string, unknown> };
      expect(Object.keys(doc.paths).filter((p) => p.startsWith('/dashboard'))).toEqual([]);
    } finally {
      await app.server.close();
    }
  });

  it('without a build the server still starts and /dashboard says how to build it', async () => {
    const app = await make(join(built, 'missing'));
    try {
      for (const url of ['/dashboard', '/dashboard/users/usr_1']) {
        const res = await app.server.inject({ url });
        expect(res.statusCode).toBe(503);
        expect(res.body).toContain('The Tally dashboard is not built');
        expect(res.body).toContain('npm run build');
      }
      expect((await app.server.inject({ url: '/health' })).statusCode).toBe(200);
    } finally {
      await app.server.close();
    }
  });
});
