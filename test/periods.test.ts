import { describe, expect, it } from 'vitest';
import { dateKey } from '../src/modules/billing/billing.periods.js';

describe('dateKey (memoised per zone)', () => {
  it('agrees with Intl at every hour across days, DST changes and zones, in any order', () => {
    const zones = ['UTC', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe', 'Pacific/Kiritimati'];
    const plain = (at: Date, tz: string) =>
      new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' }).format(at);
    // Around the US and Lord Howe DST changes of 2026, hour by hour, then jumping back and forth.
    const instants: Date[] = [];
    for (const start of ['2026-03-07T00:00:00Z', '2026-04-04T00:00:00Z', '2026-10-03T00:00:00Z', '2026-11-01T00:00:00Z']) {
      for (let h = 0; h < 72; h += 1) instants.push(new Date(Date.parse(start) + h * 3_600_000 + 59 * 60_000));
    }
    const shuffled = [...instants].sort((a, b) => ((a.getTime() * 7919) % 1009) - ((b.getTime() * 7919) % 1009));
    for (const at of [...instants, ...shuffled]) {
      for (const tz of zones) expect(dateKey(at, tz), `${at.toISOString()} ${tz}`).toBe(plain(at, tz));
    }
  });
});
