import type { Insert } from './import-source-app-builder.js';

const DAY = 86_400_000;
/** A UTC date, `days` from today (000's `date_key`). */
export const dayKey = (days: number) => new Date(Date.now() + days * DAY).toISOString().slice(0, 10);

/**
 * Seed 000's derived usage and pricing tables, over the users of `fillAppBuilder` (user-0000 …
 * user-0002): meter readings and summaries (one of each naming no user, one of each a missing user),
 * overage charges (invoiced and linked to its summary, paid, pending with its summary gone, and one of
 * a missing user), daily autofix counts (today, yesterday, used beyond its limit, an unreadable day,
 * a missing user) and three cost models (two Tally's formula language reads, one it does not).
 */
export async function fillAppBuilderDerived(insert: Insert): Promise<void> {
  const at = (days: number) => new Date(Date.now() + days * DAY);
  const month = { period: '2026-01', window_start: at(-30), window_end: at(0) };
  await insert('usage_meter_readings', { id: 'mr-1', workspace_id: 'ws-1', user_id: 'user-0000', metric: 'Usage', value: '12.5000', ...month, metadata_json: { source: 'meter' } });
  await insert('usage_meter_readings', { id: 'mr-2', workspace_id: 'ws-1', user_id: 'user-0001', metric: 'BC', value: '3.2500', ...month });
  await insert('usage_meter_readings', { id: 'mr-3', workspace_id: 'ws-1', user_id: null, metric: 'Usage', value: '7.0000', ...month });
  await insert('usage_meter_readings', { id: 'mr-ghost', workspace_id: 'ws-1', user_id: 'ghost', metric: 'Usage', value: '1.0000', ...month });
  await insert('usage_summaries', { id: 'sum-1', workspace_id: 'ws-1', user_id: 'user-0000', metric: 'Usage', period: '2026-01', value: '120.0000', overage_amount: '4.5000', currency: 'usd' });
  await insert('usage_summaries', { id: 'sum-2', workspace_id: 'ws-1', user_id: null, metric: 'BC', period: '2026-01', value: '40.0000', currency: 'usd' });
  await insert('usage_summaries', { id: 'sum-ghost', workspace_id: 'ws-2', user_id: 'ghost', metric: 'Usage', period: '2026-01', value: '1.0000', currency: 'usd' });
  await insert('overage_charges', { id: 'oc-1', user_id: 'user-0000', workspace_id: 'ws-1', metric: 'Usage', amount: '4.5000', currency: 'usd', status: 'invoiced', usage_summary_id: 'sum-1', generated_at: at(-2), invoiced_at: at(-1) });
  await insert('overage_charges', { id: 'oc-2', user_id: 'user-0001', metric: 'BC', amount: '1.2500', currency: 'USD', status: 'paid', generated_at: at(-20), invoiced_at: at(-19), settled_at: at(-18) });
  await insert('overage_charges', { id: 'oc-3', user_id: 'user-0002', metric: 'Usage', amount: '2.0000', currency: 'usd', status: 'pending', usage_summary_id: 'sum-gone', generated_at: at(-1) });
  await insert('overage_charges', { id: 'oc-ghost', user_id: 'ghost', metric: 'Usage', amount: '9.0000', currency: 'usd', status: 'pending', generated_at: at(-1) });
  await insert('allowance_daily_autofix', { id: 'af-1', user_id: 'user-0000', date_key: dayKey(0), consumed: 2, limit: 3 });
  await insert('allowance_daily_autofix', { id: 'af-2', user_id: 'user-0000', date_key: dayKey(-1), consumed: 3, limit: 3 });
  await insert('allowance_daily_autofix', { id: 'af-3', user_id: 'user-0001', date_key: dayKey(0), consumed: 5, limit: 3 });
  await insert('allowance_daily_autofix', { id: 'af-4', user_id: 'user-0002', date_key: '05/01/2026', consumed: 1, limit: 3 });
  await insert('allowance_daily_autofix', { id: 'af-ghost', user_id: 'ghost', date_key: dayKey(0), consumed: 1, limit: 3 });
  await insert('cost_models', { id: 'cm-1', metric: 'Usage', unit: 'token', formula: 'quantity * base_rate', base_rate: '0.002000', currency: 'usd', metadata_json: { note: 'per token' } });
  await insert('cost_models', { id: 'cm-2', metric: 'BC', unit: 'build', formula: 'ceil(quantity / 10) * base_rate', base_rate: '0.500000', currency: 'usd' });
  await insert('cost_models', { id: 'cm-3', metric: 'RC', unit: 'run', formula: 'tokens * rate', base_rate: '1.000000', currency: 'usd' });
}
