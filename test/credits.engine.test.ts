import { describe, expect, it } from 'vitest';
import type { AccountState, GrantState, HoldState, LedgerOp } from '../src/modules/credits/credits.js';
import { applyOps, compareGrants } from '../src/modules/credits/credits.engine.js';
import { answerOf } from './support/outcomes.js';
import { must } from '../src/lib/must.js';

const now = new Date('2026-06-01T12:00:00Z');
const later = (s: number) => new Date(now.getTime() + s * 1000);
const account = (balance: number, held = 0): AccountState => ({
  id: 'acc_u_u1', userId: 'u1', workspaceId: null, balance, held, totalCredited: balance, totalSpent: 0, lastSeq: 0, version: 0,
});
let seq = 0;
const grant = (remaining: number, opts: Partial<GrantState> = {}): GrantState => ({
  id: `grt_${String(seq++).padStart(3, '0')}`, accountId: 'acc_u_u1', class: 'default', source: 'grant', amount: remaining, remaining,
  priority: 0, expiresAt: null, expiredAt: null, rolloverUntil: null, transactionId: null, metadata: {}, createdAt: new Date(now.getTime() - 1000 + seq),
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
    expect(answerOf(must(out.results[0], 'out.results[0]'))).toBe('insufficient_credits');
    expect(out.entries).toEqual([]);
    expect(out.account.balance).toBe(10);
  });

  it('later operations in a batch see earlier ones', () => {
    const out = run(account(25), [grant(25)], [debit(10), debit(10), debit(10)]);
    expect(out.results.map(answerOf)).toEqual(['created', 'created', 'insufficient_credits']);
    expect(out.account.balance).toBe(5);
    expect(out.entries.map((e) => e.balanceAfter)).toEqual([15, 5]);
  });

  it("numbers entries after the account's last one, skipping refusals", () => {
    const out = run({ ...account(25), lastSeq: 7 }, [grant(25)], [debit(10), debit(30), debit(10)]);
    expect(out.results.map(answerOf)).toEqual(['created', 'insufficient_credits', 'created']);
    expect(out.entries.map((e) => e.seq)).toEqual([8, 9]);
    expect(out.account.lastSeq).toBe(9);
  });

  it('the cap refuses a grant that would cross it', () => {
    const out = run(account(49_990), [grant(49_990)], [{ ...base, kind: 'grant', amount: 11, reason: 'x', class: 'default', source: 'grant', expiresAt: null, priority: 0, metadata: {} }]);
    expect(answerOf(must(out.results[0], 'out.results[0]'))).toBe('balance_cap_exceeded');
    const uncapped = run(account(49_990), [grant(49_990)], [{ ...base, kind: 'grant', amount: 11, reason: 'x', class: 'default', source: 'grant', expiresAt: null, priority: 0, metadata: {} }], { cap: null });
    expect(answerOf(must(uncapped.results[0], 'uncapped.results[0]'))).toBe('created');
  });

  it('expired grants leave through a visible expiry entry before anything is spent', () => {
    const old = grant(30, { expiresAt: new Date(now.getTime() - 1) });
    const out = run(account(40), [old, grant(10)], [debit(15)]);
    expect(out.entries.map((e) => [e.type, e.amount])).toEqual([['expiry', -30]]);
    expect(answerOf(must(out.results[0], 'out.results[0]'))).toBe('insufficient_credits');
  });

  it('expiry never takes the balance below what open holds need', () => {
    const old = grant(30, { expiresAt: new Date(now.getTime() - 1) });
    const hold: HoldState = {
      id: 'hold_1', accountId: 'acc_u_u1', userId: 'u1', workspaceId: null, memberId: null, amount: 20, captured: null, status: 'held',
      expiresAt: later(600), transactionId: null, metadata: {}, resolvedAt: null, createdAt: now, isNew: false, dirty: false,
    };
    const out = run(account(30, 20), [old], [{ ...base, kind: 'capture', holdId: 'hold_1', amount: 20, metadata: {} }], { holds: [hold] });
    expect(out.entries.map((e) => [e.type, e.amount])).toEqual([['expiry', -10], ['capture', -20]]);
    expect(answerOf(must(out.results[0], 'out.results[0]'))).toBe('ok');
    expect(out.account).toMatchObject({ balance: 0, held: 0 });
  });

  it('a past-due hold expires and its credits become available', () => {
    const hold: HoldState = {
      id: 'hold_2', accountId: 'acc_u_u1', userId: 'u1', workspaceId: null, memberId: null, amount: 10, captured: null, status: 'held',
      expiresAt: new Date(now.getTime() - 1), transactionId: null, metadata: {}, resolvedAt: null, createdAt: now, isNew: false, dirty: false,
    };
    const out = run(account(10, 10), [grant(10)], [debit(10), { ...base, kind: 'release', holdId: 'hold_2' }], { holds: [hold] });
    expect(out.results.map(answerOf)).toEqual(['created', 'invalid_state']);
    expect(out.holds[0]).toMatchObject({ status: 'expired' });
  });

  describe('a past-due grant backing a hold is never spent by anything but the hold', () => {
    const pastDue = () => grant(10, { expiresAt: new Date(now.getTime() - 1) });
    const open = (amount: number): HoldState => ({
      id: 'hold_pd', accountId: 'acc_u_u1', userId: 'u1', workspaceId: null, memberId: null, amount, captured: null, status: 'held',
      expiresAt: later(600), transactionId: null, metadata: {}, resolvedAt: null, createdAt: now, isNew: false, dirty: false,
    });
    const grantOp = (amount: number): LedgerOp => ({
      ...base, kind: 'grant', amount, reason: 'top-up', class: 'default', source: 'grant', expiresAt: null, priority: 0, metadata: {},
    });

    it('a release expires what it freed before a later operation of the batch can spend it', () => {
      const out = run(account(10, 10), [pastDue()], [{ ...base, kind: 'release', holdId: 'hold_pd' }, debit(5)], { holds: [open(10)] });
      expect(out.results.map(answerOf)).toEqual(['ok', 'insufficient_credits']);
      expect(out.entries.map((e) => [e.type, e.amount])).toEqual([['expiry', -10]]);
      expect(out.account).toMatchObject({ balance: 0, held: 0 });
    });

    it('a partial capture takes the past-due credits first and the rest expires at once', () => {
      const out = run(account(10, 10), [pastDue()], [{ ...base, kind: 'capture', holdId: 'hold_pd', amount: 4, metadata: {} }, debit(1)], { holds: [open(10)] });
      expect(out.results.map(answerOf)).toEqual(['ok', 'insufficient_credits']);
      expect(out.entries.map((e) => [e.type, e.amount])).toEqual([['capture', -4], ['expiry', -6]]);
      expect(out.account).toMatchObject({ balance: 0, held: 0 });
    });

    it('a debit while the hold is open is paid from unexpired grants, so the past-due ones still expire when the hold ends', () => {
      const old = pastDue();
      const out = run(account(10, 10), [old], [grantOp(5), debit(5), { ...base, kind: 'release', holdId: 'hold_pd' }], { holds: [open(10)] });
      expect(out.results.map(answerOf)).toEqual(['created', 'created', 'ok']);
      expect(out.entries.map((e) => [e.type, e.amount])).toEqual([['grant', 5], ['debit', -5], ['expiry', -10]]);
      expect(out.account).toMatchObject({ balance: 0, held: 0 });
    });

    it('usage and clawbacks skip past-due grants too', () => {
      const tiers = [{ name: 'credits', sources: 'other' as const, classes: null }];
      const consume: LedgerOp = { ...base, kind: 'consume', amount: 5, reason: 'usage', metadata: {}, tiers };
      const clawback: LedgerOp = { ...base, kind: 'clawback', amount: 5, reason: 'refund of pay_1', transactionId: null, metadata: {} };
      for (const op of [consume, clawback]) {
        const out = run(account(10, 10), [pastDue()], [grantOp(5), op, { ...base, kind: 'release', holdId: 'hold_pd' }], { holds: [open(10)] });
        expect(out.results.map(answerOf), op.kind).toEqual(['created', 'created', 'ok']);
        const topUp = must(out.grants.find((g) => g.isNew), 'the top-up grant');
        expect(must(out.entries[1], op.kind).grantId, op.kind).toBe(topUp.id);
        expect(out.entries.map((e) => e.type).at(-1), op.kind).toBe('expiry');
        expect(out.account.balance, op.kind).toBe(0);
      }
    });
  });

  it('capture takes at most the hold and releases the rest', () => {
    const hold: HoldState = {
      id: 'hold_3', accountId: 'acc_u_u1', userId: 'u1', workspaceId: null, memberId: null, amount: 10, captured: null, status: 'held',
      expiresAt: later(60), transactionId: null, metadata: {}, resolvedAt: null, createdAt: now, isNew: false, dirty: false,
    };
    const over = run(account(50, 10), [grant(50)], [{ ...base, kind: 'capture', holdId: 'hold_3', amount: 11, metadata: {} }], { holds: [hold] });
    expect(answerOf(must(over.results[0], 'over.results[0]'))).toBe('invalid_request');
    const ok = run(account(50, 10), [grant(50)], [{ ...base, kind: 'capture', holdId: 'hold_3', amount: 4, metadata: {} }], { holds: [hold] });
    expect(ok.account).toMatchObject({ balance: 46, held: 0, totalSpent: 4 });
  });

  it('rolls an expiring allowance over whole into a rollover grant that expires once, net zero', () => {
    const allowance = grant(30, { source: 'allowance', class: 'BC', expiresAt: later(-10), rolloverUntil: later(3600) });
    const out = run(account(30), [allowance], [debit(5)]);
    expect(out.entries.map((e) => [e.type, e.amount])).toEqual([['expiry', -30], ['rollover', 30], ['debit', -5]]);
    const bucket = must(out.grants.find((g) => g.source === 'rollover'), 'a matching item');
    expect(bucket).toMatchObject({ class: 'BC', amount: 30, remaining: 25, rolloverUntil: null });
    expect(bucket.expiresAt).toEqual(later(3600));
    expect(out.account.balance).toBe(25);
    expect(out.account.totalCredited).toBe(30); // a rollover is not new credit
    // A rollover bucket past its own expiry just expires: one cycle, not two.
    const again = run(account(25), [{ ...bucket, isNew: false, expiresAt: later(-1) }], []);
    expect(again.entries.map((e) => e.type)).toEqual(['expiry']);
    expect(again.account.balance).toBe(0);
  });

  it('consume takes tier by tier and skips another class\'s allowance', () => {
    const bc = grant(10, { source: 'allowance', class: 'BC', expiresAt: later(100) });
    const usage = grant(10, { source: 'allowance', class: 'Usage', expiresAt: later(100) });
    const roll = grant(5, { source: 'rollover', class: 'Usage', expiresAt: later(50) });
    const bought = grant(100);
    const tiers = [
      { name: 'allowance', sources: ['allowance'], classes: ['Usage'] },
      { name: 'rollover', sources: ['rollover'], classes: ['Usage'] },
      { name: 'credits', sources: 'other' as const, classes: null },
    ];
    const consume: LedgerOp = { ...base, kind: 'consume', amount: 30, reason: 'usage', metadata: {}, tiers };
    const out = run(account(125), [bc, usage, roll, bought], [consume]);
    expect(answerOf(must(out.results[0], 'out.results[0]'))).toBe('created');
    const left = Object.fromEntries(out.grants.map((g) => [g.id, g.remaining]));
    expect(left).toEqual({ [usage.id]: 0, [roll.id]: 0, [bought.id]: 85 });
    expect(out.entries).toHaveLength(1);
    expect(out.entries[0]).toMatchObject({ type: 'debit', amount: -30, balanceAfter: 95 });
    expect(out.allocations.map((a) => a.amount)).toEqual([10, 5, 15]);
    // More than the tiers hold (BC is not theirs) is refused and changes nothing.
    const tooMuch = run(account(125), [bc, usage, roll, bought], [{ ...consume, amount: 116 }]);
    expect(answerOf(must(tooMuch.results[0], 'tooMuch.results[0]'))).toBe('insufficient_credits');
    expect(tooMuch.entries).toHaveLength(0);
  });

  describe('clawback (a payment refunded or disputed)', () => {
    const clawback = (amount: number, transactionId: string | null = null): LedgerOp => ({
      ...base, kind: 'clawback', amount, reason: 'refund of pay_1', transactionId, metadata: {},
    });
    const grantOp = (amount: number): LedgerOp => ({
      ...base, kind: 'grant', amount, reason: 'purchase', class: 'default', source: 'purchase', expiresAt: null, priority: 0, metadata: {},
    });

    it("takes from the payment's own grant first, then from the others in consumption order", () => {
      const bought = grant(100, { transactionId: 'txn_buy', source: 'purchase' });
      const bonus = grant(10, { expiresAt: later(60) });
      const out = run(account(110), [bonus, bought], [clawback(105, 'txn_buy')]);
      expect(answerOf(must(out.results[0], 'out.results[0]'))).toBe('created');
      expect(out.entries.map((e) => [e.type, e.amount, e.balanceAfter])).toEqual([['clawback', -105, 5]]);
      expect(out.allocations).toEqual([
        { transactionId: must(out.entries[0], 'out.entries[0]').id, grantId: bought.id, amount: 100 },
        { transactionId: must(out.entries[0], 'out.entries[0]').id, grantId: bonus.id, amount: 5 },
      ]);
      expect(out.account).toMatchObject({ balance: 5, totalCredited: 110, totalSpent: 0 });
    });

    it('spent credits become debt: the balance goes negative and spending is refused (402)', () => {
      const bought = grant(20, { transactionId: 'txn_buy', source: 'purchase' });
      const out = run(account(20), [bought], [clawback(100, 'txn_buy'), debit(1), { ...base, kind: 'hold', amount: 1, expiresInSeconds: 60, metadata: {} }]);
      expect(out.results.map(answerOf)).toEqual(['created', 'insufficient_credits', 'insufficient_credits']);
      expect(out.account.balance).toBe(-80);
      const debt = must(out.grants.find((g) => g.source === 'debt'), 'a matching item');
      expect(debt).toMatchObject({ amount: 80, remaining: -80 });
      // balance == Σ grants.remaining, debt included
      expect(out.grants.reduce((s, g) => s + g.remaining, 0)).toBe(-80);
    });

    it('new grants pay the debt off first; only the rest is spendable', () => {
      const first = run(account(0), [], [clawback(30)]);
      const debt = must(first.grants.find((g) => g.source === 'debt'), 'a matching item');
      const second = run(first.account, [{ ...debt, isNew: false, dirty: false }], [grantOp(50), debit(20), debit(1)]);
      expect(second.results.map(answerOf)).toEqual(['created', 'created', 'insufficient_credits']);
      expect(second.account.balance).toBe(0);
      const grantEntry = must(second.entries[0], 'second.entries[0]');
      expect(grantEntry).toMatchObject({ type: 'grant', amount: 50, balanceAfter: 20 });
      const mine = second.allocations.filter((a) => a.transactionId === grantEntry.id);
      expect(mine.map((a) => a.amount)).toEqual([30, 20]);
      // The entry names its own grant, made for all 50: what repaid the debt counts as given out of it
      // (a plan's allowance granted in debt and taken back claws back all it gave: review attack 4).
      const made = must(second.grants.find((g) => g.id === grantEntry.grantId), 'the grant the entry names');
      expect(made).toMatchObject({ source: 'purchase', amount: 50, remaining: 0, transactionId: grantEntry.id });
      expect(mine.map((a) => a.grantId)).toEqual([debt.id, made.id]);
      expect(must(second.grants.find((g) => g.id === debt.id), 'second.grants.find((g) => g.id === debt.id)').remaining).toBe(0);
    });

    it('never takes the credits that back an open hold; the hold stays capturable', () => {
      const bought = grant(50, { transactionId: 'txn_buy', source: 'purchase' });
      const hold: HoldState = {
        id: 'hold_c', accountId: 'acc_u_u1', userId: 'u1', workspaceId: null, memberId: null, amount: 30, captured: null, status: 'held',
        expiresAt: later(600), transactionId: null, metadata: {}, resolvedAt: null, createdAt: now, isNew: false, dirty: false,
      };
      const out = run(account(50, 30), [bought], [clawback(50, 'txn_buy'), { ...base, kind: 'capture', holdId: 'hold_c', amount: 30, metadata: {} }], { holds: [hold] });
      expect(out.results.map(answerOf)).toEqual(['created', 'ok']);
      // 20 taken from the grant, 30 owed; then the capture spends the 30 the hold kept.
      expect(out.entries.map((e) => [e.type, e.amount, e.balanceAfter])).toEqual([['clawback', -50, 0], ['capture', -30, -30]]);
      expect(out.account).toMatchObject({ balance: -30, held: 0 });
    });

    it('expiry with debt outstanding still expires credits nobody holds', () => {
      const old = grant(10, { expiresAt: new Date(now.getTime() - 1) });
      const debt = grant(5, { source: 'debt', remaining: -5 });
      const out = run(account(5), [old, debt], [{ ...base, kind: 'sweep' }]);
      expect(out.entries.map((e) => [e.type, e.amount, e.balanceAfter])).toEqual([['expiry', -10, -5]]);
    });
  });
});

describe('opening balance (tally import, docs/import.md)', () => {
  const open = (amount: number): LedgerOp => ({ ...base, kind: 'open', amount, reason: 'opening balance', metadata: {} });
  const empty = (): AccountState => ({ ...account(0), totalCredited: 0 });

  it('a positive opening is one grant entry of source import, exempt from the cap, and the account equals it', () => {
    const out = run(empty(), [], [open(60_000)], { cap: 50_000 });
    expect(out.results.map(answerOf)).toEqual(['created']);
    expect(out.entries.map((e) => [e.type, e.amount, e.balanceAfter, e.seq])).toEqual([['grant', 60_000, 60_000, 1]]);
    expect(out.grants.map((g) => [g.source, g.amount, g.remaining, g.expiresAt])).toEqual([['import', 60_000, 60_000, null]]);
    expect(out.account).toMatchObject({ balance: 60_000, totalCredited: 60_000 });
    // The cap still refuses new credits on top of it.
    const next = run({ ...out.account }, out.grants.map((g) => ({ ...g, isNew: false, dirty: false })), [{ ...base, kind: 'grant', amount: 1, reason: 'more', class: 'default', source: 'grant', expiresAt: null, priority: 0, metadata: {} }], { cap: 50_000 });
    expect(next.results.map(answerOf)).toEqual(['balance_cap_exceeded']);
  });

  it('a negative opening is debt: a clawback leaving a debt grant, and nothing is spendable', () => {
    const out = run(empty(), [], [open(-15), debit(1)]);
    expect(out.results.map(answerOf)).toEqual(['created', 'insufficient_credits']);
    expect(out.entries.map((e) => [e.type, e.amount, e.balanceAfter])).toEqual([['clawback', -15, -15]]);
    expect(out.grants.map((g) => [g.source, g.remaining])).toEqual([['debt', -15]]);
    expect(out.account.balance).toBe(-15);
  });

  it('an opening split into buckets (000 allowances, rollover) is one entry over one grant per bucket, each with its class and expiry', () => {
    const soon = later(3600);
    const buckets = [
      { amount: 30, class: 'default', expiresAt: null, metadata: { source_part: 'points' } },
      { amount: 70, class: 'BC', expiresAt: soon, metadata: { source_table: 'allowances', source_id: 'al-1' } },
    ];
    const out = run(empty(), [], [{ ...base, kind: 'open', amount: 100, reason: 'opening balance', metadata: { shape: 'x' }, buckets }]);
    expect(out.results.map(answerOf)).toEqual(['created']);
    expect(out.entries.map((e) => [e.type, e.amount, e.balanceAfter, e.grantId])).toEqual([['grant', 100, 100, null]]);
    expect(out.grants.map((g) => [g.source, g.class, g.remaining, g.expiresAt, g.transactionId, g.metadata.source_id ?? null])).toEqual([
      ['import', 'default', 30, null, out.entries[0]?.id, null],
      ['import', 'BC', 70, soon, out.entries[0]?.id, 'al-1'],
    ]);
    expect(out.allocations.map((a) => a.amount)).toEqual([30, 70]);
    // Buckets that do not add up, or one already expired, are refused: the opening must equal the source.
    const wrong = run(empty(), [], [{ ...base, kind: 'open', amount: 101, reason: 'x', metadata: {}, buckets }]);
    expect(wrong.results.map(answerOf)).toEqual(['invalid_request']);
    const expired = run(empty(), [], [{ ...base, kind: 'open', amount: 5, reason: 'x', metadata: {}, buckets: [{ amount: 5, class: 'BC', expiresAt: new Date(now.getTime() - 1), metadata: {} }] }]);
    expect(expired.results.map(answerOf)).toEqual(['invalid_request']);
  });

  it('an opening is refused on an account that already has entries, and a second one in the same batch', () => {
    expect(run({ ...account(3), lastSeq: 1 }, [grant(3)], [open(10)]).results.map(answerOf)).toEqual(['conflict']);
    const twice = run(empty(), [], [open(10), open(10)]);
    expect(twice.results.map(answerOf)).toEqual(['created', 'conflict']);
    expect(twice.account.balance).toBe(10);
  });
});
