import { type DependencyList, type ReactNode, useCallback, useEffect, useRef, useState } from 'react';
import { ApiError, type Page } from './api';

/** Loads data; keeps the error the API answered so it is shown, never swallowed. */
export function useLoad<T>(load: () => Promise<T>, deps: DependencyList) {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: true });
  const seq = useRef(0);
  const reload = useCallback(() => {
    const n = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => n === seq.current && setState({ data, loading: false }),
      (error: unknown) => n === seq.current && setState({ error: toApiError(error), loading: false }),
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  useEffect(reload, [reload]);
  return { ...state, reload };
}

/**
 * A user action (a form submit, a button): busy while it runs, and the error the API answered kept
 * for the ErrorBox, never swallowed. `onError` runs after it is set (a form may need a new key).
 */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | undefined>();
  const run = useCallback(async (action: () => Promise<void>, onError?: (e: ApiError) => void) => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (err) {
      const e = toApiError(err);
      setError(e);
      onError?.(e);
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, setError, run };
}

export const toApiError = (e: unknown): ApiError =>
  e instanceof ApiError ? e : new ApiError(0, 'client_error', e instanceof Error ? e.message : String(e));

/** A cursor-paged list: "Load more" appends the next page. */
export function usePaged<T>(load: (cursor: string | null) => Promise<Page<T>>, deps: DependencyList) {
  const [rows, setRows] = useState<T[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | undefined>();
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const fetchPage = useCallback(
    (cursor: string | null) => {
      const n = ++seq.current;
      setLoading(true);
      setError(undefined);
      load(cursor).then(
        (page) => {
          if (n !== seq.current) return;
          setRows((r) => (cursor ? [...r, ...page.data] : page.data));
          setNext(page.next_cursor);
          setLoading(false);
        },
        (e: unknown) => {
          if (n !== seq.current) return;
          setError(toApiError(e));
          setLoading(false);
        },
      );
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    deps,
  );
  useEffect(() => {
    setRows([]);
    fetchPage(null);
  }, [fetchPage]);
  return { rows, error, loading, more: next ? () => fetchPage(next) : null, reload: () => fetchPage(null) };
}

/** Shown while anything is loading: a bar that moves, with a label for screen readers. */
export function Progress({ label = 'Loading…' }: { label?: string }) {
  return (
    <div className="progress" role="progressbar" aria-label={label} aria-busy="true">
      <div className="progress-bar" />
      <span className="progress-label">{label}</span>
    </div>
  );
}

export function ErrorBox({ error }: { error?: ApiError | undefined }) {
  if (!error) return null;
  return (
    <div className="error" role="alert">
      <strong>{error.message}</strong>
      <span className="muted">
        {' '}
        ({error.code}
        {error.status ? `, HTTP ${error.status}` : ''}
        {error.requestId ? `, request ${error.requestId}` : ''})
      </span>
    </div>
  );
}

export function Card({ title, children, actions }: { title: string; children: ReactNode; actions?: ReactNode }) {
  return (
    <section className="card" aria-label={title}>
      <header className="card-head">
        <h2>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

export function Stat({ label, value, testId }: { label: string; value: ReactNode; testId?: string }) {
  return (
    <div className="stat">
      <div className="stat-label">{label}</div>
      <div className="stat-value" data-testid={testId}>
        {value}
      </div>
    </div>
  );
}

export interface Column<T> {
  label: string;
  render: (row: T) => ReactNode;
}

export function Table<T extends { id?: string }>({
  rows,
  columns,
  empty = 'Nothing here yet.',
  label,
}: {
  rows: T[];
  columns: Column<T>[];
  empty?: string;
  label: string;
}) {
  if (rows.length === 0) return <p className="muted">{empty}</p>;
  return (
    <div className="table-wrap">
      <table aria-label={label}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c.label}>{c.label}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={r.id ?? i}>
              {columns.map((c) => (
                <td key={c.label} data-label={c.label}>
                  {c.render(r)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** A list loaded at once (`useLoad` of a `{ data }` answer), with its progress and error. */
export function LoadedTable<T extends { id?: string }>(props: {
  loaded: { data?: { data: T[] } | undefined; error?: ApiError | undefined; loading: boolean };
  columns: Column<T>[];
  label: string;
  empty?: string;
  /** An error of an action on the list (revoke, say), shown in place of the load's. */
  error?: ApiError | undefined;
}) {
  const { loaded } = props;
  return (
    <>
      <ErrorBox error={props.error ?? loaded.error} />
      {loaded.loading && <Progress />}
      {loaded.data && (
        <Table rows={loaded.data.data} columns={props.columns} label={props.label} {...(props.empty ? { empty: props.empty } : {})} />
      )}
    </>
  );
}

/** A paged list with its progress, error and "Load more". */
export function PagedTable<T extends { id?: string }>(props: {
  paged: ReturnType<typeof usePaged<T>>;
  columns: Column<T>[];
  label: string;
  empty?: string;
}) {
  const { paged } = props;
  return (
    <>
      <ErrorBox error={paged.error} />
      <Table rows={paged.rows} columns={props.columns} label={props.label} {...(props.empty ? { empty: props.empty } : {})} />
      {paged.loading && <Progress />}
      {paged.more && !paged.loading && (
        <button className="secondary" onClick={paged.more}>
          Load more
        </button>
      )}
    </>
  );
}

export const fmtDate = (s: string | null | undefined): string => (s ? new Date(s).toLocaleString() : '—');
export const fmtNum = (n: number): string => n.toLocaleString();
export const fmtMoney = (minor: number, currency: string): string => {
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency.toUpperCase() }).format(minor / 100);
  } catch {
    return `${(minor / 100).toFixed(2)} ${currency}`;
  }
};

/** "1 day", "2 days", "1 delivery", "3 deliveries". */
export const plural = (n: number, one: string, many = `${one}s`): string => `${fmtNum(n)} ${n === 1 ? one : many}`;

/** A plan's price for one interval: null means the interval is not offered; 0 is free. */
export const fmtPrice = (minor: number | null, currency: string): string =>
  minor === null ? 'not offered' : minor === 0 ? 'free' : fmtMoney(minor, currency);

/** Axis ticks that stay short (1.2K, 3.4M), so a chart's y-axis never needs more room than it has. */
export const fmtAxis = (n: number): string => new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 }).format(n);

export function Badge({ value }: { value: string }) {
  return <span className={`badge badge-${value}`}>{value}</span>;
}

/**
 * A time filter's two faces: the URL and the API carry an ISO instant; a datetime-local input shows
 * it in the browser's zone, to the second. Text that is no date is passed on as typed, so the API's
 * message says what is wrong with it.
 */
export function localInput(iso: string): string {
  const d = new Date(iso);
  if (iso === '' || Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
export function isoFromLocal(local: string): string {
  const d = new Date(local);
  return local === '' || Number.isNaN(d.getTime()) ? local : d.toISOString();
}
