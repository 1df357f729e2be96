import { cpus, freemem, totalmem, release, platform } from 'node:os';
import type { ScenarioResult } from './scenarios.js';
import type { Measurement } from './stats.js';
import { must } from '../../src/lib/must.js';

export interface MachineInfo {
  cores: number;
  cpu: string;
  memory_gb: number;
  free_memory_gb: number;
  os: string;
  node: string;
  postgres: string;
  postgres_settings: Record<string, string>;
}

export function machineInfo(pg: { version: string; settings: Record<string, string> }): MachineInfo {
  const cpu = cpus();
  return {
    cores: cpu.length,
    cpu: cpu[0]?.model.trim() ?? 'unknown',
    memory_gb: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    free_memory_gb: Math.round((freemem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()}`,
    node: process.version,
    postgres: pg.version,
    postgres_settings: pg.settings,
  };
}

const ops = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (Number.isNaN(n) ? '—' : `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`);

/** The compact table: scenario | Tally ops/s | p50 | p99 | baseline ops/s | p50 | p99 | ratio. */
export function table(results: ScenarioResult[]): string {
  const header = ['scenario', 'Tally ops/s', 'p50', 'p99', 'baseline ops/s', 'p50', 'p99', 'ratio'];
  const rows = results.map((r) => {
    const b: Measurement | null = r.baseline;
    return [
      `${r.id}. ${r.name}`,
      ops(r.tally.opsPerSec),
      ms(r.tally.p50),
      ms(r.tally.p99),
      b ? ops(b.opsPerSec) : 'n/a',
      b ? ms(b.p50) : 'n/a',
      b ? ms(b.p99) : 'n/a',
      r.ratio === null ? (b ? '—' : 'Tally only') : `${r.ratio.toFixed(2)}×`,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => must(row[i], 'a cell per column').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(must(widths[i], 'a width per column')) : c.padStart(must(widths[i], 'a width per column')))).join(' | ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}

/** Errors, timeouts and every check, under the table. */
export function details(results: ScenarioResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    const errs = (m: Measurement | null) => (m ? `${m.errors} errors, ${m.timeouts} timeouts, ${m.ok.toLocaleString('en-US')} ok in ${m.seconds.toFixed(2)} s` : 'n/a');
    out.push(`${r.id}. ${r.name}`);
    out.push(`   Tally:    ${errs(r.tally)} — ${r.shape.tally}`);
    if (r.shape.baseline) out.push(`   baseline: ${errs(r.baseline)} — ${r.shape.baseline}`);
    for (const c of r.checks) {
      out.push(`   ${c.ok ? 'ok  ' : c.fatal ? 'FAIL' : 'warn'} ${c.side} ${c.name}: ${c.detail}`);
    }
  }
  return out.join('\n');
}

export function machineLine(m: MachineInfo): string {
  const s = m.postgres_settings;
  const pgVersion = m.postgres.split(' on ')[0] ?? m.postgres;
  return [
    `machine: ${m.cores} cores (${m.cpu}), ${m.memory_gb} GB RAM, ${m.os}; node ${m.node}`,
    `database: ${pgVersion} on the same host; shared_buffers=${s['shared_buffers'] ?? '?'}, synchronous_commit=${s['synchronous_commit'] ?? '?'}, fsync=${s['fsync'] ?? '?'}, max_connections=${s['max_connections'] ?? '?'}`,
  ].join('\n');
}

const pct = (n: number) => (Number.isFinite(n) ? `${Math.round(n * 100)}%` : '—');
const times = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '—');

function grid(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => must(row[i], 'a cell per column').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(must(widths[i], 'a width per column')) : c.padStart(must(widths[i], 'a width per column')))).join(' | ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}

/**
 * Against the stack's own ceiling (issue 21): each HTTP scenario next to the empty Fastify route
 * under the same load in the same run — Tally's throughput as a fraction of it, its p99 as a
 * multiple of the route's, and the ratio to the seed design.
 */
export function ceilingTable(results: ScenarioResult[]): string {
  const rows = results
    .filter((r) => r.ceiling)
    .map((r) => {
      const c = must(r.ceiling, 'filtered on the ceiling');
      return [
        `${r.id}. ${r.name}`,
        ops(c.opsPerSec),
        ms(c.p50),
        ms(c.p99),
        pct(r.tally.opsPerSec / c.opsPerSec),
        times(r.tally.p99 / c.p99),
        r.baseline ? pct(r.baseline.opsPerSec / c.opsPerSec) : 'n/a',
        r.ratio === null ? 'n/a' : times(r.ratio),
      ];
    });
  if (rows.length === 0) return '';
  return grid(['scenario', 'empty route ops/s', 'p50', 'p99', 'Tally of empty', 'Tally p99 ÷ empty p99', 'baseline of empty', 'Tally ÷ baseline'], rows);
}

const bytes = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');

/** Bytes written per debit: tables (heap + indexes + TOAST) and the cluster's WAL, per side. */
export function storageTable(results: ScenarioResult[]): string {
  const rows: string[][] = [];
  for (const r of results) {
    if (!r.storage) continue;
    for (const [side, u] of [['Tally', r.storage.tally], ['baseline', r.storage.baseline]] as const) {
      if (!u) continue;
      const wal = `${bytes(u.walPerDebit)}${u.walScope === 'cluster' ? ' (cluster)' : ''}`;
      rows.push([`${r.id}. ${side}`, u.debits.toLocaleString('en-US'), bytes(u.tablePerDebit), wal, bytes(u.tablePerDebit + u.walPerDebit)]);
    }
  }
  if (rows.length === 0) return '';
  return grid(['bytes per debit', 'debits', 'tables (heap+index)', 'WAL', 'total'], rows);
}
