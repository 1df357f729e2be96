import { describe, expect, it } from 'vitest';
import type { ForeignKey } from '../src/modules/export/export.catalog.js';
import { restorePlan } from '../src/modules/export/export.order.js';

const fk = (child: string, parent: string, nullable = false, name = `${child}_${parent}_fkey`): ForeignKey => ({ name, child, parent, childColumns: [`${parent}_id`], nullable });

/** The order a restore fills tables in with foreign keys on (docs/export.md, "Restore"). */
describe('restore plan', () => {
  it('puts every parent before its children, ties by name', () => {
    const plan = restorePlan(['messages', 'projects', 'users', 'audit_log'], [fk('messages', 'projects'), fk('projects', 'users'), fk('messages', 'users')]);
    expect(plan.order).toEqual(['audit_log', 'users', 'projects', 'messages']);
    expect(plan.later).toEqual([]);
    expect(plan.blocked).toEqual([]);
  });

  it('fills a nullable self-reference or a nullable cycle in a second pass, and orders the rest', () => {
    const self = fk('credit_ledger', 'credit_ledger', true);
    const back = fk('users', 'workspaces', true);
    const plan = restorePlan(['credit_ledger', 'users', 'workspaces'], [self, fk('credit_ledger', 'users'), fk('workspaces', 'users'), back]);
    expect(plan.later).toEqual([self, back]);
    expect(plan.order).toEqual(['users', 'credit_ledger', 'workspaces']);
    expect(plan.blocked).toEqual([]);
  });

  it('names a cycle through non-null columns (no second pass can break it)', () => {
    const a = fk('a', 'b');
    const b = fk('b', 'a');
    expect(restorePlan(['a', 'b'], [a, b]).blocked).toEqual([a, b]);
    // One nullable key in the cycle is enough: it goes in later and the rest is ordered.
    const plan = restorePlan(['a', 'b'], [a, fk('b', 'a', true)]);
    expect(plan.blocked).toEqual([]);
    expect(plan.order).toEqual(['b', 'a']);
  });

  it('ignores keys to tables outside the export', () => {
    expect(restorePlan(['users'], [fk('users', 'elsewhere')]).order).toEqual(['users']);
  });
});
