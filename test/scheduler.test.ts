import type { FastifyBaseLogger } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startScheduler } from '../src/scheduler.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * The scheduler's first pass runs at start, not a period (30 s) later: the month's log partitions
 * exist before the first request is logged, and stopping waits for a pass in progress.
 */
describe(`scheduler (${TARGET})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it("creates this month's log partitions on its first pass, at start; stop waits for the pass", async () => {
    const now = new Date();
    const month = `${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
    const names = async () => [
      ...(await app.services.observability.retention.partitions('api_logs')),
      ...(await app.services.observability.retention.partitions('error_logs')),
    ].map((p) => p.name);
    // The template database was migrated with no monthly partition (migrations cannot know the month).
    expect(await names()).not.toContain(`api_logs_p${month}`);
    const logger = pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' }) as unknown as FastifyBaseLogger;
    // A period far longer than the test: only the first pass can have made them.
    const stop = startScheduler(app.services, logger, 3_600_000, 3_600_000);
    try {
      await expect.poll(names, { timeout: 10_000, interval: 50 }).toEqual(expect.arrayContaining([`api_logs_p${month}`, `error_logs_p${month}`]));
    } finally {
      await stop();
    }
  });
});
