import type { BenchContext, ScenarioResult } from './scenarios.js';

export async function storageLatency(_ctx: BenchContext): Promise<ScenarioResult> {
  throw new Error('not yet');
}
