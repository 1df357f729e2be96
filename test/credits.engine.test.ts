import { describe, expect, it } from 'vitest';
import type { AccountState, GrantState, HoldState, LedgerOp } from '../src/modules/credits/credits.js';
import { applyOps, compareGrants } from '../src/modules/credits/credits.engine.js';

const now = new Date('2026-06-01T12:00:00Z');
const later = (s: number) => new Date(now.getTime() + s * 1000);
const account = (balance: number, held = 0): AccountState => ({
  id: 'acc_u_u1', userId: 'u1', workspaceId: null, balance, held, totalCredited: balance, totalSpent: 0,
});
let seq = 0;
const grant = (remaining: number, opts: Partial<GrantState> = {}): GrantState => ({
  id: `grt_${String(seq++).padStart(3, '0')}`, accountId: 'acc_u_u1', class: 'default', source: 'grant', amount: remaining, remaining,
  priority: 0, expiresAt: null, expiredAt: null, transactionId: null, metadata: {}, createdAt: new Date(now.getTime() - 1000 + seq),
  isNew: false, dirty: false, ...opts,
});
const base = { requestId: 'req_test', idem: null };
const debit = (amount: number): LedgerOp => ({ ...base, kind: 'debit', amount, reason: 'use', metadata: {} });
const run = (acct: AccountState, grants: GrantState[], ops: LedgerOp[], extra: { holds?: HoldState[]; cap?: number | null } = {}) =>
  applyOps({ account: acct, grants, holds: extra.holds ?? [], refundTargets: [], now, balanceCap: extra.cap === undefined ? 50_000 : extra.cap }, ops);

describe('ledger engine', () => {
  it('consumes soonest-expiring grants first, then lower priority number, then oldest', () => {
    const never = grant(10);
    const soon = grant(10, { expiresAt: later(60) });
    const sooner = grant(10, { expiresAt: later(30) });
    const pri = grant(10, { priority: -1 });
    const sorted = [never, soon, sooner, pri].sort(compareGrants).map((g) => g.id);
    expect(sorted).toEqual([sooner.id, soon.id, pri.id, never.id]);
    const out = run(account(40), [never, soon, sooner, pri], [debit(25)]);
    const left = Object.fromEntries(out.grants.map((g) => [g.id, g.remaining]));
    expect(left[sooner.id]).toBe(0);
    expect(left[soon.id]).toBe(0);
    expect(left[pri.id]).toBe(5);
    expect(out.allocations.map((a) => a.amount)).toEqual([10, 10, 5]);
  });

  it('never overspends: a debit beyond available is 402 and changes nothing', () => {
    const out = run(account(10, 4), [grant(10)], [debit(7)]);
    expect(out.results[0]!.status).toBe(402);
    expect(out.entries).toEqual([]);
    expect(out.account.balance).toBe(10);
  });

  it('later operations in a batch see earlier ones', () => {
    const out = run(account(25), [grant(25)], [debit(10), debit(10), debit(10)]);
    expect(out.results.map((r) => r.status)).toEqual([201, 201, 402]);
    expect(out.account.balance).toBe(5);
    expect(out.entries.map((e) => e.balanceAfter)).toEqual([15, 5]);
  });

  it('the cap refuses a grant that would cross it', () => {
    const out = run(account(49_990), [grant(49_990)], [{ ...base, kind: 'grant', amount: 11, reason: 'x', class: 'default', source: 'grant', expiresAt: null, priority: 0, metadata: {} }]);
    expect(out.results[0]!.status).toBe(422);
    const uncapped = run(account(49_990), [grant(49_990)], [{ ...base, kind: 'grant', amount: 11, reason: 'x', class: 'default', source: 'grant', expiresAt: null, priority: 0, metadata: {} }], { cap: null });
    expect(uncapped.results[0]!.status).toBe(201);
  });

  it('expired grants leave through a visible expiry entry before anything is spent', () => {
    const old = grant(30, { expiresAt: new Date(now.getTime() - 1) });
    const out = run(account(40), [old, grant(10)], [debit(15)]);
    expect(out.entries.map((e) => [e.type, e.amount])).toEqual([['expiry', -30]]);
    expect(out.results[0]!.status).toBe(402);
  });

  it('expiry never takes the balance below what open holds need', () => {
    const old = grant(30, { expiresAt: new Date(now.getTime() - 1) });
    const hold: HoldState = {
      id: 'hold_1', accountId: 'acc_u_u1', userId: 'u1', workspaceId: null, amount: 20, captured: null, status: 'held',
      expiresAt: later(600), transactionId: null, metadata: {}, resolvedAt: null, createdAt: now, isNew: false, dirty: false,
    };
    const out = run(account(30, 20), [old], [{ ...base, kind: 'capture', holdId: 'hold_1', amount: 20, metadata: {} }], { holds: [hold] });
    expect(out.entries.map((e) => [e.type, e.amount])).toEqual([['expiry', -10], ['capture', -20]]);
    expect(out.results[0]!.status).toBe(200);
    expect(out.account).toMatchObject({ balance: 0, held: 0 });
  });

  it('a past-due hold expires and its credits become available', () => {
    const hold: HoldState = {
      id: 'hold_2', accountId: 'acc_u_u1', userId: 'u1', workspaceId: null, amount: 10, captured: null, status: 'held',
      expiresAt: new Date(now.getTime() - 1), transactionId: null, metadata: {}, resolvedAt: null, createdAt: now, isNew: false, dirty: false,
    };
    const out = run(account(10, 10), [grant(10)], [debit(10), { ...base, kind: 'release', holdId: 'hold_2' }], { holds: [hold] });
    expect(out.results.map((r) => r.status)).toEqual([201, 409]);
    expect(out.holds[0]).toMatchObject({ status: 'expired' });
  });

  it('capture takes at most the hold and releases the rest', () => {
    const hold: HoldState = {
      id: 'hold_3', accountId: 'acc_u_u1', userId: 'u1', workspaceId: null, amount: 10, captured: null, status: 'held',
      expiresAt: later(60), transactionId: null, metadata: {}, resolvedAt: null, createdAt: now, isNew: false, dirty: false,
    };
    const over = run(account(50, 10), [grant(50)], [{ ...base, kind: 'capture', holdId: 'hold_3', amount: 11, metadata: {} }], { holds: [hold] });
    expect(over.results[0]!.status).toBe(400);
    const ok = run(account(50, 10), [grant(50)], [{ ...base, kind: 'capture', holdId: 'hold_3', amount: 4, metadata: {} }], { holds: [hold] });
    expect(ok.account).toMatchObject({ balance: 46, held: 0, totalSpent: 4 });
  });
});
