import { must } from '../../lib/must.js';

/**
 * Calendar arithmetic for billing, in one place. Periods are anchored: a subscription that starts
 * on Jan 31 renews on Feb 28 (29), Mar 31, Apr 30 … — each period is `anchor + n months`, clamped
 * to the month's last day, never drifting the way "add a month to the last end" does.
 */

export type Interval = 'monthly' | 'yearly';
export type AllowanceWindow = 'daily' | 'monthly' | 'yearly';

/** anchor + n months (UTC), the day clamped to the target month's length. */
export function addMonths(anchor: Date, n: number): Date {
  const y = anchor.getUTCFullYear();
  const m = anchor.getUTCMonth() + n;
  const target = new Date(Date.UTC(y, m, 1, anchor.getUTCHours(), anchor.getUTCMinutes(), anchor.getUTCSeconds(), anchor.getUTCMilliseconds()));
  const lastDay = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
  target.setUTCDate(Math.min(anchor.getUTCDate(), lastDay));
  return target;
}

export const monthsOf = (interval: Interval): number => (interval === 'yearly' ? 12 : 1);

/** The anchored window of `months` months that contains `at` (at ≥ anchor). */
export function windowAt(anchor: Date, months: number, at: Date): { start: Date; end: Date; index: number } {
  let index = Math.max(0, Math.floor(monthDiff(anchor, at) / months) - 1);
  for (;;) {
    const start = addMonths(anchor, index * months);
    const end = addMonths(anchor, (index + 1) * months);
    if (at.getTime() < start.getTime()) index--;
    else if (at.getTime() >= end.getTime()) index++;
    else return { start, end, index };
  }
}

function monthDiff(a: Date, b: Date): number {
  return (b.getUTCFullYear() - a.getUTCFullYear()) * 12 + (b.getUTCMonth() - a.getUTCMonth());
}

/** The allowance window containing `at`: daily windows follow the anchor's time of day. */
export function allowanceWindowAt(anchor: Date, window: AllowanceWindow, at: Date): { start: Date; end: Date } {
  if (window === 'daily') {
    const day = 86_400_000;
    const n = Math.floor((at.getTime() - anchor.getTime()) / day);
    const start = new Date(anchor.getTime() + n * day);
    return { start, end: new Date(start.getTime() + day) };
  }
  const w = windowAt(anchor, window === 'yearly' ? 12 : 1, at);
  return { start: w.start, end: w.end };
}

const dateKeyFormats = new Map<string, Intl.DateTimeFormat>();
/** Per zone, the last local day asked for and the UTC instants it spans (Intl.format is slow). */
const lastDay = new Map<string, { from: number; to: number; key: string }>();

/** The local calendar date (YYYY-MM-DD) of `at` in a time zone. */
export function dateKey(at: Date, timeZone: string): string {
  const t = at.getTime();
  const last = lastDay.get(timeZone);
  if (last && t >= last.from && t < last.to) return last.key;
  let f = dateKeyFormats.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
    dateKeyFormats.set(timeZone, f);
  }
  const key = f.format(at);
  const from = localMidnight(key, timeZone).getTime();
  const to = localMidnight(nextDateKey(key), timeZone).getTime();
  // Only remember a span that really holds `at` (it always should).
  if (t >= from && t < to) lastDay.set(timeZone, { from, to, key });
  return key;
}

export function isValidTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-CA', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/**
 * Local midnights already worked out, by date and zone. Intl is slow (a usage batch asks for the
 * same few days thousands of times); the answers never change, so a bounded memo is safe.
 */
const midnights = new Map<string, number>();
const MIDNIGHTS_MAX = 10_000;

/** The UTC instant at which local midnight of `key` (YYYY-MM-DD) happens in a time zone. */
export function localMidnight(key: string, timeZone: string): Date {
  const memo = `${key}|${timeZone}`;
  const known = midnights.get(memo);
  if (known !== undefined) return new Date(known);
  const [y, m, d] = key.split('-').map(Number) as [number, number, number];
  // Start from UTC midnight and correct by the zone's offset at that moment (twice, for DST edges).
  let guess = Date.UTC(y, m - 1, d);
  for (let i = 0; i < 2; i++) guess = Date.UTC(y, m - 1, d) - offsetMs(new Date(guess), timeZone);
  if (midnights.size >= MIDNIGHTS_MAX) midnights.clear();
  midnights.set(memo, guess);
  return new Date(guess);
}

const offsetFormats = new Map<string, Intl.DateTimeFormat>();

function offsetMs(at: Date, timeZone: string): number {
  let f = offsetFormats.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    offsetFormats.set(timeZone, f);
  }
  const parts = f.formatToParts(at);
  const get = (t: string) => Number(must(parts.find((p) => p.type === t), `Intl gives the ${t} part`).value);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return asUtc - Math.floor(at.getTime() / 1000) * 1000;
}

/** The local day and calendar month containing `at`, as UTC instants. */
export function localDay(at: Date, timeZone: string): { key: string; start: Date; end: Date } {
  const key = dateKey(at, timeZone);
  return { key, start: localMidnight(key, timeZone), end: localMidnight(nextDateKey(key), timeZone) };
}

/** The calendar date after `key` (YYYY-MM-DD). */
function nextDateKey(key: string): string {
  return new Date(Date.UTC(Number(key.slice(0, 4)), Number(key.slice(5, 7)) - 1, Number(key.slice(8, 10)) + 1)).toISOString().slice(0, 10);
}

export function localMonth(at: Date, timeZone: string): { start: Date; end: Date } {
  const key = dateKey(at, timeZone);
  const y = Number(key.slice(0, 4));
  const m = Number(key.slice(5, 7));
  const first = `${key.slice(0, 7)}-01`;
  const next = new Date(Date.UTC(y, m, 1)).toISOString().slice(0, 10);
  return { start: localMidnight(first, timeZone), end: localMidnight(next, timeZone) };
}

/**
 * The next window of a chain of local days or months that must never overlap (the daily free
 * quota, a budget guard's month): the local day/month of `zone` that contains `at`, unless it
 * began before the previous window ended (the zone changed in between) — then the window starts
 * where the previous one ended and runs to the end of the following local day/month. So a zone
 * change can only move the next window's start later, never give a second "today" or reset a
 * month early; each window is at least a whole local day/month long.
 */
export function nextWindow(previousEnd: Date | null, at: Date, zone: string, kind: 'day' | 'month'): { start: Date; end: Date } {
  const local = kind === 'day' ? localDay : localMonth;
  const w = local(at, zone);
  if (previousEnd === null || w.start.getTime() >= previousEnd.getTime()) return { start: w.start, end: w.end };
  return { start: previousEnd, end: local(w.end, zone).end };
}
