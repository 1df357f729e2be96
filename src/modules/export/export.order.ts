import type { ForeignKey } from './export.catalog.js';

/**
 * The order a restore fills tables in, with the foreign keys left on (docs/export.md): every parent
 * before its children. A key inside a cycle (a table that points at itself, or tables that point at
 * each other) cannot be satisfied by order alone: where its columns may be null it is filled in a
 * second pass ("later"), after every row is in; a cycle through keys that may not be null is refused
 * (`blocked`): such a schema needs a deferrable key, and Tally's has none.
 */
export interface RestorePlan {
  /** Tables, parents first. */
  order: string[];
  /** Keys inserted as null and set in a second pass. */
  later: ForeignKey[];
  /** Keys in a cycle that no second pass can break (non-null columns). */
  blocked: ForeignKey[];
}

export function restorePlan(tables: string[], fks: ForeignKey[]): RestorePlan {
  const known = new Set(tables);
  const inScope = fks.filter((fk) => known.has(fk.child) && known.has(fk.parent));
  const later = cyclic(tables, inScope).filter((fk) => fk.nullable);
  const rest = inScope.filter((fk) => !later.includes(fk));
  const blocked = cyclic(tables, rest);
  return { order: parentsFirst(tables, rest.filter((fk) => !blocked.includes(fk))), later, blocked };
}

/** The keys that lie on a cycle: a self-reference, or both ends in one strongly connected component. */
function cyclic(tables: string[], fks: ForeignKey[]): ForeignKey[] {
  const component = components(tables, fks);
  return fks.filter((fk) => fk.child === fk.parent || component.get(fk.child) === component.get(fk.parent));
}

/** Tarjan's strongly connected components over child → parent edges (tables are few: recursion is fine). */
function components(tables: string[], fks: ForeignKey[]): Map<string, number> {
  const edges = new Map<string, string[]>(tables.map((t) => [t, []]));
  for (const fk of fks) if (fk.child !== fk.parent) edges.get(fk.child)?.push(fk.parent);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const component = new Map<string, number>();
  let next = 0;
  let count = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0));
    }
    if (low.get(v) === index.get(v)) {
      for (let w = stack.pop(); w !== undefined; w = stack.pop()) {
        onStack.delete(w);
        component.set(w, count);
        if (w === v) break;
      }
      count += 1;
    }
  };
  for (const t of tables) if (!index.has(t)) visit(t);
  return component;
}

/** Kahn's order over an acyclic graph, ties by name (one order for one schema). */
function parentsFirst(tables: string[], fks: ForeignKey[]): string[] {
  const waiting = new Map<string, Set<string>>(tables.map((t) => [t, new Set<string>()]));
  for (const fk of fks) if (fk.child !== fk.parent) waiting.get(fk.child)?.add(fk.parent);
  const order: string[] = [];
  const ready = tables.filter((t) => waiting.get(t)?.size === 0).sort();
  while (ready.length > 0) {
    const t = ready.shift() as string;
    order.push(t);
    for (const [child, parents] of waiting) {
      if (parents.delete(t) && parents.size === 0) {
        ready.push(child);
        ready.sort();
      }
    }
  }
  return order;
}
