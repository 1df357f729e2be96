import jsep from 'jsep';

/**
 * Cost-model formulas (the seeds' `cost_models.formula`): small arithmetic over a usage event's
 * variables, e.g. `base_rate * quantity * (1 + complexity / 10)` or `max(1, ceil(quantity / 1000))`.
 * Parsed by jsep into an AST and evaluated by walking a closed set of node types — never `eval`,
 * never `Function`, no property access, no strings. Expected failures are values, not throws.
 */

// jsep's operator table is global: keep only what formulas may use, once, at module load.
for (const op of ['|', '^', '&', '<<', '>>', '>>>', '===', '!==', 'in', 'instanceof']) jsep.removeBinaryOp(op);
jsep.removeUnaryOp('~');
jsep.removeUnaryOp('typeof');
jsep.addBinaryOp('**', 11, true);
for (const lit of ['this', 'null', 'true', 'false']) jsep.removeLiteral(lit);

export const FORMULA_FUNCTIONS = {
  min: (...a: number[]) => Math.min(...a),
  max: (...a: number[]) => Math.max(...a),
  ceil: (x: number) => Math.ceil(x),
  floor: (x: number) => Math.floor(x),
  round: (x: number) => Math.round(x),
  abs: (x: number) => Math.abs(x),
  sqrt: (x: number) => Math.sqrt(x),
  log: (x: number) => Math.log(x),
  pow: (x: number, y: number) => x ** y,
} as const satisfies Record<string, (...a: number[]) => number>;

const ARITY: Record<keyof typeof FORMULA_FUNCTIONS, [number, number]> = {
  min: [1, 16], max: [1, 16], ceil: [1, 1], floor: [1, 1], round: [1, 1], abs: [1, 1], sqrt: [1, 1], log: [1, 1], pow: [2, 2],
};

const BINARY = new Set(['+', '-', '*', '/', '%', '**', '<', '<=', '>', '>=', '==', '!=', '&&', '||']);
const UNARY = new Set(['-', '+', '!']);

export const MAX_FORMULA_LENGTH = 500;
const MAX_NODES = 200;
const MAX_DEPTH = 32;

type Node = jsep.Expression;

export interface Formula {
  readonly source: string;
  /** The variables the formula reads. */
  readonly variables: readonly string[];
  evaluate(vars: Readonly<Record<string, number>>): FormulaResult;
}

export type FormulaResult = { ok: true; value: number } | { ok: false; error: string };
export type CompileResult = { ok: true; formula: Formula } | { ok: false; error: string };

/** Parses and checks a formula against the variables it may use. */
export function compileFormula(source: string, allowed: readonly string[]): CompileResult {
  if (source.trim() === '') return { ok: false, error: 'formula is empty' };
  if (source.length > MAX_FORMULA_LENGTH) return { ok: false, error: `formula is longer than ${MAX_FORMULA_LENGTH} characters` };
  let ast: Node;
  try {
    ast = jsep(source);
  } catch (err) {
    return { ok: false, error: `formula does not parse: ${(err as Error).message}` };
  }
  const used = new Set<string>();
  let nodes = 0;
  const check = (node: Node, depth: number): string | null => {
    if (++nodes > MAX_NODES) return `formula has more than ${MAX_NODES} parts`;
    if (depth > MAX_DEPTH) return `formula nests deeper than ${MAX_DEPTH}`;
    switch (node.type) {
      case 'Literal': {
        const value = (node as jsep.Literal).value;
        return typeof value === 'number' && Number.isFinite(value) ? null : `only numbers are allowed, not ${JSON.stringify(value)}`;
      }
      case 'Identifier': {
        const name = (node as jsep.Identifier).name;
        if (!allowed.includes(name)) return `unknown variable "${name}" (allowed: ${allowed.join(', ')})`;
        used.add(name);
        return null;
      }
      case 'UnaryExpression': {
        const u = node as jsep.UnaryExpression;
        return UNARY.has(u.operator) ? check(u.argument, depth + 1) : `operator "${u.operator}" is not allowed`;
      }
      case 'BinaryExpression': {
        const b = node as jsep.BinaryExpression;
        if (!BINARY.has(b.operator)) return `operator "${b.operator}" is not allowed`;
        return check(b.left, depth + 1) ?? check(b.right, depth + 1);
      }
      case 'ConditionalExpression': {
        const c = node as jsep.ConditionalExpression;
        return check(c.test, depth + 1) ?? check(c.consequent, depth + 1) ?? check(c.alternate, depth + 1);
      }
      case 'CallExpression': {
        const call = node as jsep.CallExpression;
        if (call.callee.type !== 'Identifier') return 'only named functions can be called';
        const name = (call.callee as jsep.Identifier).name;
        if (!Object.hasOwn(FORMULA_FUNCTIONS, name)) {
          return `unknown function "${name}" (allowed: ${Object.keys(FORMULA_FUNCTIONS).join(', ')})`;
        }
        const [lo, hi] = ARITY[name as keyof typeof FORMULA_FUNCTIONS];
        if (call.arguments.length < lo || call.arguments.length > hi) return `${name}() takes ${lo === hi ? lo : `${lo}–${hi}`} argument(s)`;
        for (const arg of call.arguments) {
          const problem = check(arg, depth + 1);
          if (problem) return problem;
        }
        return null;
      }
      default:
        return `"${node.type}" is not allowed in a formula`;
    }
  };
  const problem = check(ast, 0);
  if (problem) return { ok: false, error: problem };
  const variables = [...used].sort();
  return {
    ok: true,
    formula: {
      source,
      variables,
      evaluate: (vars) => {
        for (const v of variables) {
          if (typeof vars[v] !== 'number' || !Number.isFinite(vars[v])) return { ok: false, error: `variable "${v}" has no numeric value` };
        }
        const value = evaluate(ast, vars);
        return Number.isFinite(value) ? { ok: true, value } : { ok: false, error: 'formula did not produce a finite number (division by zero?)' };
      },
    },
  };
}

/** Walks a checked AST. Booleans are 1 and 0, as in the comparisons' results. */
function evaluate(node: Node, vars: Readonly<Record<string, number>>): number {
  switch (node.type) {
    case 'Literal':
      return (node as jsep.Literal).value as number;
    case 'Identifier':
      return vars[(node as jsep.Identifier).name] as number;
    case 'UnaryExpression': {
      const u = node as jsep.UnaryExpression;
      const x = evaluate(u.argument, vars);
      return u.operator === '-' ? -x : u.operator === '!' ? Number(x === 0) : x;
    }
    case 'BinaryExpression': {
      const b = node as jsep.BinaryExpression;
      if (b.operator === '&&') return evaluate(b.left, vars) !== 0 ? Number(evaluate(b.right, vars) !== 0) : 0;
      if (b.operator === '||') return evaluate(b.left, vars) !== 0 ? 1 : Number(evaluate(b.right, vars) !== 0);
      const l = evaluate(b.left, vars);
      const r = evaluate(b.right, vars);
      switch (b.operator) {
        case '+': return l + r;
        case '-': return l - r;
        case '*': return l * r;
        case '/': return l / r;
        case '%': return l % r;
        case '**': return l ** r;
        case '<': return Number(l < r);
        case '<=': return Number(l <= r);
        case '>': return Number(l > r);
        case '>=': return Number(l >= r);
        case '==': return Number(l === r);
        case '!=': return Number(l !== r);
      }
      throw new Error(`unchecked operator ${b.operator}`);
    }
    case 'ConditionalExpression': {
      const c = node as jsep.ConditionalExpression;
      return evaluate(c.test, vars) !== 0 ? evaluate(c.consequent, vars) : evaluate(c.alternate, vars);
    }
    case 'CallExpression': {
      const call = node as jsep.CallExpression;
      const fn = FORMULA_FUNCTIONS[(call.callee as jsep.Identifier).name as keyof typeof FORMULA_FUNCTIONS] as (...a: number[]) => number;
      return fn(...call.arguments.map((a) => evaluate(a, vars)));
    }
  }
  throw new Error(`unchecked node ${node.type}`);
}
