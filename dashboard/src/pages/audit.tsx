import { type FormEvent, useState } from 'react';
import { api, type Ok, qs, valuesOf } from '../api';
import { Link, navigate } from '../router';
import { Badge, Card, ErrorBox, fmtDate, fmtNum, isoFromLocal, localInput, PagedTable, Progress, Table, useAction, usePaged } from '../ui';

// What the API answers, from its OpenAPI document (../api.gen.ts): never written by hand here.
type AuditEntry = Ok<'/v1/audit', 'get'>['data'][number];
type Verification = Ok<'/v1/audit/verify', 'get'>;
type Image = AuditEntry['before'];

const ACTOR_KINDS = valuesOf<AuditEntry['actor']['kind']>({ service: true, user: true, anon: true, system: true, provider: true });
// Every action the API accepts as a filter, in the API's order (docs/audit.md): one missing or extra fails to compile.
const ACTIONS = valuesOf<AuditEntry['action']>({
  'user.created': true, 'user.updated': true, 'user.deactivated': true, 'user.reactivated': true, 'user.role_changed': true, 'user.deleted': true,
  'api_key.created': true, 'api_key.updated': true, 'api_key.revoked': true, 'api_key.deleted': true,
  'workspace.created': true, 'workspace.updated': true, 'workspace.deleted': true,
  'workspace_member.added': true, 'workspace_member.role_changed': true, 'workspace_member.updated': true, 'workspace_member.removed': true,
  'env_var.set': true, 'env_var.rotated': true, 'env_var.updated': true, 'env_var.deleted': true,
  'service_token.set': true, 'service_token.rotated': true, 'service_token.updated': true, 'service_token.deleted': true,
  'upstream.created': true, 'upstream.updated': true, 'upstream.credentials_rotated': true, 'upstream.deleted': true,
  'bucket.created': true, 'bucket.updated': true, 'bucket.deleted': true,
  'storage_object.deleted': true,
  'git_repository.created': true, 'git_repository.updated': true, 'git_repository.credentials_rotated': true, 'git_repository.deleted': true,
  'deployment.created': true, 'deployment.status_changed': true, 'deployment.updated': true, 'deployment.deleted': true,
  'job.created': true, 'job.completed': true, 'job.failed': true, 'job.canceled': true, 'job.timed_out': true,
  'webhook_endpoint.created': true, 'webhook_endpoint.updated': true, 'webhook_endpoint.secret_rotated': true, 'webhook_endpoint.deleted': true,
  'plan.created': true, 'plan.updated': true, 'plan.deleted': true,
  'plan_allowance.created': true, 'plan_allowance.updated': true, 'plan_allowance.deleted': true,
  'plan_price.created': true, 'plan_price.updated': true, 'plan_price.deleted': true,
  'cost_model.created': true, 'cost_model.updated': true, 'cost_model.deleted': true,
  'credit_package.created': true, 'credit_package.updated': true, 'credit_package.deleted': true,
  'subscription.created': true, 'subscription.plan_changed': true, 'subscription.status_changed': true, 'subscription.updated': true, 'subscription.deleted': true,
  'budget_guard.created': true, 'budget_guard.updated': true, 'budget_guard.deleted': true,
  'spend_cap.set': true, 'spend_cap.updated': true, 'spend_cap.removed': true,
  'payment.created': true, 'payment.status_changed': true, 'payment.updated': true, 'payment.deleted': true,
  'credits.granted': true, 'credits.adjusted': true, 'credits.refunded': true, 'credits.clawed_back': true,
});

/** The filters the page's URL carries (`/audit?action=user.updated&target_id=…`); from/to are ISO instants. */
export interface AuditFilters {
  actor_kind: string;
  actor_id: string;
  action: string;
  target_table: string;
  target_id: string;
  request_id: string;
  from: string;
  to: string;
}

/** The audit log (filtered, newest first) and the hash chain's check. */
export function Audit({ filters }: { filters: AuditFilters }) {
  const [form, setForm] = useState({ ...filters, from: localInput(filters.from), to: localInput(filters.to) });
  const apply = (e: FormEvent) => {
    e.preventDefault();
    navigate(`/audit${qs({ ...form, from: isoFromLocal(form.from), to: isoFromLocal(form.to) })}`);
  };
  const paged = usePaged(
    (cursor) => api<Ok<'/v1/audit', 'get'>>('GET', `/v1/audit${qs({ ...filters, cursor, limit: 25 })}`),
    [filters.actor_kind, filters.actor_id, filters.action, filters.target_table, filters.target_id, filters.request_id, filters.from, filters.to],
  );
  const field = (name: keyof AuditFilters, label: string, placeholder: string, type = 'text') => (
    <label>
      {label}
      <input name={name} type={type} step={type === 'datetime-local' ? 1 : undefined} value={form[name]} placeholder={placeholder} onChange={(e) => setForm({ ...form, [name]: e.target.value })} />
    </label>
  );
  const select = (name: 'actor_kind' | 'action', label: string, options: readonly string[]) => (
    <label>
      {label}
      <select name={name} value={form[name]} onChange={(e) => setForm({ ...form, [name]: e.target.value })}>
        <option value="">any</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
  return (
    <div className="stack">
      <h1>Audit</h1>
      <VerifyChain />
      <Card title="Audit log, newest first">
        <form className="filters" onSubmit={apply} aria-label="Filter audit log">
          {select('actor_kind', 'Actor kind', ACTOR_KINDS)}
          {field('actor_id', 'Actor id', 'usr_… or payments')}
          {select('action', 'Action', ACTIONS)}
          {field('target_table', 'Target table', 'users')}
          {field('target_id', 'Target id', 'usr_…')}
          {field('request_id', 'Request id', 'req_…')}
          {field('from', 'From', '', 'datetime-local')}
          {field('to', 'To (exclusive)', '', 'datetime-local')}
          <button type="submit">Filter</button>
          <button type="button" className="secondary" onClick={() => navigate('/audit')}>
            Clear
          </button>
        </form>
        <PagedTable
          label="Audit log"
          paged={paged}
          empty="No audit row matches these filters."
          columns={[
            { label: 'Seq', render: (a: AuditEntry) => fmtNum(a.seq) },
            { label: 'Time', render: (a) => fmtDate(a.at) },
            { label: 'Actor', render: (a) => <Actor entry={a} /> },
            { label: 'Action', render: (a) => <Badge value={a.action} /> },
            {
              label: 'Target',
              render: (a) => (
                <Link to={`/audit${qs({ target_table: a.target.table, target_id: a.target.id })}`} className="mono" title="This row's history">
                  {a.target.table} {a.target.id}
                </Link>
              ),
            },
            { label: 'Changes', render: (a) => <AuditDiff entry={a} /> },
            { label: 'Request id', render: (a) => (a.request_id ? <Link to={`/logs${qs({ request_id: a.request_id })}`} className="mono">{a.request_id}</Link> : '—') },
          ]}
        />
      </Card>
    </div>
  );
}

function Actor({ entry }: { entry: AuditEntry }) {
  const { kind, id, api_key_id } = entry.actor;
  return (
    <span>
      {kind}
      {id && ' '}
      {id && (kind === 'user' ? <Link to={`/users/${encodeURIComponent(id)}`}>{id}</Link> : <span className="mono">{id}</span>)}
      {api_key_id && <div className="muted mono">key {api_key_id}</div>}
    </span>
  );
}

/** One field of a row's images: absent on one side for a create or a delete. */
interface FieldChange {
  field: string;
  before?: unknown;
  after?: unknown;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** The fields whose value differs between the images, in the after-image's order (then removed ones). */
export function changedFields(before: Image, after: Image): FieldChange[] {
  const b = before ?? {};
  const a = after ?? {};
  const fields = [...Object.keys(a), ...Object.keys(b).filter((k) => !(k in a))];
  return fields
    .filter((f) => !(f in a && f in b && same(a[f], b[f])))
    .map((f) => ({ field: f, ...(f in b ? { before: b[f] } : {}), ...(f in a ? { after: a[f] } : {}) }));
}

const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));

/**
 * The before/after images as a diff: only the fields that changed, the old value struck out and the
 * new one beside it. An update's diff is open; a create's or delete's whole image is one click away.
 */
function AuditDiff({ entry }: { entry: AuditEntry }) {
  const changes = changedFields(entry.before, entry.after);
  const kind = entry.before && entry.after ? 'update' : entry.after ? 'create' : entry.before ? 'delete' : 'none';
  if (changes.length === 0) return <span className="muted">{kind === 'none' ? 'no images' : 'no field changed'}</span>;
  const summary =
    kind === 'update' ? changes.map((c) => c.field).join(', ') : `${kind === 'create' ? 'created' : 'deleted'}: ${changes.length} ${changes.length === 1 ? 'field' : 'fields'}`;
  return (
    <details open={kind === 'update'} className="diff-wrap">
      <summary>{summary}</summary>
      <dl className="diff" aria-label={`Changes in ${entry.id}`}>
        {changes.map((c) => (
          <div key={c.field} className="diff-row" data-field={c.field}>
            <dt className="mono">{c.field}</dt>
            <dd>
              {'before' in c && <del className="mono">{show(c.before)}</del>}
              {'before' in c && 'after' in c && <span aria-hidden="true"> → </span>}
              {'after' in c && <ins className="mono">{show(c.after)}</ins>}
            </dd>
          </div>
        ))}
      </dl>
    </details>
  );
}

/** `GET /v1/audit/verify`: recomputes the chain in the database; its answer as it came. */
function VerifyChain() {
  const act = useAction();
  const [result, setResult] = useState<Verification | undefined>();
  const verify = () =>
    act.run(async () => {
      setResult(undefined);
      setResult(await api<Verification>('GET', '/v1/audit/verify'));
    });
  return (
    <Card
      title="Hash chain"
      actions={
        <button type="button" onClick={() => void verify()} disabled={act.busy}>
          {act.busy ? 'Verifying…' : 'Verify chain'}
        </button>
      }
    >
      <ErrorBox error={act.error} />
      {act.busy && <Progress label="Verifying the chain…" />}
      {!result && !act.busy && <p className="muted">Recomputes every row's hash from the first to the head (docs/audit.md).</p>}
      {result && (
        <div className="stack">
          <p role="status" data-testid="verify-result" className={result.ok ? 'ok' : 'neg'}>
            {result.ok ? 'Chain intact' : `Chain broken: ${result.problems.length} ${result.problems.length === 1 ? 'problem' : 'problems'}`} — {fmtNum(result.rows)}{' '}
            {result.rows === 1 ? 'row' : 'rows'}, last seq {fmtNum(result.last_seq)}
          </p>
          <p className="muted">
            Head hash <span className="mono">{result.last_hash || '—'}</span> (keep it outside the database to compare later)
          </p>
          {result.problems.length > 0 && (
            <Table
              label="Chain problems"
              rows={result.problems.map((p, i) => ({ seq: p.seq, row: p.id, problem: p.problem, id: `${p.seq ?? ''}-${i}` }))}
              columns={[
                { label: 'Seq', render: (p) => (p.seq === null ? '—' : fmtNum(p.seq)) },
                { label: 'Row', render: (p) => <span className="mono">{p.row ?? '—'}</span> },
                { label: 'Problem', render: (p) => p.problem },
              ]}
            />
          )}
        </div>
      )}
    </Card>
  );
}
