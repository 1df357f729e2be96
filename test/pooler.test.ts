import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/database.js';
import { isTransactionPooler } from '../src/db/postgres.js';
import { client } from './support/client.js';
import { makeUser } from './support/fixtures.js';
import { createTestApp, POSTGRES_URL, TARGET, type TestApp } from './support/harness.js';

/**
 * Behind a transaction-mode pooler (PgBouncer's pool_mode = transaction, Supabase's port 6543)
 * consecutive transactions of one client may run on different server connections: named prepared
 * statements and session settings do not survive. Tally detects the pooler at start and uses
 * unnamed statements and per-transaction settings. This file runs in the "pgbouncer" project
 * (vitest.config.ts, TEST_PGBOUNCER_URL; .ci/run starts Debian's PgBouncer).
 */
describe.runIf(TARGET === 'postgres' && process.env['TALLY_TEST_POOLER'] === 'transaction')('a transaction-mode pooler (pgbouncer)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('is detected at start: unnamed statements, bounds set per transaction, no LISTEN without a direct URL', async () => {
    expect(await isTransactionPooler(POSTGRES_URL)).toBe(true);
    expect(app.database.pooled).toBe(true);
    expect(app.database.beginSql).toMatch(/set local statement_timeout/);
    expect(app.database.listen).toBeNull();
    // The app's own database (a copy of the run's template), through the same pooler.
    const url = app.config.database.kind === 'postgres' ? app.config.database.url : POSTGRES_URL;
    const forced = await openDatabase({ kind: 'postgres', url, poolMax: 2, schema: app.database.schema, pooler: 'none' });
    expect(forced.pooled).toBe(false);
    await forced.close();
  });

  it('concurrent money writes all succeed through the pooler, and again and again (no "prepared statement already exists")', async () => {
    const svc = client(app.server, app.serviceKey);
    const user = await makeUser(app);
    expect((await svc.post('/v1/credits/grant', { user_id: user.id, amount: 100, reason: 'fund' }, { idempotencyKey: `g-${user.id}` })).status).toBe(201);
    for (let round = 0; round < 3; round++) {
      const statuses = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          svc.post('/v1/credits/debit', { user_id: user.id, amount: 1, reason: 'pooled' }, { idempotencyKey: `d-${round}-${i}-${randomBytes(3).toString('hex')}` }).then((r) => r.status),
        ),
      );
      expect(statuses).toEqual([201, 201, 201, 201, 201, 201]);
    }
    const events = await Promise.all(
      Array.from({ length: 4 }, () => svc.post('/v1/check', { user_id: user.id, metric: 'anything' }).then((r) => r.status)),
    );
    // An unpriced metric is a 4xx answer; what matters here is that nothing is a 500.
    expect(events.every((s) => s < 500)).toBe(true);
    expect(((await svc.get(`/v1/users/${user.id}/balance`)).body as { balance: number }).balance).toBe(3 + 100 - 18);
  });
});
