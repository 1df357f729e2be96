import { must } from '../../src/lib/must.js';

/**
 * A number an issue sets a target for (issues 14, 15, 19 and 20: gateway overhead, storage latency and
 * memory, the cost of request logging, import speed and memory). Targets are reported — met or not, with the number — and
 * never fail the bench: only correctness checks do, since a loaded shared machine can miss a
 * latency target without anything being wrong.
 */
export interface Target {
  /** What was measured, e.g. "JSON overhead p99, 1 conn". */
  name: string;
  value: number;
  unit: 'ms' | 's' | 'ops/s' | 'MB' | '%';
  /** `max`: the value must be at most `bound`; `min`: at least. */
  kind: 'max' | 'min';
  bound: number;
  met: boolean;
  /** How it was obtained (the two sides of a difference, the connections…). */
  detail: string;
}

export const target = (name: string, value: number, unit: Target['unit'], kind: Target['kind'], bound: number, detail: string): Target => ({
  name,
  value,
  unit,
  kind,
  bound,
  met: Number.isFinite(value) && (kind === 'max' ? value <= bound : value >= bound),
  detail,
});

const fmt = (n: number, unit: Target['unit']): string => {
  if (!Number.isFinite(n)) return '—';
  if (unit === 'ops/s') return `${Math.round(n).toLocaleString('en-US')} ops/s`;
  if (unit === '%') return `${n.toFixed(1)}%`;
  if (unit === 'MB') return `${n.toFixed(1)} MB`;
  if (unit === 's') return `${n.toFixed(1)} s`;
  return `${Math.abs(n) < 10 ? n.toFixed(2) : n.toFixed(1)} ms`;
};

/** One row per target: scenario, what, measured, target, met. */
export function targetsTable(rows: { id: number; targets: Target[] }[]): string {
  const cells = rows.flatMap((r) =>
    r.targets.map((t) => [`${r.id}. ${t.name}`, fmt(t.value, t.unit), `${t.kind === 'max' ? '≤' : '≥'} ${fmt(t.bound, t.unit)}`, t.met ? 'met' : 'NOT met', t.detail]),
  );
  if (cells.length === 0) return '';
  const header = ['target', 'measured', 'target', 'verdict', 'how'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((row) => must(row[i], 'a cell per column').length)));
  const line = (c: string[]) => c.map((v, i) => (i === 0 || i === 4 ? v.padEnd(must(widths[i], 'a width')) : v.padStart(must(widths[i], 'a width')))).join(' | ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...cells.map(line)].join('\n');
}
