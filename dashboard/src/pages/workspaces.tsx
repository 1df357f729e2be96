import { type FormEvent, useState } from 'react';
import { api, type Body, newIdempotencyKey, type Ok, qs, valuesOf } from '../api';
import { Link } from '../router';
import { Badge, Card, ErrorBox, fmtDate, fmtNum, PagedTable, Progress, Stat, Table, useAction, useLoad, usePaged } from '../ui';

type Member = Ok<'/v1/workspaces/{id}/members', 'get'>['data'][number];
type AssignableRole = Body<'/v1/workspaces/{id}/members', 'post'>['role'];
/** The roles a member can be given (the owner is the workspace's creator, never assigned). */
const ROLES = valuesOf<AssignableRole>({ admin: true, member: true, viewer: true });

/** Every workspace (the service's list), newest first; each links to its members and pool. */
export function Workspaces() {
  const paged = usePaged((cursor) => api<Ok<'/v1/workspaces', 'get'>>('GET', `/v1/workspaces${qs({ cursor, limit: 25 })}`), []);
  return (
    <div className="stack">
      <h1>Workspaces</h1>
      <Card title="Workspaces, newest first">
        <PagedTable
          label="Workspaces"
          paged={paged}
          empty="No workspaces yet."
          columns={[
            { label: 'Name', render: (w) => <Link to={`/workspaces/${encodeURIComponent(w.id)}`}>{w.name}</Link> },
            { label: 'Slug', render: (w) => w.slug },
            { label: 'Owner', render: (w) => <Link to={`/users/${encodeURIComponent(w.owner_id)}`}>{w.owner_id}</Link> },
            { label: 'State', render: (w) => <Badge value={w.is_active ? 'active' : 'inactive'} /> },
            { label: 'Created', render: (w) => fmtDate(w.created_at) },
          ]}
        />
      </Card>
    </div>
  );
}

/**
 * One workspace: its pool's balance and ledger, and its members and their roles. The operator manages
 * the roster here; a member (customer) sees what the API lets them see, read-only.
 */
export function WorkspaceView({ id, operator }: { id: string; operator: boolean }) {
  const w = encodeURIComponent(id);
  const ws = useLoad(() => api<Ok<'/v1/workspaces/{id}', 'get'>>('GET', `/v1/workspaces/${w}`), [w]);
  const balance = useLoad(() => api<Ok<'/v1/workspaces/{id}/balance', 'get'>>('GET', `/v1/workspaces/${w}/balance`), [w]);
  const members = usePaged(
    (cursor) => api<Ok<'/v1/workspaces/{id}/members', 'get'>>('GET', `/v1/workspaces/${w}/members${qs({ cursor, limit: 50 })}`),
    [w],
  );
  const ledger = usePaged(
    (cursor) => api<Ok<'/v1/workspaces/{id}/transactions', 'get'>>('GET', `/v1/workspaces/${w}/transactions${qs({ cursor, limit: 25 })}`),
    [w],
  );
  if (ws.error) return <ErrorBox error={ws.error} />;
  return (
    <div className="stack">
      <div className="page-head">
        <h1>{ws.data ? ws.data.name : 'Workspace'}</h1>
        <span className="muted mono">{id}</span>
      </div>
      {ws.loading && !ws.data && <Progress />}
      {ws.data && (
        <p className="muted">
          {ws.data.slug} · owner <Link to={`/users/${encodeURIComponent(ws.data.owner_id)}`}>{ws.data.owner_id}</Link> ·{' '}
          <Badge value={ws.data.is_active ? 'active' : 'inactive'} />
          {ws.data.description ? ` · ${ws.data.description}` : ''}
        </p>
      )}
      <Card title="Pool">
        <ErrorBox error={balance.error} />
        {balance.loading && !balance.data && <Progress />}
        {balance.data && (
          <>
            <div className="stats">
              <Stat label="Pool balance" value={fmtNum(balance.data.balance)} testId="pool-balance" />
              <Stat label="Available" value={fmtNum(balance.data.available)} testId="pool-available" />
              <Stat label="Held" value={fmtNum(balance.data.held)} />
              <Stat label="Credited (lifetime)" value={fmtNum(balance.data.total_credited)} />
              <Stat label="Spent (lifetime)" value={fmtNum(balance.data.total_spent)} />
            </div>
            <h3>Grants</h3>
            <Table
              label="Pool grants"
              rows={balance.data.grants}
              empty="No credits left in any grant."
              columns={[
                { label: 'Class', render: (g) => g.class },
                { label: 'Remaining', render: (g) => fmtNum(g.remaining) },
                { label: 'Expires', render: (g) => fmtDate(g.expires_at) },
              ]}
            />
          </>
        )}
      </Card>
      <Members workspaceId={id} members={members} manage={operator} />
      <Card title="Pool ledger">
        <PagedTable
          label="Pool ledger"
          paged={ledger}
          empty="No entries yet."
          columns={[
            { label: 'When', render: (t) => fmtDate(t.created_at) },
            { label: 'Type', render: (t) => <Badge value={t.type} /> },
            { label: 'Amount', render: (t) => <span className={t.amount < 0 ? 'neg' : 'pos'}>{fmtNum(t.amount)}</span> },
            { label: 'Balance after', render: (t) => fmtNum(t.balance_after) },
            { label: 'Reason', render: (t) => t.reason ?? '' },
          ]}
        />
      </Card>
    </div>
  );
}

/** The roster: add a member, change a role, remove one (the API says who may). */
function Members({ workspaceId, members, manage }: { workspaceId: string; members: ReturnType<typeof usePaged<Member>>; manage: boolean }) {
  const w = encodeURIComponent(workspaceId);
  const [userId, setUserId] = useState('');
  const [role, setRole] = useState<AssignableRole>('member');
  const [idem, setIdem] = useState(() => newIdempotencyKey('member'));
  const add = useAction();
  const act = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    return add.run(
      async () => {
        await api('POST', `/v1/workspaces/${w}/members`, { body: { user_id: userId.trim(), role } satisfies Body<'/v1/workspaces/{id}/members', 'post'>, idempotencyKey: idem });
        setUserId('');
        setIdem(newIdempotencyKey('member'));
        members.reload();
      },
      // A refused attempt is recorded under its key: the corrected one needs a new key.
      () => setIdem(newIdempotencyKey('member')),
    );
  };
  const changeRole = (m: Member, to: AssignableRole) =>
    act.run(async () => {
      await api('PATCH', `/v1/workspaces/${w}/members/${encodeURIComponent(m.user_id)}`, { body: { role: to } });
      members.reload();
    });
  const remove = (m: Member) =>
    act.run(async () => {
      if (!window.confirm(`Remove ${m.user_id} from the workspace?`)) return;
      await api('DELETE', `/v1/workspaces/${w}/members/${encodeURIComponent(m.user_id)}`);
      members.reload();
    });
  return (
    <Card title="Members">
      {manage && (
        <form className="form-row" onSubmit={submit} aria-label="Add a member">
          <label className="grow">
            User id
            <input name="member-user-id" required value={userId} onChange={(e) => setUserId(e.target.value)} placeholder="usr_…" />
          </label>
          <label>
            Role
            <select value={role} onChange={(e) => setRole(e.target.value as AssignableRole)}>
              {ROLES.map((r) => (
                <option key={r}>{r}</option>
              ))}
            </select>
          </label>
          <button type="submit" disabled={add.busy}>
            {add.busy ? 'Adding…' : 'Add member'}
          </button>
        </form>
      )}
      <ErrorBox error={add.error ?? act.error} />
      <PagedTable
        label="Members"
        paged={{ ...members, rows: members.rows.map((m) => ({ ...m, id: m.user_id })) }}
        empty="No members."
        columns={[
          { label: 'User', render: (m) => <Link to={`/users/${encodeURIComponent(m.user_id)}`}>{m.user_id}</Link> },
          {
            label: 'Role',
            render: (m) =>
              m.role === 'owner' || !manage ? (
                <Badge value={m.role} />
              ) : (
                <select aria-label={`Role of ${m.user_id}`} value={m.role} disabled={act.busy} onChange={(e) => void changeRole(m, e.target.value as AssignableRole)}>
                  {ROLES.map((r) => (
                    <option key={r}>{r}</option>
                  ))}
                </select>
              ),
          },
          { label: 'Invited by', render: (m) => m.invited_by ?? '—' },
          { label: 'Joined', render: (m) => fmtDate(m.joined_at) },
          {
            label: 'Remove',
            render: (m) =>
              m.role === 'owner' || !manage ? (
                ''
              ) : (
                <button className="danger" disabled={act.busy} aria-label={`Remove ${m.user_id}`} onClick={() => void remove(m)}>
                  Remove
                </button>
              ),
          },
        ]}
      />
    </Card>
  );
}
