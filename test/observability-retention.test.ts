import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiLogsInsert, errorLogsInsert } from '../src/modules/observability/observability.repository.js';
import type { RetentionRule } from '../src/modules/observability/observability.retention.js';
import type { StoredApiLog } from '../src/modules/observability/observability.js';
import { must } from '../src/lib/must.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * Retention on a fixed "now" (2030-06-15 12:00 UTC) far from the real clock, on a database of its
 * own: nothing but the rows these tests insert. Partitioned tables lose whole expired months as
 * partitions and the expired rest row by row; plain tables lose expired rows; nothing younger goes.
 */
describe(`retention drops exactly what expired (${TARGET})`, () => {
  let app: TestApp;
  const now = new Date(Date.UTC(2030, 5, 15, 12));
  const t = (name: string) => sql.table(`${app.database.schema}.${name}`);
  const id = () => `req_${randomBytes(10).toString('hex')}`;
  const log = (requestId: string, at: string): StoredApiLog => ({
    requestId, at: new Date(at), method: 'GET', route: '/v1/x', path: '/v1/x', status: 200, durationMs: 1, callerKind: 'service',
    callerId: null, apiKeyId: null, requestBytes: null, responseBytes: null, ip: null, userAgent: null,
  });
  const rule = (table: string): RetentionRule => must(app.services.observability.retention.registered.find((r) => r.table === table), table);

  beforeAll(async () => {
    app = await createTestApp({ observability: { requestLogs: null, errorLogs: false, retentionDays: { api_logs: 30, error_logs: 90, performance_metrics: 90 } } });
  });
  afterAll(async () => {
    await app.close();
  });

  it('api_logs (30 days): expired months dropped as partitions, the expired rest deleted, the cutoff itself and everything younger kept', async () => {
    const retention = app.services.observability.retention;
    // Partitions for March, April and May 2030 (as if the scheduler had run in March).
    expect(await retention.ensurePartitions(rule('api_logs'), new Date(Date.UTC(2030, 2, 10)))).toEqual(['api_logs_p203003', 'api_logs_p203004', 'api_logs_p203005']);
    const cutoff = '2030-05-16T12:00:00.000Z';
    const rows = {
      march: log(id(), '2030-03-10T00:00:00Z'),
      aprilEnd: log(id(), '2030-04-30T23:59:59.999Z'),
      justExpired: log(id(), '2030-05-16T11:59:59.999Z'),
      atCutoff: log(id(), cutoff),
      may20: log(id(), '2030-05-20T00:00:00Z'),
      // No partition for these yet: they sit in the default partition.
      december: log(id(), '2029-12-01T00:00:00Z'),
      june: log(id(), '2030-06-15T11:00:00Z'),
      nextYear: log(id(), '2031-01-01T00:00:00Z'),
    };
    await apiLogsInsert(app.database.db, app.database.schema, Object.values(rows));
    const inDefault = await sql<{ request_id: string }>`select request_id from ${t('api_logs_default')}`.execute(app.database.db);
    expect(inDefault.rows.map((r) => r.request_id).sort()).toEqual([rows.december.requestId, rows.june.requestId, rows.nextYear.requestId].sort());

    const report = await retention.apply(rule('api_logs'), now);
    expect(report.createdPartitions).toEqual(['api_logs_p203006', 'api_logs_p203007', 'api_logs_p203008']);
    expect(report.droppedPartitions).toEqual(['api_logs_p203003', 'api_logs_p203004']);
    expect(report.deletedRows).toBe(2); // justExpired (May's partition) and december (the default one)

    const left = await sql<{ request_id: string; part: string }>`select request_id, tableoid::regclass::text as part from ${t('api_logs')}`.execute(app.database.db);
    const kept = new Map(left.rows.map((r) => [r.request_id, r.part.replace(/^.*\./, '').replace(/"/g, '')]));
    expect([...kept.keys()].sort()).toEqual([rows.atCutoff, rows.may20, rows.june, rows.nextYear].map((r) => r.requestId).sort());
    // June's row moved out of the default partition into the partition made for its month.
    expect(kept.get(rows.june.requestId)).toBe('api_logs_p203006');
    expect(kept.get(rows.nextYear.requestId)).toBe('api_logs_default');

    const parts = await sql<{ relname: string; relrowsecurity: boolean }>`
      select c.relname, c.relrowsecurity from pg_inherits i join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent join pg_namespace n on n.oid = p.relnamespace
      where n.nspname = ${app.database.schema} and p.relname = 'api_logs' order by 1`.execute(app.database.db);
    expect(parts.rows.map((p) => p.relname)).toEqual(['api_logs_default', 'api_logs_p203005', 'api_logs_p203006', 'api_logs_p203007', 'api_logs_p203008']);
    // Every partition is closed to end users like its parent (row-level security on, no policy).
    for (const p of parts.rows) expect(p.relrowsecurity, p.relname).toBe(true);

    // Run again: nothing more has expired.
    const again = await retention.apply(rule('api_logs'), now);
    expect(again).toMatchObject({ droppedPartitions: [], createdPartitions: [], deletedRows: 0 });
  });

  it('error_logs (90 days) and performance_metrics (90 days, a plain table) keep exactly what is younger', async () => {
    const retention = app.services.observability.retention;
    const err = (at: string) => ({
      requestId: id(), at: new Date(at), fingerprint: '0123456789abcdef', method: 'GET', route: '/v1/x', status: 500,
      errorClass: 'Error', message: 'boom', stack: null, callerKind: 'service', callerId: null,
    });
    const old = err('2030-03-17T11:59:59Z');
    const young = err('2030-03-17T12:00:00Z');
    await errorLogsInsert(app.database.db, [old, young]);
    const report = await retention.apply(rule('error_logs'), now);
    expect(report.deletedRows).toBe(1);
    const left = await app.database.db.selectFrom('error_logs').select('request_id').execute();
    expect(left.map((r) => r.request_id)).toEqual([young.requestId]);

    const metric = (minute: string) => ({ minute: new Date(minute), method: 'GET', route: '/v1/x', requests: 1, errors: 0, p50_ms: 1, p95_ms: 1, p99_ms: 1, max_ms: 1 });
    await app.database.db.insertInto('performance_metrics').values([metric('2030-03-17T11:59:00Z'), metric('2030-03-17T12:00:00Z'), metric('2030-06-15T11:00:00Z')]).execute();
    const perf = await retention.apply(rule('performance_metrics'), now);
    expect(perf).toMatchObject({ deletedRows: 1, droppedPartitions: [], createdPartitions: [] });
    const minutes = await app.database.db.selectFrom('performance_metrics').select('minute').orderBy('minute').execute();
    expect(minutes.map((m) => new Date(m.minute as Date).toISOString())).toEqual(['2030-03-17T12:00:00.000Z', '2030-06-15T11:00:00.000Z']);
  });

  it('a table kept forever (days null) loses nothing; its partitions are still made ahead', async () => {
    const retention = app.services.observability.retention;
    const forever: RetentionRule = { ...rule('api_logs'), days: null };
    const before = await app.database.db.selectFrom('api_logs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const report = await retention.apply(forever, new Date(Date.UTC(2031, 0, 5)));
    expect(report.droppedPartitions).toEqual([]);
    expect(report.deletedRows).toBe(0);
    // January 2031 had a row waiting in the default partition: it moves into its month.
    expect(report.createdPartitions).toEqual(['api_logs_p203101', 'api_logs_p203102', 'api_logs_p203103']);
    const after = await app.database.db.selectFrom('api_logs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    expect(Number(after.n)).toBe(Number(before.n));
  });

  it('the scheduler’s run covers every registered table and reports each', async () => {
    const run = await app.services.observability.retention.run(now);
    expect(run.failures).toEqual([]);
    expect(run.reports.map((r) => r.table).sort()).toEqual(['analytics_events', 'api_logs', 'error_logs', 'performance_metrics']);
  });
});
