import { type FormEvent, useState } from 'react';
import { api, type Ok, qs } from '../api';
import { Link, navigate } from '../router';
import { Badge, Card, fmtDate, fmtNum, LoadedTable, PagedTable, useLoad, usePaged } from '../ui';

// What the API answers, from its OpenAPI document (../api.gen.ts): never written by hand here.
type RequestLog = Ok<'/v1/logs/requests', 'get'>['data'][number];
type ErrorGroup = Ok<'/v1/logs/errors', 'get'>['data'][number];
type Latency = Ok<'/v1/metrics/latency', 'get'>;

/** The filters the page's URL carries (`/logs?status_class=5&route=…`), so a link can open a filtered view. */
export interface LogFilters {
  status: string;
  route: string;
  user_id: string;
  request_id: string;
}

const ms = (n: number): string => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : fmtNum(Math.round(n)));

/** "500" → status 500; "5xx" → status class 5; anything else is sent as is (the API says what is wrong). */
function statusQuery(text: string): { status?: string; status_class?: string } {
  const t = text.trim().toLowerCase();
  if (t === '') return {};
  const cls = /^([1-5])xx$/.exec(t);
  return cls ? { status_class: cls[1] as string } : { status: t };
}

/** Request logs (filtered), 5xx errors grouped by fingerprint, and latency per route. */
export function Logs({ filters }: { filters: LogFilters }) {
  const [form, setForm] = useState(filters);
  const apply = (e: FormEvent) => {
    e.preventDefault();
    navigate(`/logs${qs({ ...form })}`);
  };
  const paged = usePaged(async (cursor) => {
    const page = await api<Ok<'/v1/logs/requests', 'get'>>(
      'GET',
      `/v1/logs/requests${qs({ ...statusQuery(filters.status), route: filters.route, user_id: filters.user_id, request_id: filters.request_id, cursor, limit: 50 })}`,
    );
    return { ...page, data: page.data.map((l) => ({ ...l, id: l.request_id })) };
  }, [filters.status, filters.route, filters.user_id, filters.request_id]);
  const field = (name: keyof LogFilters, label: string, placeholder: string) => (
    <label>
      {label}
      <input name={name} value={form[name]} placeholder={placeholder} onChange={(e) => setForm({ ...form, [name]: e.target.value })} />
    </label>
  );
  return (
    <div className="stack">
      <h1>Logs</h1>
      <Card title="Requests, newest first">
        <form className="filters" onSubmit={apply} aria-label="Filter requests">
          {field('status', 'Status', '404 or 5xx')}
          {field('route', 'Route', '/v1/users/:id')}
          {field('user_id', 'User', 'usr_…')}
          {field('request_id', 'Request id', 'req_…')}
          <button type="submit">Filter</button>
          <button type="button" className="secondary" onClick={() => navigate('/logs')}>
            Clear
          </button>
        </form>
        <PagedTable
          label="Request logs"
          paged={paged}
          empty="No request matches these filters."
          columns={[
            { label: 'Time', render: (l: RequestLog & { id: string }) => fmtDate(l.created_at) },
            { label: 'Method', render: (l) => l.method },
            { label: 'Route', render: (l) => <span className="mono">{l.route ?? '(no route)'}</span> },
            { label: 'Path', render: (l) => <span className="mono">{l.path}</span> },
            { label: 'Status', render: (l) => <Badge value={String(l.status)} /> },
            { label: 'ms', render: (l) => ms(l.duration_ms) },
            { label: 'Caller', render: (l) => (l.caller_id ? <Link to={`/users/${l.caller_id}`}>{l.caller_id}</Link> : l.caller_kind) },
            { label: 'Request id', render: (l) => <span className="mono">{l.request_id}</span> },
          ]}
        />
      </Card>
      <ErrorGroups />
      <LatencyByRoute />
    </div>
  );
}

function ErrorGroups() {
  const groups = useLoad(() => api<Ok<'/v1/logs/errors', 'get'>>('GET', '/v1/logs/errors?limit=50'), []);
  return (
    <Card title="Errors (5xx), grouped by fingerprint">
      <LoadedTable
        label="Error groups"
        loaded={{ loading: groups.loading, error: groups.error, data: groups.data ? { data: groups.data.data.map((g) => ({ ...g, id: g.fingerprint })) } : undefined }}
        empty="No server errors."
        columns={[
          { label: 'Error', render: (g: ErrorGroup & { id: string }) => <strong>{g.error_class}</strong> },
          { label: 'Message', render: (g) => <span title={g.last_stack ?? ''}>{g.message}</span> },
          { label: 'Route', render: (g) => <span className="mono">{g.method} {g.route ?? '(no route)'}</span> },
          { label: 'Count', render: (g) => fmtNum(g.count) },
          { label: 'First seen', render: (g) => fmtDate(g.first_seen) },
          { label: 'Last seen', render: (g) => fmtDate(g.last_seen) },
          { label: 'Latest request', render: (g) => <Link to={`/logs${qs({ request_id: g.last_request_id })}`}>{g.last_request_id}</Link> },
          { label: 'Fingerprint', render: (g) => <span className="mono">{g.fingerprint}</span> },
        ]}
      />
    </Card>
  );
}

const WINDOWS: [number, string][] = [
  [15, 'last 15 minutes'],
  [60, 'last hour'],
  [1440, 'last day'],
  [10080, 'last 7 days'],
];

function LatencyByRoute() {
  const [minutes, setMinutes] = useState(60);
  const latency = useLoad(() => api<Latency>('GET', `/v1/metrics/latency${qs({ minutes })}`), [minutes]);
  return (
    <Card
      title="Latency by route"
      actions={
        <label>
          Window{' '}
          <select aria-label="Latency window" value={minutes} onChange={(e) => setMinutes(Number(e.target.value))}>
            {WINDOWS.map(([m, label]) => (
              <option key={m} value={m}>
                {label}
              </option>
            ))}
          </select>
        </label>
      }
    >
      <LoadedTable
        label="Latency by route"
        loaded={{ loading: latency.loading, error: latency.error, data: latency.data ? { data: latency.data.data.map((r) => ({ ...r, id: `${r.method} ${r.route}` })) } : undefined }}
        empty="No requests in this window."
        columns={[
          { label: 'Route', render: (r) => <Link to={`/logs${qs({ route: r.route })}`} className="mono">{`${r.method} ${r.route}`}</Link> },
          { label: 'Requests', render: (r) => fmtNum(r.requests) },
          { label: '5xx', render: (r) => fmtNum(r.errors) },
          { label: 'p50 ms', render: (r) => ms(r.p50_ms) },
          { label: 'p95 ms', render: (r) => ms(r.p95_ms) },
          { label: 'p99 ms', render: (r) => ms(r.p99_ms) },
          { label: 'max ms', render: (r) => ms(r.max_ms) },
        ]}
      />
    </Card>
  );
}
