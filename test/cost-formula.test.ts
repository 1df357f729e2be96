import { describe, expect, it } from 'vitest';
import { compileFormula } from '../src/modules/billing/cost-formula.js';

const VARS = ['quantity', 'complexity', 'base_rate'];
const run = (src: string, vars: Record<string, number> = { quantity: 10, complexity: 3, base_rate: 2 }) => {
  const c = compileFormula(src, VARS);
  if (!c.ok) return { compileError: c.error };
  return c.formula.evaluate(vars);
};

describe('cost-model formulas', () => {
  it('evaluates arithmetic, precedence, power, functions and conditionals', () => {
    expect(run('base_rate * quantity * (1 + complexity / 10)')).toEqual({ ok: true, value: 26 });
    expect(run('2 + 3 * 4 ** 2')).toEqual({ ok: true, value: 50 });
    expect(run('2 ** 3 ** 2')).toEqual({ ok: true, value: 512 }); // right-associative
    expect(run('max(1, ceil(quantity / 3))')).toEqual({ ok: true, value: 4 });
    expect(run('complexity > 2 ? quantity * 2 : quantity')).toEqual({ ok: true, value: 20 });
    expect(run('quantity >= 10 && complexity != 0')).toEqual({ ok: true, value: 1 });
    expect(run('-quantity + pow(2, 4) % 5')).toEqual({ ok: true, value: -9 });
  });

  it('reports the variables a formula reads', () => {
    const c = compileFormula('quantity * base_rate', VARS);
    expect(c.ok && c.formula.variables).toEqual(['base_rate', 'quantity']);
  });

  it('refuses anything that is not arithmetic over the allowed variables', () => {
    const bad = [
      'process.exit(1)',
      'constructor',
      'quantity.constructor',
      'this',
      '"1" + 1',
      '[1, 2]',
      'eval("1")',
      'Function("return 1")()',
      'quantity | 1',
      'typeof quantity',
      'a = 1',
      'quantity; 1',
      '',
      'quantity *',
      'unknown_var * 2',
      'min()',
      'pow(1)',
      'x'.repeat(501),
      '-'.repeat(40) + '1',
      Array.from({ length: 150 }, () => '1').join('+'), // 299 parts in 299 characters
    ];
    for (const src of bad) {
      const c = compileFormula(src, VARS);
      expect(c.ok, src).toBe(false);
      if (!c.ok) expect(c.error.length, src).toBeGreaterThan(5);
    }
  });

  it('a division by zero or a missing variable is an error value, not a throw or Infinity', () => {
    expect(run('quantity / (complexity - 3)')).toEqual({ ok: false, error: expect.stringMatching(/finite/) });
    expect(run('quantity * 2', { complexity: 1 })).toEqual({ ok: false, error: expect.stringMatching(/quantity/) });
    expect(run('sqrt(-1)')).toEqual({ ok: false, error: expect.stringMatching(/finite/) });
  });
});
