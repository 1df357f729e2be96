import { type FormEvent, useState } from 'react';
import { api, type Body, newIdempotencyKey, type Ok, qs, type Schema, valuesOf } from '../api';
import { Link } from '../router';
import { Badge, Card, ErrorBox, fmtDate, PagedTable, plural, Progress, useAction, useLoad, usePaged } from '../ui';
import { StatusSelect } from './user';

// What the API answers and accepts, from its OpenAPI document: never written by hand here.
type Endpoint = Schema<'WebhookEndpoint'>;
type Delivery = Schema<'WebhookDelivery'>;
type EventType = Body<'/v1/webhook-endpoints', 'post'>['event_types'][number];
type Mail = Ok<'/v1/mail', 'get'>['data'][number];

/**
 * The event types offered as boxes to tick. Each must be one the API accepts (a typo fails to compile);
 * a type added to the API later can still be typed into "Other event types" until it is listed here.
 */
const KNOWN_EVENT_TYPES: EventType[] = [
  'credits.granted', 'credits.low', 'credits.depleted', 'hold.expired', 'job.completed', 'job.failed',
  'subscription.created', 'subscription.renewed', 'subscription.past_due', 'subscription.canceled', 'subscription.trial_ending',
  'payment.succeeded', 'payment.refunded', 'payment.disputed', 'payment.unmatched',
  'budget_guard.alert', 'budget_guard.tripped', 'usage.quota_exhausted',
  'deployment.succeeded', 'deployment.failed', 'code_execution.completed', 'code_execution.failed', 'webhook.test',
];
const DELIVERY_STATUSES = valuesOf<Delivery['status']>({ pending: true, succeeded: true, failed: true, canceled: true });

/** Ticked boxes, or '*' for every event; plus any typed in by hand. */
function EventTypesField({ value, onChange }: { value: string[]; onChange: (v: string[]) => void }) {
  const all = value.includes('*');
  const known = new Set<string>(KNOWN_EVENT_TYPES);
  const [other, setOther] = useState(value.filter((t) => t !== '*' && !known.has(t)).join(', '));
  const toggle = (t: string, on: boolean) => onChange(on ? [...value.filter((v) => v !== '*'), t] : value.filter((v) => v !== t));
  const setOthers = (text: string) => {
    setOther(text);
    const typed = text.split(',').map((s) => s.trim()).filter(Boolean);
    onChange([...value.filter((v) => v === '*' || known.has(v)), ...typed]);
  };
  return (
    <fieldset className="stack">
      <legend>Event types</legend>
      <label className="inline">
        <input type="checkbox" checked={all} onChange={(e) => onChange(e.target.checked ? ['*'] : [])} /> Every event (*)
      </label>
      {!all && (
        <>
          <div className="checks">
            {KNOWN_EVENT_TYPES.map((t) => (
              <label className="inline" key={t}>
                <input type="checkbox" checked={value.includes(t)} onChange={(e) => toggle(t, e.target.checked)} /> {t}
              </label>
            ))}
          </div>
          <label>
            Other event types (comma-separated)
            <input value={other} onChange={(e) => setOthers(e.target.value)} />
          </label>
        </>
      )}
    </fieldset>
  );
}

/** A secret the API shows once (a new endpoint's, or after a rotation). */
function SecretOnce({ title, secret, onClose }: { title: string; secret: string; onClose: () => void }) {
  return (
    <div className="secret" role="status">
      <p>
        {title} Copy the signing secret now: it is shown only once.
      </p>
      <code data-testid="endpoint-secret">{secret}</code>
      <button className="secondary" onClick={onClose}>
        I have copied it
      </button>
    </div>
  );
}

/** Outgoing webhook endpoints: add (secret shown once), enable/disable, rotate, delete; each links to its deliveries. */
export function WebhookEndpoints() {
  const paged = usePaged((cursor) => api<Ok<'/v1/webhook-endpoints', 'get'>>('GET', `/v1/webhook-endpoints${qs({ cursor, limit: 25 })}`), []);
  const [url, setUrl] = useState('');
  const [description, setDescription] = useState('');
  const [types, setTypes] = useState<string[]>(['*']);
  const [secret, setSecret] = useState<{ title: string; secret: string }>();
  const [idem, setIdem] = useState(() => newIdempotencyKey('endpoint'));
  const create = useAction();
  const act = useAction();

  const submit = (e: FormEvent) => {
    e.preventDefault();
    return create.run(async () => {
      const body = { url: url.trim(), event_types: types as EventType[], description: description.trim() || null } satisfies Body<'/v1/webhook-endpoints', 'post'>;
      const res = await api<Ok<'/v1/webhook-endpoints', 'post'>>('POST', '/v1/webhook-endpoints', { body, idempotencyKey: idem });
      setSecret({ title: `Endpoint ${res.url} added.`, secret: res.secret });
      setUrl('');
      setDescription('');
      setIdem(newIdempotencyKey('endpoint'));
      paged.reload();
      // A refused attempt is recorded under its key: the corrected one needs a new key.
    }, () => setIdem(newIdempotencyKey('endpoint')));
  };
  const setActive = (ep: Endpoint, on: boolean) =>
    act.run(async () => {
      await api('PATCH', `/v1/webhook-endpoints/${encodeURIComponent(ep.id)}`, { body: { is_active: on } });
      paged.reload();
    });
  const rotate = (ep: Endpoint) =>
    act.run(async () => {
      if (!window.confirm(`Rotate the signing secret of ${ep.url}? The old one keeps signing for a day.`)) return;
      const res = await api<Ok<'/v1/webhook-endpoints/{id}/rotate-secret', 'post'>>('POST', `/v1/webhook-endpoints/${encodeURIComponent(ep.id)}/rotate-secret`, {
        body: {},
        idempotencyKey: newIdempotencyKey('rotate'),
      });
      setSecret({ title: `New secret for ${res.url}; the previous one keeps signing until ${fmtDate(res.previous_secret_expires_at)}.`, secret: res.secret });
      paged.reload();
    });
  const remove = (ep: Endpoint) =>
    act.run(async () => {
      if (!window.confirm(`Delete the endpoint ${ep.url} and its delivery log?`)) return;
      await api('DELETE', `/v1/webhook-endpoints/${encodeURIComponent(ep.id)}`);
      paged.reload();
    });

  return (
    <div className="stack">
      <h1>Outgoing webhooks</h1>
      <Card title="Add an endpoint">
        <form className="stack" onSubmit={submit} aria-label="Add an endpoint">
          <div className="form-row">
            <label className="grow">
              Endpoint URL
              <input name="url" type="url" required value={url} onChange={(e) => setUrl(e.target.value)} placeholder="https://app.example.com/hooks/tally" />
            </label>
            <label className="grow">
              Description
              <input name="description" maxLength={500} value={description} onChange={(e) => setDescription(e.target.value)} />
            </label>
          </div>
          <EventTypesField value={types} onChange={setTypes} />
          <div>
            <button type="submit" disabled={create.busy}>
              {create.busy ? 'Adding…' : 'Add endpoint'}
            </button>
          </div>
          <ErrorBox error={create.error} />
        </form>
        {secret && <SecretOnce title={secret.title} secret={secret.secret} onClose={() => setSecret(undefined)} />}
      </Card>
      <Card title="Endpoints">
        <ErrorBox error={act.error} />
        <PagedTable
          label="Webhook endpoints"
          paged={paged}
          empty="No endpoints yet."
          columns={[
            { label: 'URL', render: (ep) => <Link to={`/webhooks/${encodeURIComponent(ep.id)}`}>{ep.url}</Link> },
            { label: 'Description', render: (ep) => ep.description ?? '' },
            { label: 'Events', render: (ep) => ep.event_types.join(', ') },
            {
              label: 'State',
              render: (ep) => (
                <>
                  <Badge value={ep.is_active ? 'active' : 'disabled'} />
                  {ep.disabled_reason && <div className="muted">{ep.disabled_reason}</div>}
                  {ep.failing_since && <div className="muted">failing since {fmtDate(ep.failing_since)}</div>}
                </>
              ),
            },
            {
              label: 'Actions',
              render: (ep) => (
                <div className="actions">
                  <button className="secondary" disabled={act.busy} aria-label={`${ep.is_active ? 'Disable' : 'Enable'} ${ep.url}`} onClick={() => void setActive(ep, !ep.is_active)}>
                    {ep.is_active ? 'Disable' : 'Enable'}
                  </button>
                  <button className="secondary" disabled={act.busy} aria-label={`Rotate secret of ${ep.url}`} onClick={() => void rotate(ep)}>
                    Rotate secret
                  </button>
                  <button className="danger" disabled={act.busy} aria-label={`Delete ${ep.url}`} onClick={() => void remove(ep)}>
                    Delete
                  </button>
                </div>
              ),
            },
          ]}
        />
      </Card>
    </div>
  );
}

/** One endpoint: edit its URL, description and event types; send a test; its deliveries with retry and replay. */
export function WebhookEndpointView({ id }: { id: string }) {
  const e = encodeURIComponent(id);
  const ep = useLoad(() => api<Ok<'/v1/webhook-endpoints/{id}', 'get'>>('GET', `/v1/webhook-endpoints/${e}`), [e]);
  const [status, setStatus] = useState('');
  const deliveries = usePaged(
    (cursor) => api<Ok<'/v1/webhook-endpoints/{id}/deliveries', 'get'>>('GET', `/v1/webhook-endpoints/${e}/deliveries${qs({ status, cursor, limit: 25 })}`),
    [e, status],
  );
  const act = useAction();
  const [notice, setNotice] = useState('');
  const sendTest = () =>
    act.run(async () => {
      const res = await api<Ok<'/v1/webhook-endpoints/{id}/test', 'post'>>('POST', `/v1/webhook-endpoints/${e}/test`, { idempotencyKey: newIdempotencyKey('test') });
      setNotice(`Test event ${res.message_id} queued.`);
      deliveries.reload();
    });
  const retry = (d: Delivery) =>
    act.run(async () => {
      await api('POST', `/v1/webhook-deliveries/${encodeURIComponent(d.id)}/retry`, { idempotencyKey: newIdempotencyKey('retry') });
      setNotice(`${d.status === 'succeeded' ? 'Replay' : 'Retry'} of ${d.event_type} (${d.message_id}) queued.`);
      deliveries.reload();
    });

  if (ep.error) return <ErrorBox error={ep.error} />;
  return (
    <div className="stack">
      <div className="page-head">
        <h1>{ep.data ? ep.data.url : 'Webhook endpoint'}</h1>
        <span className="muted mono">{id}</span>
      </div>
      {ep.loading && !ep.data && <Progress />}
      {ep.data && <EndpointEdit key={ep.data.id} endpoint={ep.data} onSaved={ep.reload} />}
      <Card
        title="Deliveries, newest first"
        actions={
          <div className="actions">
            <StatusSelect label="Delivery status" value={status} onChange={setStatus} options={DELIVERY_STATUSES} />
            <button className="secondary" disabled={act.busy} onClick={() => void sendTest()}>
              Send test event
            </button>
          </div>
        }
      >
        {notice && (
          <p className="ok" role="status">
            {notice}
          </p>
        )}
        <ErrorBox error={act.error} />
        <PagedTable
          label="Deliveries"
          paged={deliveries}
          empty="No deliveries with this status."
          columns={[
            { label: 'When', render: (d) => fmtDate(d.created_at) },
            { label: 'Event', render: (d) => d.event_type },
            { label: 'Message', render: (d) => <span className="mono">{d.message_id}</span> },
            { label: 'Status', render: (d) => <Badge value={d.status} /> },
            { label: 'Attempts', render: (d) => plural(d.attempts, 'attempt') },
            {
              label: 'Last answer',
              render: (d) => (
                <>
                  {d.last_status_code !== null && <span>HTTP {d.last_status_code} </span>}
                  {d.last_error && <span className="neg">{d.last_error}</span>}
                  {d.last_attempt_at && <div className="muted">{fmtDate(d.last_attempt_at)}</div>}
                </>
              ),
            },
            {
              label: 'Payload',
              render: (d) => (
                <details>
                  <summary>show</summary>
                  <pre className="payload">{JSON.stringify(d.payload, null, 2)}</pre>
                  {d.last_response && <pre className="payload">{d.last_response}</pre>}
                </details>
              ),
            },
            {
              label: 'Send again',
              render: (d) =>
                d.status === 'pending' ? (
                  <span className="muted">in progress</span>
                ) : (
                  <button className="secondary" disabled={act.busy} aria-label={`${d.status === 'succeeded' ? 'Replay' : 'Retry'} ${d.id}`} onClick={() => void retry(d)}>
                    {d.status === 'succeeded' ? 'Replay' : 'Retry'}
                  </button>
                ),
            },
          ]}
        />
      </Card>
    </div>
  );
}

function EndpointEdit({ endpoint, onSaved }: { endpoint: Endpoint; onSaved: () => void }) {
  const [url, setUrl] = useState(endpoint.url);
  const [description, setDescription] = useState(endpoint.description ?? '');
  const [types, setTypes] = useState<string[]>(endpoint.event_types);
  const { busy, error, run } = useAction();
  const [saved, setSaved] = useState(false);
  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    return run(async () => {
      const body = { url: url.trim(), description: description.trim() || null, event_types: types as EventType[] } satisfies Body<'/v1/webhook-endpoints/{id}', 'patch'>;
      await api('PATCH', `/v1/webhook-endpoints/${encodeURIComponent(endpoint.id)}`, { body });
      setSaved(true);
      onSaved();
    });
  };
  return (
    <Card title="Endpoint">
      <p>
        <Badge value={endpoint.is_active ? 'active' : 'disabled'} /> {endpoint.disabled_reason ?? ''}{' '}
        <span className="muted">
          created {fmtDate(endpoint.created_at)}
          {endpoint.previous_secret_expires_at ? ` · previous secret valid until ${fmtDate(endpoint.previous_secret_expires_at)}` : ''}
        </span>
      </p>
      <form className="stack" onSubmit={submit} aria-label="Edit endpoint">
        <div className="form-row">
          <label className="grow">
            Endpoint URL
            <input name="url" type="url" required value={url} onChange={(ev) => setUrl(ev.target.value)} />
          </label>
          <label className="grow">
            Description
            <input name="description" maxLength={500} value={description} onChange={(ev) => setDescription(ev.target.value)} />
          </label>
        </div>
        <EventTypesField value={types} onChange={setTypes} />
        <div className="form-row">
          <button type="submit" disabled={busy}>
            {busy ? 'Saving…' : 'Save endpoint'}
          </button>
          {saved && !busy && !error && (
            <span className="ok" role="status">
              Saved.
            </span>
          )}
        </div>
        <ErrorBox error={error} />
      </form>
    </Card>
  );
}

/**
 * The mail outbox (GET /v1/mail): what Tally mailed, to whom, and whether it went. In development
 * (no SMTP_URL) mail goes to the log, and its text can be read here.
 */
export function MailOutbox() {
  const [input, setInput] = useState('');
  const [to, setTo] = useState('');
  const paged = usePaged((cursor) => api<Ok<'/v1/mail', 'get'>>('GET', `/v1/mail${qs({ to, cursor, limit: 25 })}`), [to]);
  const [open, setOpen] = useState<string | null>(null);
  return (
    <div className="stack">
      <div className="page-head">
        <h1>Mail outbox</h1>
        <form
          className="search"
          role="search"
          onSubmit={(ev) => {
            ev.preventDefault();
            setTo(input.trim());
          }}
        >
          <input aria-label="Recipient" type="email" placeholder="to: e-mail" value={input} onChange={(ev) => setInput(ev.target.value)} />
          <button type="submit">Filter</button>
        </form>
      </div>
      {open && <MailText id={open} onClose={() => setOpen(null)} />}
      <Card title={to ? `Mail to ${to}` : 'All mail, newest first'}>
        <PagedTable
          label="Mail"
          paged={paged}
          empty="No mail."
          columns={[
            { label: 'When', render: (m: Mail) => fmtDate(m.created_at) },
            { label: 'To', render: (m: Mail) => (m.user_id ? <Link to={`/users/${encodeURIComponent(m.user_id)}`}>{m.to}</Link> : m.to) },
            { label: 'Template', render: (m: Mail) => <code>{m.template}</code> },
            { label: 'Subject', render: (m: Mail) => m.subject },
            { label: 'Status', render: (m: Mail) => <Badge value={m.status} /> },
            { label: 'Via', render: (m: Mail) => m.transport ?? '—' },
            { label: 'Error', render: (m: Mail) => m.last_error ?? '' },
            {
              label: 'Text',
              render: (m: Mail) => (
                <button className="secondary" aria-label={`Read ${m.subject} to ${m.to}`} onClick={() => setOpen(m.id)}>
                  Read
                </button>
              ),
            },
          ]}
        />
      </Card>
    </div>
  );
}

function MailText({ id, onClose }: { id: string; onClose: () => void }) {
  const mail = useLoad(() => api<Ok<'/v1/mail/{id}', 'get'>>('GET', `/v1/mail/${encodeURIComponent(id)}`), [id]);
  return (
    <Card
      title={mail.data ? mail.data.subject : 'Mail'}
      actions={
        <button className="secondary" onClick={onClose}>
          Close
        </button>
      }
    >
      <ErrorBox error={mail.error} />
      {mail.loading && <Progress />}
      {mail.data && (
        <>
          <p className="muted">
            To {mail.data.to} · {mail.data.template} · {fmtDate(mail.data.created_at)}
          </p>
          {mail.data.text === null ? (
            <p className="muted">The text is not kept once an SMTP server took the mail.</p>
          ) : (
            <pre className="payload" data-testid="mail-text">
              {mail.data.text}
            </pre>
          )}
        </>
      )}
    </Card>
  );
}
