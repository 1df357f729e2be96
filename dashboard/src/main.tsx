import { type FormEvent, StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { api, type Ok, type Session, sessionStore, setUnauthorizedHandler } from './api';
import { Analytics } from './pages/analytics';
import { Audit } from './pages/audit';
import { Plans } from './pages/catalog';
import { Logs } from './pages/logs';
import { Jobs, Overview, Payments, Reconcile, Users } from './pages/operator';
import { Storage } from './pages/storage';
import { UserView } from './pages/user';
import { MailOutbox, WebhookEndpoints, WebhookEndpointView } from './pages/webhooks';
import { WorkspaceView, Workspaces } from './pages/workspaces';
import { Link, navigate, useLocation } from './router';
import { ErrorBox, Progress, toApiError, useAction } from './ui';
import './styles.css';

function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [mode, setMode] = useState<'user' | 'service'>('user');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [serviceKey, setServiceKey] = useState('');
  const { busy, error, run } = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    return run(async () => {
      if (mode === 'user') {
        const res = await api<Ok<'/v1/auth/login', 'post'>>('POST', '/v1/auth/login', {
          body: { email, password },
          token: null,
        });
        // A user may have no e-mail (created by the service); one who signed in with it has this one.
        onSignedIn({ kind: 'user', token: res.access_token, user: { id: res.user.id, email: res.user.email ?? email } });
      } else {
        // A service-only read proves the key is the service key (a user's key or JWT gets 403 here).
        await api('GET', '/v1/users?limit=1', { token: serviceKey.trim() });
        onSignedIn({ kind: 'service', token: serviceKey.trim() });
      }
    });
  };
  return (
    <main className="signin">
      <h1>Tally</h1>
      <div className="tabs" role="tablist">
        <button role="tab" aria-selected={mode === 'user'} className={mode === 'user' ? 'tab active' : 'tab'} onClick={() => setMode('user')}>
          Customer sign-in
        </button>
        <button role="tab" aria-selected={mode === 'service'} className={mode === 'service' ? 'tab active' : 'tab'} onClick={() => setMode('service')}>
          Operator (service key)
        </button>
      </div>
      <form onSubmit={submit} className="card stack">
        {mode === 'user' ? (
          <>
            <label>
              E-mail
              <input name="email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
            </label>
            <label>
              Password
              <input name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
            </label>
          </>
        ) : (
          <label>
            Service key
            <input name="service-key" type="password" autoComplete="off" required placeholder="tsk_…" value={serviceKey} onChange={(e) => setServiceKey(e.target.value)} />
            <small className="muted">Kept in this browser tab’s session only; closing the tab forgets it.</small>
          </label>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {busy && <Progress label="Signing in…" />}
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

const OPERATOR_NAV: [string, string][] = [
  ['/', 'Overview'],
  ['/users', 'Users'],
  ['/workspaces', 'Workspaces'],
  ['/plans', 'Plans'],
  ['/payments', 'Payments'],
  ['/jobs', 'Jobs'],
  ['/webhooks', 'Webhooks'],
  ['/storage', 'Storage'],
  ['/mail', 'Mail'],
  ['/logs', 'Logs'],
  ['/audit', 'Audit'],
  ['/analytics', 'Analytics'],
  ['/reconcile', 'Reconcile'],
];

function App() {
  const [session, setSession] = useState<Session | null>(sessionStore.get);
  const [menu, setMenu] = useState(false);
  const { path, search } = useLocation();
  const signOut = () => {
    const s = sessionStore.get();
    sessionStore.set(null);
    setSession(null);
    // A user's session is ended server-side too; the service key has no session to end.
    if (s?.kind === 'user') void api('POST', '/v1/auth/logout', { token: s.token }).catch(() => undefined);
  };
  useEffect(() => setUnauthorizedHandler(signOut), []);
  useEffect(() => setMenu(false), [path]);

  if (!session) {
    return (
      <SignIn
        onSignedIn={(s) => {
          sessionStore.set(s);
          setSession(s);
          navigate('/');
        }}
      />
    );
  }
  const operator = session.kind === 'service';
  const nav: [string, string][] = operator ? OPERATOR_NAV : [['/', 'My account']];
  const userPath = /^\/users\/([^/]+)$/.exec(path)?.[1];
  const workspacePath = /^\/workspaces\/([^/]+)$/.exec(path)?.[1];
  const endpointPath = /^\/webhooks\/([^/]+)$/.exec(path)?.[1];
  let page;
  if (userPath !== undefined) page = <UserView key={userPath} userId={decodeURIComponent(userPath)} operator={operator} />;
  else if (workspacePath !== undefined) page = <WorkspaceView key={workspacePath} id={decodeURIComponent(workspacePath)} operator={operator} />;
  else if (!operator) page = <UserView key={session.user.id} userId={session.user.id} operator={false} />;
  else if (path === '/') page = <Overview />;
  else if (path === '/users') page = <Users />;
  else if (path === '/workspaces') page = <Workspaces />;
  else if (path === '/plans') page = <Plans />;
  else if (path === '/webhooks') page = <WebhookEndpoints />;
  else if (endpointPath !== undefined) page = <WebhookEndpointView key={endpointPath} id={decodeURIComponent(endpointPath)} />;
  else if (path === '/storage') page = <Storage key={search.toString()} bucket={search.get('bucket') ?? ''} prefix={search.get('prefix') ?? ''} />;
  else if (path === '/mail') page = <MailOutbox />;
  else if (path === '/payments') page = <Payments key={search.toString()} tab={search.get('tab') ?? ''} status={search.get('status') ?? ''} />;
  else if (path === '/jobs') page = <Jobs key={search.get('status') ?? ''} status={search.get('status') ?? ''} />;
  else if (path === '/reconcile') page = <Reconcile />;
  else if (path === '/logs') {
    const filters = { status: search.get('status') ?? '', route: search.get('route') ?? '', user_id: search.get('user_id') ?? '', request_id: search.get('request_id') ?? '' };
    page = <Logs key={search.toString()} filters={filters} />;
  }
  else if (path === '/audit') {
    const q = (k: string) => search.get(k) ?? '';
    const filters = { actor_kind: q('actor_kind'), actor_id: q('actor_id'), action: q('action'), target_table: q('target_table'), target_id: q('target_id'), request_id: q('request_id'), from: q('from'), to: q('to') };
    page = <Audit key={search.toString()} filters={filters} />;
  }
  else if (path === '/analytics') {
    const q = (k: string) => search.get(k) ?? '';
    const filters = { event: q('event'), user_id: q('user_id'), anonymous_id: q('anonymous_id'), session_id: q('session_id'), from: q('from'), to: q('to') };
    page = <Analytics key={search.toString()} filters={filters} />;
  }
  else page = <ErrorBox error={toApiError(new Error(`No page at /dashboard${path}`))} />;

  return (
    <div className="layout">
      <header className="topbar">
        <button className="menu-button secondary" aria-label="Menu" aria-expanded={menu} onClick={() => setMenu((m) => !m)}>
          ☰
        </button>
        <strong className="brand">Tally {operator ? 'operator' : ''}</strong>
        <span className="who muted">{operator ? 'service key' : session.user.email}</span>
        <button className="secondary" onClick={signOut}>
          Sign out
        </button>
      </header>
      <nav className={menu ? 'sidebar open' : 'sidebar'} aria-label="Pages">
        {nav.map(([to, label]) => (
          <Link key={to} to={to} className={path === to ? 'active' : ''} aria-current={path === to ? 'page' : undefined}>
            {label}
          </Link>
        ))}
      </nav>
      <main className="content">{page}</main>
    </div>
  );
}

const root = document.getElementById('root');
if (!root) throw new Error('dashboard: the page has no #root element');
createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
