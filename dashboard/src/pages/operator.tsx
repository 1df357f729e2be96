import { type FormEvent, useMemo, useState } from 'react';
import { Area, AreaChart, Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { api, type Ok, qs, type Schema, valuesOf } from '../api';
import { Link } from '../router';
import { Badge, Card, ErrorBox, fmtAxis, fmtDate, fmtMoney, fmtNum, PagedTable, plural, Progress, Stat, Table, useAction, useLoad, usePaged } from '../ui';
import { type Job, JOB_STATUSES, jobColumns, StatusSelect } from './user';

// What the API answers, from its OpenAPI document (../api.gen.ts): never written by hand here.
type Stats = Ok<'/v1/admin/stats', 'get'>;
type Point = Stats['series'][number];

const tick = (bucket: string) => (at: string) => {
  const d = new Date(at);
  return bucket === 'day' ? d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }) : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
};

export function Overview() {
  const [bucket, setBucket] = useState<'minute' | 'hour' | 'day'>('day');
  const stats = useLoad(() => api<Stats>('GET', `/v1/admin/stats${qs({ bucket })}`), [bucket]);
  const s = stats.data;
  const currencies = useMemo(() => Object.keys(s?.totals.revenue ?? {}), [s]);
  const revenueRows = useMemo(
    () => (s?.series ?? []).map((p) => ({ at: p.at, ...Object.fromEntries(currencies.map((c) => [c, (p.revenue[c] ?? 0) / 100])) })),
    [s, currencies],
  );
  const fmt = tick(bucket);
  return (
    <div className="stack">
      <div className="page-head">
        <h1>Overview</h1>
        <select aria-label="Bucket" value={bucket} onChange={(e) => setBucket(e.target.value as typeof bucket)}>
          <option value="minute">last 2 hours, per minute</option>
          <option value="hour">last 48 hours, per hour</option>
          <option value="day">last 30 days, per day</option>
        </select>
      </div>
      <ErrorBox error={stats.error} />
      {stats.loading && <Progress />}
      {s && (
        <>
          <div className="stats">
            <Stat label="Users" value={fmtNum(s.totals.users)} testId="total-users" />
            <Stat label="Credits outstanding" value={fmtNum(s.totals.balance)} />
            <Stat label="Held now" value={fmtNum(s.totals.held)} />
            <Stat label="Granted (lifetime)" value={fmtNum(s.totals.credited)} />
            <Stat label="Spent (lifetime)" value={fmtNum(s.totals.spent)} />
            <Stat label="Expired (lifetime)" value={fmtNum(s.totals.expired)} />
            <Stat label="Revenue" value={currencies.length ? currencies.map((c) => fmtMoney(s.totals.revenue[c] ?? 0, c)).join(' · ') : '—'} />
            <Stat label="Usage events" value={fmtNum(s.totals.events)} />
            <Stat label="Unmatched payments" value={<Link to="/payments?tab=unmatched">{s.totals.unmatched_payments}</Link>} />
            {/* Each count links to the webhook log filtered to exactly the rows it counts. */}
            <Stat label="Failed webhooks" value={<Link to="/payments?tab=webhooks&status=failed">{fmtNum(s.totals.failed_webhooks)}</Link>} testId="failed-webhooks" />
            <Stat
              label="Rejected webhooks (provider × reason)"
              value={<Link to="/payments?tab=webhooks&status=rejected">{fmtNum(s.totals.rejected_webhooks)}</Link>}
              testId="rejected-webhooks"
            />
          </div>
          <div className="grid2">
            <Card title="Credits">
              <div className="chart">
                <ResponsiveContainer width="100%" height={240}>
                  <AreaChart data={s.series}>
                    <CartesianGrid strokeDasharray="3 3" />
                    <XAxis dataKey="at" tickFormatter={fmt} minTickGap={24} />
                    <YAxis width="auto" tickFormatter={fmtAxis} />
                    <Tooltip labelFormatter={(v) => new Date(String(v)).toLocaleString()} />
                    <Legend />
                    <Area type="monotone" dataKey="granted" stroke="#16a34a" fill="#16a34a33" />
                    <Area type="monotone" dataKey="spent" stroke="#4f46e5" fill="#4f46e533" />
                    <Area type="monotone" dataKey="held" stroke="#ca8a04" fill="#ca8a0433" />
                    <Area type="monotone" dataKey="expired" stroke="#dc2626" fill="#dc262633" />
                  </AreaChart>
                </ResponsiveContainer>
              </div>
            </Card>
            <Card title={`Usage events per ${bucket}`}>
              <CountBars rows={s.series} dataKey="events" color="#0891b2" format={fmt} />
            </Card>
            <Card title="New users">
              <CountBars rows={s.series} dataKey="users" color="#db2777" format={fmt} />
            </Card>
            <Card title="Revenue (net of refunds)">
              {currencies.length === 0 ? (
                <p className="muted">No revenue yet.</p>
              ) : (
                <div className="chart">
                  <ResponsiveContainer width="100%" height={240}>
                    <LineChart data={revenueRows}>
                      <CartesianGrid strokeDasharray="3 3" />
                      <XAxis dataKey="at" tickFormatter={fmt} minTickGap={24} />
                      <YAxis width="auto" tickFormatter={fmtAxis} />
                      <Tooltip labelFormatter={(v) => new Date(String(v)).toLocaleString()} />
                      <Legend />
                      {currencies.map((c, i) => (
                        <Line key={c} type="monotone" dataKey={c} name={c.toUpperCase()} stroke={['#16a34a', '#4f46e5', '#ea580c'][i % 3]} dot={false} />
                      ))}
                    </LineChart>
                  </ResponsiveContainer>
                </div>
              )}
            </Card>
          </div>
          <Card title="Jobs by status">
            <div className="stats">
              {Object.keys(s.totals.jobs).length === 0 && <p className="muted">No jobs yet.</p>}
              {Object.entries(s.totals.jobs).map(([status, n]) => (
                <Stat key={status} label={status} value={<Link to={`/jobs?status=${status}`}>{fmtNum(n)}</Link>} />
              ))}
            </div>
          </Card>
        </>
      )}
    </div>
  );
}

export function Users() {
  const [input, setInput] = useState('');
  const [q, setQ] = useState('');
  const paged = usePaged((cursor) => api<Ok<'/v1/users', 'get'>>('GET', `/v1/users${qs({ q, cursor, limit: 25 })}`), [q]);
  return (
    <div className="stack">
      <div className="page-head">
        <h1>Users</h1>
        <form
          className="search"
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            setQ(input.trim());
          }}
        >
          <input aria-label="Search users" placeholder="e-mail or name" value={input} onChange={(e) => setInput(e.target.value)} />
          <button type="submit">Search</button>
        </form>
      </div>
      <Card title={q ? `Users matching “${q}”` : 'All users, newest first'}>
        <PagedTable
          label="Users"
          paged={paged}
          empty="No users match."
          columns={[
            { label: 'E-mail', render: (u) => <Link to={`/users/${u.id}`}>{u.email}</Link> },
            { label: 'Name', render: (u) => u.name ?? '' },
            { label: 'Balance', render: (u) => <BalanceCell user={u} /> },
            { label: 'Id', render: (u) => <span className="mono">{u.id}</span> },
            { label: 'Created', render: (u) => fmtDate(u.created_at) },
          ]}
        />
      </Card>
    </div>
  );
}

/** One user's balance in the users list (and held when some is held), as the list itself answers it. */
function BalanceCell({ user }: { user: Pick<Schema<'UserListItem'>, 'id' | 'balance' | 'held'> }) {
  return (
    <span data-testid={`balance-${user.id}`}>
      {fmtNum(user.balance)}
      {user.held > 0 && <span className="muted"> ({fmtNum(user.held)} held)</span>}
    </span>
  );
}

type Payment = Schema<'Payment'>;
const PAYMENT_STATUSES = valuesOf<Payment['status']>({
  created: true, requires_action: true, processing: true, succeeded: true, failed: true, refunded: true, disputed: true,
});
const DELIVERY_STATUSES = valuesOf<Schema<'WebhookEvent'>['status']>({ received: true, processing: true, processed: true, failed: true, ignored: true, rejected: true });

export function Payments({ tab: initial, status }: { tab: string; status: string }) {
  const [tab, setTab] = useState(initial || 'unmatched');
  return (
    <div className="stack">
      <h1>Payments</h1>
      <div className="tabs" role="tablist">
        {(
          [
            ['unmatched', 'Unmatched queue'],
            ['all', 'All payments'],
            ['webhooks', 'Webhook log'],
          ] as const
        ).map(([id, label]) => (
          <button key={id} role="tab" aria-selected={tab === id} className={tab === id ? 'tab active' : 'tab'} onClick={() => setTab(id)}>
            {label}
          </button>
        ))}
      </div>
      {tab === 'unmatched' && <Unmatched />}
      {tab === 'all' && <AllPayments />}
      {tab === 'webhooks' && <Webhooks initial={status} />}
    </div>
  );
}

const paymentColumns = [
  { label: 'When', render: (p: Payment) => fmtDate(p.created_at) },
  { label: 'Provider', render: (p: Payment) => `${p.provider} ${p.provider_payment_id}` },
  { label: 'Amount', render: (p: Payment) => fmtMoney(p.amount, p.currency) },
  { label: 'Status', render: (p: Payment) => <Badge value={p.status} /> },
  { label: 'E-mail', render: (p: Payment) => p.email ?? '—' },
  { label: 'Credits', render: (p: Payment) => fmtNum(p.credits) },
];

function Unmatched() {
  const paged = usePaged((cursor) => api<Ok<'/v1/payments', 'get'>>('GET', `/v1/payments${qs({ match_status: 'unmatched', cursor, limit: 25 })}`), []);
  return (
    <Card title="Unmatched payments: paid, but no user could be found">
      <PagedTable
        label="Unmatched payments"
        paged={paged}
        empty="The queue is empty."
        columns={[...paymentColumns, { label: 'Resolve', render: (p: Payment) => <ResolveForm payment={p} onDone={paged.reload} /> }]}
      />
    </Card>
  );
}

function ResolveForm({ payment, onDone }: { payment: Payment; onDone: () => void }) {
  const [userId, setUserId] = useState('');
  const [alias, setAlias] = useState(true);
  const { busy, error, run } = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    return run(async () => {
      await api('POST', `/v1/payments/${encodeURIComponent(payment.id)}/resolve`, { body: { user_id: userId.trim(), add_alias: alias && !!payment.email } });
      onDone();
    });
  };
  return (
    <form className="resolve" onSubmit={submit} aria-label={`Resolve ${payment.id}`}>
      <input aria-label="User id" required placeholder="usr_…" value={userId} onChange={(e) => setUserId(e.target.value)} />
      {payment.email && (
        <label className="inline">
          <input type="checkbox" checked={alias} onChange={(e) => setAlias(e.target.checked)} /> remember {payment.email}
        </label>
      )}
      <button type="submit" disabled={busy}>
        {busy ? 'Resolving…' : 'Assign'}
      </button>
      <ErrorBox error={error} />
    </form>
  );
}

function AllPayments() {
  const [status, setStatus] = useState('');
  const paged = usePaged((cursor) => api<Ok<'/v1/payments', 'get'>>('GET', `/v1/payments${qs({ status, cursor, limit: 25 })}`), [status]);
  return (
    <Card
      title="All payments"
      actions={<StatusSelect label="Payment status" value={status} onChange={setStatus} options={PAYMENT_STATUSES} />}
    >
      <PagedTable
        label="Payments"
        paged={paged}
        empty="No payments."
        columns={[
          ...paymentColumns,
          { label: 'Match', render: (p: Payment) => <Badge value={p.match_status} /> },
          { label: 'User', render: (p: Payment) => (p.user_id ? <Link to={`/users/${p.user_id}`}>{p.user_id}</Link> : '—') },
        ]}
      />
    </Card>
  );
}

function Webhooks({ initial }: { initial: string }) {
  const [status, setStatus] = useState(initial || 'failed');
  const paged = usePaged((cursor) => api<Ok<'/v1/webhook-events', 'get'>>('GET', `/v1/webhook-events${qs({ status, cursor, limit: 25 })}`), [status]);
  return (
    <Card
      title="Webhook deliveries"
      actions={<StatusSelect label="Delivery status" value={status} onChange={setStatus} options={DELIVERY_STATUSES} />}
    >
      <PagedTable
        label="Webhook deliveries"
        paged={paged}
        empty="No deliveries with this status."
        columns={[
          { label: 'When', render: (w) => fmtDate(w.created_at) },
          { label: 'Provider', render: (w) => w.provider },
          { label: 'Event', render: (w) => w.event_type ?? '—' },
          { label: 'Status', render: (w) => <Badge value={w.status} /> },
          // A rejected row counts every delivery that failed verification for one provider and reason.
          { label: 'Attempts', render: (w) => (w.status === 'rejected' ? plural(w.attempts, 'delivery', 'deliveries') : w.attempts) },
          { label: 'Outcome / error', render: (w) => w.error ?? w.outcome ?? '' },
        ]}
      />
    </Card>
  );
}

export function Jobs({ status: initial }: { status: string }) {
  const [status, setStatus] = useState(initial);
  const paged = usePaged((cursor) => api<Ok<'/v1/jobs', 'get'>>('GET', `/v1/jobs${qs({ status, cursor, limit: 25 })}`), [status]);
  return (
    <div className="stack">
      <h1>Jobs</h1>
      <Card
        title="Jobs, newest first"
        actions={<StatusSelect label="Job status" value={status} onChange={setStatus} options={JOB_STATUSES} />}
      >
        <PagedTable
          label="Jobs"
          paged={paged}
          empty="No jobs with this status."
          columns={[...jobColumns, { label: 'User', render: (j: Job) => <Link to={`/users/${j.user_id}`}>{j.user_id}</Link> }]}
        />
      </Card>
    </div>
  );
}

type Report = Ok<'/v1/admin/reconcile', 'post'>;

export function Reconcile() {
  const [report, setReport] = useState<Report>();
  const action = useAction();
  const { busy, error } = action;
  const run = () => action.run(async () => setReport(await api<Report>('POST', '/v1/admin/reconcile')));
  return (
    <div className="stack">
      <h1>Reconcile</h1>
      <Card title="Ledger checks" actions={<button onClick={() => void run()} disabled={busy}>{busy ? 'Checking…' : 'Run checks'}</button>}>
        <p className="muted">
          The checks of <code>tally reconcile</code>: every balance equals its ledger and its grants, held equals the open holds, every entry is
          fully allocated, every hold’s status agrees with its fields.
        </p>
        {busy && <Progress label="Checking every account…" />}
        <ErrorBox error={error} />
        {report && (
          <>
            <p className={report.ok ? 'ok' : 'error'} role="status">
              {report.ok ? 'No drift: every balance equals its ledger.' : `${report.drift.length} problem(s) found.`} Checked {fmtNum(report.accounts)} accounts,{' '}
              {fmtNum(report.entries)} ledger entries, {fmtNum(report.open_holds)} open holds at {fmtDate(report.checked_at)}.
            </p>
            <Table
              label="Drift"
              rows={report.drift.map((d, i) => ({ ...d, id: `${d.account_id}-${i}` }))}
              empty="No drift."
              columns={[
                { label: 'Account', render: (d) => <span className="mono">{d.account_id}</span> },
                { label: 'Check', render: (d) => d.check },
                { label: 'Expected', render: (d) => String(d.expected) },
                { label: 'Found', render: (d) => String(d.actual) },
              ]}
            />
          </>
        )}
      </Card>
    </div>
  );
}

/** Counts per time bucket as bars (events, new users). */
function CountBars({ rows, dataKey, color, format }: { rows: Point[]; dataKey: 'events' | 'users'; color: string; format: (at: string) => string }) {
  return (
    <div className="chart">
      <ResponsiveContainer width="100%" height={240}>
        <BarChart data={rows}>
          <CartesianGrid strokeDasharray="3 3" />
          <XAxis dataKey="at" tickFormatter={format} minTickGap={24} />
          <YAxis width="auto" allowDecimals={false} tickFormatter={fmtAxis} />
          <Tooltip labelFormatter={(v) => new Date(String(v)).toLocaleString()} />
          <Bar dataKey={dataKey} fill={color} />
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}
