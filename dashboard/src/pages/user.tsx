import { type FormEvent, useMemo, useState } from 'react';
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { api, ApiError, newIdempotencyKey, type Ok, qs, type Schema, valuesOf } from '../api';
import { Link } from '../router';
import { Badge, Card, ErrorBox, fmtAxis, fmtDate, fmtMoney, fmtNum, LoadedTable, PagedTable, Progress, Stat, Table, toApiError, useAction, useLoad, usePaged } from '../ui';

// What the API answers, from its OpenAPI document (../api.gen.ts): never written by hand here.
type Job = Schema<'Job'>;
type Key = Schema<'ApiKey'>;

const ENTRY_TYPES = valuesOf<Schema<'Transaction'>['type']>({
  grant: true, debit: true, refund: true, adjustment: true, capture: true, expiry: true, rollover: true, clawback: true,
});
export const JOB_STATUSES = valuesOf<Job['status']>({ pending: true, processing: true, completed: true, failed: true, canceled: true, timed_out: true });

/** One user's money, usage and keys. The operator sees any user; an end user only themself (the API decides). */
export function UserView({ userId, operator }: { userId: string; operator: boolean }) {
  const u = encodeURIComponent(userId);
  const user = useLoad(() => api<Ok<'/v1/users/{id}', 'get'>>('GET', `/v1/users/${u}`), [u]);
  const balance = useLoad(() => api<Ok<'/v1/users/{id}/balance', 'get'>>('GET', `/v1/users/${u}/balance`), [u]);
  const [version, setVersion] = useState(0);
  const refresh = () => {
    balance.reload();
    setVersion((v) => v + 1);
  };

  if (user.error) return <ErrorBox error={user.error} />;
  return (
    <div className="stack">
      <div className="page-head">
        <h1>{user.data ? user.data.email : 'User'}</h1>
        <span className="muted mono">{userId}</span>
        {/* Their files: the storage browser at their own folder (buckets are the service's to list). */}
        {operator && <Link to={`/storage?prefix=${encodeURIComponent(`${userId}/`)}`}>Files in storage</Link>}
      </div>
      <Card title="Balance">
        <ErrorBox error={balance.error} />
        {balance.loading && !balance.data && <Progress />}
        {balance.data && (
          <>
            <div className="stats">
              <Stat label="Balance" value={fmtNum(balance.data.balance)} testId="balance" />
              <Stat label="Available" value={fmtNum(balance.data.available)} testId="available" />
              <Stat label="Held" value={fmtNum(balance.data.held)} testId="held" />
              <Stat label="Credited (lifetime)" value={fmtNum(balance.data.total_credited)} />
              <Stat label="Spent (lifetime)" value={fmtNum(balance.data.total_spent)} />
            </div>
            <h3>Grants</h3>
            <Table
              label="Grants"
              rows={balance.data.grants}
              empty="No credits left in any grant."
              columns={[
                { label: 'Class', render: (g) => <Badge value={g.class} /> },
                { label: 'Source', render: (g) => g.source },
                { label: 'Remaining', render: (g) => fmtNum(g.remaining) },
                { label: 'Expires', render: (g) => (g.expires_at ? fmtDate(g.expires_at) : 'never') },
                { label: 'Priority', render: (g) => g.priority },
              ]}
            />
          </>
        )}
      </Card>
      {operator && <AdjustForm userId={userId} onDone={refresh} />}
      <UsageChart userId={userId} />
      <Ledger userId={userId} version={version} />
      <Holds userId={userId} version={version} />
      <Jobs userId={userId} />
      <Subscriptions userId={userId} />
      <BudgetAndOverage userId={userId} />
      <PaymentsAndInvoices userId={userId} />
      <UserWorkspaces userId={userId} />
      <ApiKeys userId={userId} />
    </div>
  );
}

/** The workspaces a user belongs to (the API's list for them), each linking to its pool and members. */
function UserWorkspaces({ userId }: { userId: string }) {
  const u = encodeURIComponent(userId);
  const paged = usePaged((cursor) => api<Ok<'/v1/workspaces', 'get'>>('GET', `/v1/workspaces${qs({ user_id: userId, cursor, limit: 25 })}`), [u]);
  return (
    <Card title="Workspaces">
      <PagedTable
        label="Workspaces"
        paged={paged}
        empty="Not a member of any workspace."
        columns={[
          { label: 'Name', render: (w) => <Link to={`/workspaces/${encodeURIComponent(w.id)}`}>{w.name}</Link> },
          { label: 'Slug', render: (w) => w.slug },
          { label: 'Owner', render: (w) => (w.owner_id === userId ? 'this user' : <span className="mono">{w.owner_id}</span>) },
          { label: 'State', render: (w) => <Badge value={w.is_active ? 'active' : 'inactive'} /> },
        ]}
      />
    </Card>
  );
}

function AdjustForm({ userId, onDone }: { userId: string; onDone: () => void }) {
  const [amount, setAmount] = useState('');
  const [reason, setReason] = useState('');
  const [key, setKey] = useState(() => newIdempotencyKey('adjust'));
  const { busy, error, run } = useAction();
  const [done, setDone] = useState<string>();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setDone(undefined);
    return run(
      async () => {
        const res = await api<Ok<'/v1/credits/adjust', 'post'>>('POST', '/v1/credits/adjust', {
          body: { user_id: userId, amount: Number(amount), reason },
          idempotencyKey: key,
        });
        setDone(`Adjusted by ${res.transaction.amount} (balance now ${res.transaction.balance_after}).`);
        setAmount('');
        setReason('');
        setKey(newIdempotencyKey('adjust'));
        onDone();
      },
      // A refused request is recorded under its key: the next attempt (a changed form) needs a new
      // one. Network errors and 5xx keep it, so a retry cannot apply the adjustment twice.
      (e) => {
        if (e.status >= 400 && e.status < 500) setKey(newIdempotencyKey('adjust'));
      },
    );
  };
  return (
    <Card title="Adjust balance">
      <form className="form-row" onSubmit={submit}>
        <label>
          Amount (+/−)
          <input name="amount" type="number" step={1} required value={amount} onChange={(e) => setAmount(e.target.value)} />
        </label>
        <label className="grow">
          Reason
          <input name="reason" required minLength={1} value={reason} onChange={(e) => setReason(e.target.value)} placeholder="why (kept in the ledger)" />
        </label>
        <label>
          Idempotency key
          <input name="idempotency-key" required value={key} onChange={(e) => setKey(e.target.value)} />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Adjusting…' : 'Adjust'}
        </button>
      </form>
      {busy && <Progress label="Adjusting…" />}
      <ErrorBox error={error} />
      {done && <p className="ok" role="status">{done}</p>}
    </Card>
  );
}

function UsageChart({ userId }: { userId: string }) {
  const since = useMemo(() => new Date(Date.now() - 30 * 86_400_000).toISOString(), []);
  const usage = useLoad(
    () => api<Ok<'/v1/users/{id}/usage', 'get'>>('GET', `/v1/users/${encodeURIComponent(userId)}/usage${qs({ window: 'day', since })}`),
    [userId, since],
  );
  const { data, metrics } = useMemo(() => {
    const byDay = new Map<string, Record<string, number | string>>();
    const metrics = new Set<string>();
    for (const c of usage.data?.data ?? []) {
      const day = c.window_start.slice(0, 10);
      metrics.add(c.metric);
      const row = byDay.get(day) ?? { day };
      row[c.metric] = ((row[c.metric] as number | undefined) ?? 0) + c.quantity;
      byDay.set(day, row);
    }
    return { data: [...byDay.values()].sort((a, b) => String(a['day']).localeCompare(String(b['day']))), metrics: [...metrics] };
  }, [usage.data]);
  const colors = ['#4f46e5', '#0891b2', '#ea580c', '#16a34a', '#db2777', '#ca8a04'];
  return (
    <Card title="Usage per metric per day (30 days)">
      <ErrorBox error={usage.error} />
      {usage.loading && <Progress />}
      {!usage.loading && data.length === 0 && !usage.error && <p className="muted">No usage recorded in the last 30 days.</p>}
      {data.length > 0 && (
        <div className="chart">
          <ResponsiveContainer width="100%" height={240}>
            <BarChart data={data}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="day" />
              {/* Sized to its ticks (quantities reach millions), so no label is cut off at the left edge. */}
              <YAxis width="auto" tickFormatter={fmtAxis} />
              <Tooltip />
              <Legend />
              {metrics.map((m, i) => (
                <Bar key={m} dataKey={m} stackId="u" fill={colors[i % colors.length]} />
              ))}
            </BarChart>
          </ResponsiveContainer>
        </div>
      )}
    </Card>
  );
}

function Ledger({ userId, version }: { userId: string; version: number }) {
  const [type, setType] = useState('');
  const paged = usePaged(
    (cursor) => api<Ok<'/v1/users/{id}/transactions', 'get'>>('GET', `/v1/users/${encodeURIComponent(userId)}/transactions${qs({ type, cursor, limit: 25 })}`),
    [userId, type, version],
  );
  return (
    <Card
      title="Ledger"
      actions={
        <select aria-label="Entry type" value={type} onChange={(e) => setType(e.target.value)}>
          <option value="">all types</option>
          {ENTRY_TYPES.map((t) => (
            <option key={t}>{t}</option>
          ))}
        </select>
      }
    >
      <PagedTable
        label="Ledger"
        paged={paged}
        empty="No ledger entries."
        columns={[
          { label: 'When', render: (t) => fmtDate(t.created_at) },
          { label: 'Type', render: (t) => <Badge value={t.type} /> },
          { label: 'Amount', render: (t) => <span className={t.amount < 0 ? 'neg' : 'pos'}>{t.amount > 0 ? `+${t.amount}` : t.amount}</span> },
          { label: 'Balance after', render: (t) => fmtNum(t.balance_after) },
          { label: 'Reason', render: (t) => t.reason },
        ]}
      />
    </Card>
  );
}

function Holds({ userId, version }: { userId: string; version: number }) {
  const paged = usePaged((cursor) => api<Ok<'/v1/users/{id}/holds', 'get'>>('GET', `/v1/users/${encodeURIComponent(userId)}/holds${qs({ cursor, limit: 25 })}`), [userId, version]);
  return (
    <Card title="Holds">
      <PagedTable
        label="Holds"
        paged={paged}
        empty="No holds."
        columns={[
          { label: 'Created', render: (h) => fmtDate(h.created_at) },
          { label: 'Amount', render: (h) => fmtNum(h.amount) },
          { label: 'Status', render: (h) => <Badge value={h.status} /> },
          { label: 'Captured', render: (h) => (h.captured === null ? '—' : fmtNum(h.captured)) },
          { label: 'Expires', render: (h) => fmtDate(h.expires_at) },
        ]}
      />
    </Card>
  );
}

export const jobColumns = [
  { label: 'Created', render: (j: Job) => fmtDate(j.created_at) },
  { label: 'Kind', render: (j: Job) => `${j.kind}${j.model ? ` · ${j.model}` : ''}` },
  { label: 'Status', render: (j: Job) => <Badge value={j.status} /> },
  { label: 'Cost', render: (j: Job) => fmtNum(j.cost) },
  { label: 'Captured', render: (j: Job) => (j.captured === null ? '—' : fmtNum(j.captured)) },
  { label: 'Error', render: (j: Job) => j.error ?? '' },
];
export type { Job };

function Jobs({ userId }: { userId: string }) {
  const [status, setStatus] = useState('');
  const paged = usePaged(
    (cursor) => api<Ok<'/v1/users/{id}/jobs', 'get'>>('GET', `/v1/users/${encodeURIComponent(userId)}/jobs${qs({ status, cursor, limit: 25 })}`),
    [userId, status],
  );
  return (
    <Card title="Jobs" actions={<StatusSelect value={status} onChange={setStatus} options={JOB_STATUSES} label="Job status" />}>
      <PagedTable label="Jobs" paged={paged} empty="No jobs." columns={jobColumns} />
    </Card>
  );
}

export function StatusSelect({ value, onChange, options, label }: { value: string; onChange: (v: string) => void; options: string[]; label: string }) {
  return (
    <select aria-label={label} value={value} onChange={(e) => onChange(e.target.value)}>
      <option value="">all</option>
      {options.map((o) => (
        <option key={o}>{o}</option>
      ))}
    </select>
  );
}

type Plan = Ok<'/v1/plans/{id}', 'get'>;

function Subscriptions({ userId }: { userId: string }) {
  // The subscriptions, then each distinct plan once (GET /v1/plans/:id answers inactive plans too, and
  // to end users as well): a user has a handful of subscriptions, so this is a few reads, not a storm.
  const subs = useLoad(async () => {
    const list = await api<Ok<'/v1/users/{id}/subscriptions', 'get'>>('GET', `/v1/users/${encodeURIComponent(userId)}/subscriptions`);
    const ids = [...new Set(list.data.map((s) => s.plan_id))];
    const plans = new Map<string, Plan>();
    await Promise.all(ids.map(async (id) => plans.set(id, await api<Ok<'/v1/plans/{id}', 'get'>>('GET', `/v1/plans/${encodeURIComponent(id)}`))));
    return { data: list.data.map((s) => ({ ...s, plan: plans.get(s.plan_id) })) };
  }, [userId]);
  return (
    <Card title="Subscription">
      <LoadedTable
        label="Subscriptions"
        loaded={subs}
        empty="No subscription."
        columns={[
          { label: 'Plan', render: (s) => (s.plan ? `${s.plan.name} (${s.plan.slug})` : s.plan_id) },
          { label: 'Status', render: (s) => <Badge value={s.status} /> },
          { label: 'Interval', render: (s) => s.billing_interval },
          { label: 'Period ends', render: (s) => fmtDate(s.current_period_end) + (s.cancel_at_period_end ? ' (cancels)' : '') },
        ]}
      />
    </Card>
  );
}

/** Read-only: the monthly budget guard (set with PUT /v1/users/:id/budget-guard) and overage charges. */
function BudgetAndOverage({ userId }: { userId: string }) {
  const u = encodeURIComponent(userId);
  // The API answers 404 while no guard is set: that is "none", not an error to show.
  const guard = useLoad(async () => {
    try {
      return await api<Ok<'/v1/users/{id}/budget-guard', 'get'>>('GET', `/v1/users/${u}/budget-guard`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  }, [u]);
  const overage = usePaged((cursor) => api<Ok<'/v1/users/{id}/overage-charges', 'get'>>('GET', `/v1/users/${u}/overage-charges${qs({ cursor, limit: 25 })}`), [u]);
  const g = guard.data;
  return (
    <div className="grid2">
      <Card title="Budget guard">
        <ErrorBox error={guard.error} />
        {guard.loading && <Progress />}
        {g === null && <p className="muted">No budget guard: usage spend has no monthly cap.</p>}
        {g && (
          <div className="stats">
            <Stat label="Monthly cap" value={fmtMoney(g.monthly_cap, g.currency)} testId="guard-cap" />
            <Stat label="Spent this month" value={fmtMoney(g.current_window_spend, g.currency)} testId="guard-spent" />
            <Stat label="At the cap" value={g.behavior === 'suspend' ? 'suspend usage' : 'throttle usage'} />
            <Stat label="Month" value={`${fmtDate(g.window_start)} – ${fmtDate(g.window_end)}`} />
            <Stat label="Alerts" value={g.alerted_100_at ? 'cap reached' : g.alerted_80_at ? '80% reached' : g.notify ? 'on, none sent' : 'off'} />
          </div>
        )}
      </Card>
      <Card title="Overage charges">
        <PagedTable
          label="Overage charges"
          paged={overage}
          empty="No overage charges."
          columns={[
            { label: 'Period', render: (o) => `${fmtDate(o.period_start)} – ${fmtDate(o.period_end)}` },
            { label: 'Metric', render: (o) => o.metric },
            { label: 'Credits', render: (o) => fmtNum(o.credits) },
            { label: 'Amount', render: (o) => fmtMoney(o.amount, o.currency) },
            { label: 'Status', render: (o) => <Badge value={o.status} /> },
          ]}
        />
      </Card>
    </div>
  );
}

function PaymentsAndInvoices({ userId }: { userId: string }) {
  const u = encodeURIComponent(userId);
  const payments = usePaged((cursor) => api<Ok<'/v1/users/{id}/payments', 'get'>>('GET', `/v1/users/${u}/payments${qs({ cursor, limit: 25 })}`), [u]);
  const invoices = usePaged((cursor) => api<Ok<'/v1/users/{id}/invoices', 'get'>>('GET', `/v1/users/${u}/invoices${qs({ cursor, limit: 25 })}`), [u]);
  return (
    <div className="grid2">
      <Card title="Payments">
        <PagedTable
          label="Payments"
          paged={payments}
          empty="No payments."
          columns={[
            { label: 'When', render: (p) => fmtDate(p.created_at) },
            { label: 'Amount', render: (p) => fmtMoney(p.amount, p.currency) },
            { label: 'Status', render: (p) => <Badge value={p.status} /> },
            { label: 'Credits', render: (p) => fmtNum(p.credits) },
          ]}
        />
      </Card>
      <Card title="Invoices">
        <PagedTable
          label="Invoices"
          paged={invoices}
          empty="No invoices."
          columns={[
            { label: 'When', render: (i) => fmtDate(i.created_at) },
            {
              label: 'Invoice',
              render: (i) => {
                // Provider-supplied: only ever link an https URL (never javascript: or data:).
                const url = [i.hosted_invoice_url, i.invoice_pdf_url].find((u) => u?.startsWith('https://'));
                return url ? <a href={url} target="_blank" rel="noreferrer noopener">{i.provider_invoice_id}</a> : i.provider_invoice_id;
              },
            },
            { label: 'Due', render: (i) => fmtMoney(i.amount_due, i.currency) },
            { label: 'Paid', render: (i) => fmtMoney(i.amount_paid, i.currency) },
            { label: 'Status', render: (i) => <Badge value={i.status} /> },
          ]}
        />
      </Card>
    </div>
  );
}

function ApiKeys({ userId }: { userId: string }) {
  const u = encodeURIComponent(userId);
  const keys = useLoad(() => api<Ok<'/v1/users/{id}/api-keys', 'get'>>('GET', `/v1/users/${u}/api-keys`), [u]);
  const [name, setName] = useState('');
  const [created, setCreated] = useState<{ key: string; name: string }>();
  const { busy, error, setError, run } = useAction();
  const create = (e: FormEvent) => {
    e.preventDefault();
    return run(async () => {
      const res = await api<Ok<'/v1/users/{id}/api-keys', 'post'>>('POST', `/v1/users/${u}/api-keys`, { body: { name }, idempotencyKey: newIdempotencyKey('key') });
      setCreated(res);
      setName('');
      keys.reload();
    });
  };
  const revoke = async (k: Key) => {
    if (!window.confirm(`Revoke the key "${k.name}"? Programs using it stop working at once.`)) return;
    setError(undefined);
    try {
      await api('DELETE', `/v1/api-keys/${encodeURIComponent(k.id)}`);
      keys.reload();
    } catch (err) {
      setError(toApiError(err));
    }
  };
  return (
    <Card title="API keys">
      <form className="form-row" onSubmit={create}>
        <label className="grow">
          New key name
          <input name="key-name" required value={name} onChange={(e) => setName(e.target.value)} placeholder="e.g. production server" />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Creating…' : 'Create key'}
        </button>
      </form>
      {created && (
        <div className="secret" role="status">
          <p>
            Key <strong>{created.name}</strong> created. Copy it now: it is shown only once.
          </p>
          <code data-testid="new-key">{created.key}</code>
          <button className="secondary" onClick={() => setCreated(undefined)}>
            I have copied it
          </button>
        </div>
      )}
      <LoadedTable
        label="API keys"
        loaded={keys}
        error={error}
        empty="No API keys."
        columns={[
          { label: 'Name', render: (k) => k.name },
          { label: 'Prefix', render: (k) => <code>{k.prefix}…</code> },
          { label: 'Created', render: (k) => fmtDate(k.created_at) },
          { label: 'Last used', render: (k) => fmtDate(k.last_used_at) },
          {
            label: 'State',
            render: (k) =>
              k.revoked_at ? (
                <Badge value="revoked" />
              ) : (
                <button className="danger" onClick={() => void revoke(k)} aria-label={`Revoke ${k.name}`}>
                  Revoke
                </button>
              ),
          },
        ]}
      />
    </Card>
  );
}
