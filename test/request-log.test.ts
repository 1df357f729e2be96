import { Writable } from 'node:stream';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/** Request logs (issue 17): one line per answered request, with what an operator filters on. */
describe(`request log (${TARGET})`, () => {
  const lines: Record<string, unknown>[] = [];
  let app: TestApp;

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    const logger = pino({ level: 'info' }, sink) as unknown as FastifyBaseLogger;
    app = await createTestApp({ http: { port: 0, host: '127.0.0.1', bodyLimit: 65_536, requestLog: true } }, { logger });
  });
  afterAll(() => app.close());

  it('writes one line per request: method, the route template (never the URL with ids or query), status, duration, request id', async () => {
    lines.length = 0;
    const res = await app.server.inject({ method: 'GET', url: '/v1/users/usr_secretish?limit=5', headers: { authorization: `Bearer ${app.serviceKey}` } });
    expect(res.statusCode).toBe(404);
    const requestLines = lines.filter((l) => l['reqId'] === res.headers['x-request-id']);
    expect(requestLines).toHaveLength(1);
    expect(requestLines[0]).toMatchObject({ level: 30, msg: 'request', method: 'GET', route: '/v1/users/:id', status: 404 });
    expect(typeof requestLines[0]?.['ms']).toBe('number');
    expect(JSON.stringify(lines)).not.toContain('usr_secretish');
    expect(JSON.stringify(lines)).not.toContain(app.serviceKey);
  });
});
