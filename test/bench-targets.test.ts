import { describe, expect, it } from 'vitest';
import { benchOptions } from '../bench/src/options.js';
import { Latencies } from '../bench/src/stats.js';
import { target, targetsTable } from '../bench/src/targets.js';

/**
 * The pieces of the bench's target scenarios (7–9) that do not need servers: how a target is
 * judged and shown, the options that pick connection counts, and pooling latency samples across
 * interleaved rounds.
 */
describe('bench targets', () => {
  it('a max target is met at or below its bound, a min target at or above; a missing number is never met', () => {
    expect(target('p99', 3, 'ms', 'max', 3, '').met).toBe(true);
    expect(target('p99', 3.01, 'ms', 'max', 3, '').met).toBe(false);
    expect(target('rps', 1500, 'ops/s', 'min', 1500, '').met).toBe(true);
    expect(target('rps', 1499, 'ops/s', 'min', 1500, '').met).toBe(false);
    expect(target('p99', Number.NaN, 'ms', 'max', 3, '').met).toBe(false);
    // A negative cost (logging on measured faster than off) is within a "at most 5%" bound.
    expect(target('cost', -4, '%', 'max', 5, '').met).toBe(true);
  });

  it('the table shows the number, the bound and the verdict per row', () => {
    const text = targetsTable([{ id: 7, targets: [target('overhead p50', 2.5, 'ms', 'max', 1.5, 'Tally − direct'), target('rps', 1600, 'ops/s', 'min', 1500, 'x')] }]);
    const [, , miss, met] = text.split('\n');
    expect(miss).toMatch(/^7\. overhead p50 .*2\.50 ms .*≤ 1\.50 ms .*NOT met .*Tally − direct/);
    expect(met).toMatch(/1,600 ops\/s .*≥ 1,500 ops\/s .*met/);
    expect(targetsTable([{ id: 1, targets: [] }])).toBe('');
    expect(targetsTable([{ id: 10, targets: [target('import time', 131.26, 's', 'max', 120, 'x')] }])).toMatch(/131\.3 s .*≤ 120\.0 s .*NOT met/);
  });

  it('scenarios 7–11 are run by default; connection lists parse and bad ones are refused', () => {
    const opts = benchOptions({});
    expect([...opts.only]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(opts.processes).toBe(2);
    expect(opts.importRows).toBe(1_000_000);
    expect(benchOptions({ BENCH_IMPORT_ROWS: '50000' }).importRows).toBe(50_000);
    expect(opts.gatewayConnections).toEqual([1, 8]);
    expect(opts.storageConnections).toEqual([1, 8]);
    expect(benchOptions({ BENCH_STORAGE_CONNECTIONS: '4' }).storageConnections).toEqual([4]);
    expect(() => benchOptions({ BENCH_GATEWAY_CONNECTIONS: '1,x' })).toThrow(/BENCH_GATEWAY_CONNECTIONS/);
    expect(() => benchOptions({}, '12')).toThrow(/1-11/);
  });

  it('samples pooled from several runs give percentiles over all of them', () => {
    const a = new Latencies();
    const b = new Latencies();
    for (let i = 1; i <= 50; i++) a.add(i);
    for (let i = 51; i <= 100; i++) b.add(i);
    const pooled = new Latencies();
    for (const l of [a, b]) for (const v of l.values()) pooled.add(v);
    expect(pooled.count).toBe(100);
    expect(pooled.percentiles([50, 99])).toEqual([50, 99]);
  });
});
