import { type FormEvent, useState } from 'react';
import { api, type Ok, qs } from '../api';
import { Link, navigate } from '../router';
import { Card, fmtDate, fmtNum, isoFromLocal, LoadedTable, localInput, PagedTable, useLoad, usePaged } from '../ui';

// What the API answers, from its OpenAPI document (../api.gen.ts): never written by hand here.
type AnalyticsEvent = Ok<'/v1/analytics/events', 'get'>['data'][number];
type Counts = Ok<'/v1/analytics/events/counts', 'get'>;
type DayCount = Counts['data'][number];

/** The filters the page's URL carries (`/analytics?event=page_viewed&user_id=…`); from/to are ISO instants. */
export interface AnalyticsFilters {
  event: string;
  user_id: string;
  anonymous_id: string;
  session_id: string;
  from: string;
  to: string;
}

/** Product events as the app sent them (filtered, newest received first) and counts per event name. */
export function Analytics({ filters }: { filters: AnalyticsFilters }) {
  const [form, setForm] = useState({ ...filters, from: localInput(filters.from), to: localInput(filters.to) });
  const apply = (e: FormEvent) => {
    e.preventDefault();
    navigate(`/analytics${qs({ ...form, from: isoFromLocal(form.from), to: isoFromLocal(form.to) })}`);
  };
  const paged = usePaged(
    (cursor) => api<Ok<'/v1/analytics/events', 'get'>>('GET', `/v1/analytics/events${qs({ ...filters, cursor, limit: 25 })}`),
    [filters.event, filters.user_id, filters.anonymous_id, filters.session_id, filters.from, filters.to],
  );
  const field = (name: keyof AnalyticsFilters, label: string, placeholder: string, type = 'text') => (
    <label>
      {label}
      <input name={name} type={type} step={type === 'datetime-local' ? 1 : undefined} value={form[name]} placeholder={placeholder} onChange={(e) => setForm({ ...form, [name]: e.target.value })} />
    </label>
  );
  return (
    <div className="stack">
      <h1>Analytics</h1>
      <EventCounts event={filters.event} userId={filters.user_id} />
      <Card title="Events, newest received first">
        <form className="filters" onSubmit={apply} aria-label="Filter events">
          {field('event', 'Event', 'page_viewed')}
          {field('user_id', 'User', 'usr_…')}
          {field('anonymous_id', 'Anonymous id', 'anon-…')}
          {field('session_id', 'Session', 'sess-…')}
          {field('from', 'Occurred from', '', 'datetime-local')}
          {field('to', 'Occurred before', '', 'datetime-local')}
          <button type="submit">Filter</button>
          <button type="button" className="secondary" onClick={() => navigate('/analytics')}>
            Clear
          </button>
        </form>
        <PagedTable
          label="Analytics events"
          paged={paged}
          empty="No event matches these filters."
          columns={[
            { label: 'Occurred', render: (e: AnalyticsEvent) => fmtDate(e.occurred_at) },
            { label: 'Event', render: (e) => <Link to={`/analytics${qs({ event: e.event })}`}>{e.event}</Link> },
            {
              label: 'Who',
              render: (e) => (
                <>
                  {e.user_id && <Link to={`/users/${encodeURIComponent(e.user_id)}`}>{e.user_id}</Link>}
                  {e.anonymous_id && <div className="muted mono">anon {e.anonymous_id}</div>}
                </>
              ),
            },
            { label: 'Session', render: (e) => <span className="mono">{e.session_id ?? '—'}</span> },
            {
              label: 'Properties',
              render: (e) =>
                Object.keys(e.properties).length === 0 ? (
                  <span className="muted">none</span>
                ) : (
                  <details>
                    <summary>{Object.keys(e.properties).join(', ')}</summary>
                    <pre className="payload">{JSON.stringify({ properties: e.properties, context: e.context }, null, 2)}</pre>
                  </details>
                ),
            },
            { label: 'Sent by', render: (e) => <span className="mono">{e.source}</span> },
            { label: 'Client id', render: (e) => <span className="mono">{e.client_id}</span> },
            { label: 'Received', render: (e) => fmtDate(e.created_at) },
          ]}
        />
      </Card>
    </div>
  );
}

const WINDOWS: [number, string][] = [
  [1, 'today (UTC)'],
  [7, 'last 7 days'],
  [30, 'last 30 days'],
  [90, 'last 90 days'],
  [365, 'last 365 days'],
];

/** The first instant of the UTC day `days - 1` days ago: the counts are cut in UTC days. */
const windowStart = (days: number): string => {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - (days - 1))).toISOString();
};

/** Totals per event name over the window, largest first (the API answers one row per day and name). */
export function totalsByEvent(rows: DayCount[]): { id: string; event: string; count: number }[] {
  const totals = new Map<string, number>();
  for (const r of rows) totals.set(r.event, (totals.get(r.event) ?? 0) + r.count);
  return [...totals].map(([event, count]) => ({ id: event, event, count })).sort((a, b) => b.count - a.count || a.event.localeCompare(b.event));
}

/**
 * `GET /v1/analytics/events/counts` over a window chosen here (to: the server's default, which takes
 * in events sent up to a day ahead), narrowed by the page's event and user filters.
 */
function EventCounts({ event, userId }: { event: string; userId: string }) {
  const [days, setDays] = useState(30);
  const counts = useLoad(
    () => api<Counts>('GET', `/v1/analytics/events/counts${qs({ from: windowStart(days), event, user_id: userId })}`),
    [days, event, userId],
  );
  const totals = counts.data ? totalsByEvent(counts.data.data) : [];
  const max = Math.max(1, ...totals.map((t) => t.count));
  return (
    <Card
      title={`Event counts${event || userId ? ' (filtered)' : ''}`}
      actions={
        <label>
          Window{' '}
          <select aria-label="Counts window" value={days} onChange={(e) => setDays(Number(e.target.value))}>
            {WINDOWS.map(([d, label]) => (
              <option key={d} value={d}>
                {label}
              </option>
            ))}
          </select>
        </label>
      }
    >
      {counts.data?.truncated && (
        <p className="neg" role="status">
          Only the first {fmtNum(counts.data.data.length)} day and event rows are counted: choose a shorter window or filter by event.
        </p>
      )}
      {totals.length > 0 && (
        <ul className="bars" aria-label="Events per name">
          {totals.map((t) => (
            <li key={t.event} data-event={t.event}>
              <span className="bar-label">{t.event}</span>
              <span className="bar-track" aria-hidden="true">
                <span className="bar" style={{ width: `${(100 * t.count) / max}%` }} />
              </span>
              <span className="bar-count">{fmtNum(t.count)}</span>
            </li>
          ))}
        </ul>
      )}
      <LoadedTable
        label="Event counts per day"
        loaded={{ loading: counts.loading, error: counts.error, data: counts.data ? { data: counts.data.data.map((r) => ({ ...r, id: `${r.day} ${r.event}` })) } : undefined }}
        empty="No events in this window."
        columns={[
          { label: 'Day (UTC)', render: (r) => r.day },
          { label: 'Event', render: (r) => <Link to={`/analytics${qs({ event: r.event })}`}>{r.event}</Link> },
          { label: 'Count', render: (r) => fmtNum(r.count) },
        ]}
      />
    </Card>
  );
}
