import { sql } from 'kysely';
import { httpAnswers } from '../src/http/answers.js';
import { answerOf } from './support/outcomes.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kyselyRunner } from '../src/db/statements.js';
import { BatchSql } from '../src/modules/credits/credits.batch-sql.js';
import type { LedgerOp } from '../src/modules/credits/credits.js';
import { LedgerSession } from '../src/modules/credits/credits.engine.js';
import { createTestDb, TARGET, type TestDb } from './support/harness.js';
import { must } from '../src/lib/must.js';

/**
 * A batch's write must touch only its own rows, whatever the tables' size. PostgreSQL estimates
 * every `jsonb_to_recordset` at 100 rows, so an `update … from jsonb_to_recordset(…)` joined on id
 * alone is planned as a sequential scan of the whole table once the table is a few thousand rows
 * (found in `npm run bench`: every batch read all accounts and all grants). The write's updates
 * also name their ids as an array, which the planner answers from the primary key.
 */
describe(`ledger: the batch write's plan (${TARGET})`, () => {
  let db: TestDb;
  const ACCOUNTS = 5_000;

  beforeAll(async () => {
    db = await createTestDb();
    const s = `"${db.database.schema}"`;
    const q = (text: string) => sql.raw(text.replace(/\b(users|credit_accounts|credit_grants|credit_holds|credit_ledger)\b/g, `${s}.$1`)).execute(db.database.root);
    // Enough rows that a whole-table scan costs more than a few primary-key lookups (statistics
    // taken), filled in three statements rather than through the API.
    await q(`insert into users (id) select 'p' || g from generate_series(1, ${ACCOUNTS}) g`);
    await q(`insert into credit_accounts (id, user_id, balance, total_credited) select 'acc_u_p' || g, 'p' || g, 1000, 1000 from generate_series(1, ${ACCOUNTS}) g`);
    await q(`insert into credit_grants (id, account_id, user_id, class, source, amount, remaining)
             select 'grt_p' || g, 'acc_u_p' || g, 'p' || g, 'default', 'grant', 1000, 1000 from generate_series(1, ${ACCOUNTS}) g`);
    await q(`insert into credit_ledger (id, account_id, user_id, type, amount, balance_after, reason, grant_id, seq)
             select 'txn_p' || g, 'acc_u_p' || g, 'p' || g, 'grant', 1000, 1000, 'seed', 'grt_p' || g, 1 from generate_series(1, ${ACCOUNTS}) g`);
    // Each account also has an open hold of 10.
    await q(`insert into credit_holds (id, account_id, user_id, amount, status, expires_at)
             select 'hld_p' || g, 'acc_u_p' || g, 'p' || g, 10, 'held', now() + interval '1 day' from generate_series(1, ${ACCOUNTS}) g`);
    await q(`update credit_accounts set last_seq = 1, held = 10`);
    await q('analyze users, credit_accounts, credit_grants, credit_holds, credit_ledger');
  });
  afterAll(async () => {
    await db?.close();
  });

  /** Plan node types per table, from EXPLAIN (FORMAT JSON). */
  function scans(plan: unknown, out = new Map<string, Set<string>>()): Map<string, Set<string>> {
    if (Array.isArray(plan)) for (const p of plan) scans(p, out);
    else if (plan && typeof plan === 'object') {
      const node = plan as Record<string, unknown>;
      const relation = node['Relation Name'];
      if (typeof relation === 'string' && typeof node['Node Type'] === 'string' && String(node['Node Type']).includes('Scan')) {
        if (!out.has(relation)) out.set(relation, new Set());
        must(out.get(relation), 'out.get(relation)').add(String(node['Node Type']));
      }
      for (const v of Object.values(node)) if (v && typeof v === 'object') scans(v, out);
    }
    return out;
  }

  it('debits and captures on a few accounts look each account, grant and hold up by primary key, never scan the table', async () => {
    const batchSql = new BatchSql(db.database.schema, httpAnswers);
    const accountIds = ['acc_u_p17', 'acc_u_p2500', 'acc_u_p4999'];
    const plan = await db.database.db.transaction().execute(async (trx) => {
      const run = kyselyRunner(trx);
      const accounts = await batchSql.lock(run, accountIds);
      const holdIds = accountIds.map((id) => id.replace('acc_u_p', 'hld_p'));
      const loaded = await batchSql.load(run, { accountIds, holdAccountIds: accountIds, holdIds, now: new Date(), scopes: [], refundIds: [] });
      expect(accounts).toHaveLength(3);
      const outs = accounts.map((account) => {
        const session = new LedgerSession({
          account,
          grants: loaded.grants.filter((g) => g.accountId === account.id),
          holds: loaded.holds.filter((h) => h.accountId === account.id),
          refundTargets: [],
          now: new Date(),
          balanceCap: null,
        });
        const op = { kind: 'debit', requestId: 'r', idem: null, amount: 5, reason: 'plan', metadata: {} } as LedgerOp;
        expect(answerOf(session.run(op))).toBe('created');
        const capture = { kind: 'capture', requestId: 'c', idem: null, holdId: account.id.replace('acc_u_p', 'hld_p'), amount: 4, metadata: {} } as LedgerOp;
        expect(answerOf(session.run(capture))).toBe('ok');
        return session.output([]);
      });
      const { statement } = batchSql.prepareWrite(outs, []);
      expect(statement).not.toBeNull();
      const write = must(statement, 'the batch has a write statement');
      const [row] = await run<{ 'QUERY PLAN': unknown }>({ ...write, text: `explain (format json) ${write.text}` });
      const queryPlan = must(row, 'explain returns a row')['QUERY PLAN'];
      return typeof queryPlan === 'string' ? JSON.parse(queryPlan) : queryPlan;
    });
    const byTable = scans(plan);
    for (const table of ['credit_accounts', 'credit_grants', 'credit_holds']) {
      expect(byTable.get(table), `${table} is read by the write`).toBeDefined();
      const nodes = must(byTable.get(table), `${table} is read by the write`);
      expect([...nodes], `${table}: ${[...nodes].join(', ')}`).not.toContain('Seq Scan');
    }
  });
});
