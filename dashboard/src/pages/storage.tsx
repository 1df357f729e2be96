import { type FormEvent, useState } from 'react';
import { api, type Body, newIdempotencyKey, type Ok, qs } from '../api';
import { Link } from '../router';
import { Badge, Card, ErrorBox, fmtDate, fmtNum, LoadedTable, PagedTable, Progress, useAction, useLoad, usePaged } from '../ui';

// What the API answers and accepts, from its OpenAPI document: never written by hand here.
type Bucket = Ok<'/v1/storage/buckets', 'get'>['data'][number];
type StoredObject = Ok<'/v1/storage/objects/{bucket}', 'get'>['data'][number];
type BucketCreate = Body<'/v1/storage/buckets', 'post'>;
type OwnerRule = Bucket['owner_rule'];

/** 1536 → "1.5 KiB". */
export const fmtBytes = (n: number): string => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${fmtNum(n)} B` : `${v.toLocaleString(undefined, { maximumFractionDigits: 1 })} ${units[i]}`;
};

/** "10 MiB", "1.5GB", "2048" → bytes; "" → null (no limit). */
export function parseBytes(text: string): number | null {
  const t = text.trim();
  if (t === '') return null;
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?$/i.exec(t);
  if (!m) throw new Error(`“${text}” is not a size (e.g. 1048576, 10 MiB, 2 GiB)`);
  const power = { b: 0, k: 1, m: 2, g: 3, t: 4 }[(m[2] ?? 'b').toLowerCase().charAt(0) as 'b' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * 1024 ** power);
}
const bytesText = (n: number | null): string => (n === null ? '' : fmtBytes(n).replace(/,/g, ''));

/** Buckets (create, edit, delete), a browser of one bucket's objects by prefix, and usage against the quota. */
export function Storage({ bucket: initialBucket, prefix: initialPrefix }: { bucket: string; prefix: string }) {
  const buckets = useLoad(() => api<Ok<'/v1/storage/buckets', 'get'>>('GET', '/v1/storage/buckets'), []);
  const [editing, setEditing] = useState<Bucket | 'new' | null>(null);
  const act = useAction();
  const remove = (b: Bucket) =>
    act.run(async () => {
      if (!window.confirm(`Delete the bucket ${b.id}? Only an empty bucket can be deleted.`)) return;
      await api('DELETE', `/v1/storage/buckets/${encodeURIComponent(b.id)}`);
      buckets.reload();
    });
  const selected = initialBucket || buckets.data?.data[0]?.id || '';
  return (
    <div className="stack">
      <div className="page-head">
        <h1>Storage</h1>
        <button onClick={() => setEditing('new')}>New bucket</button>
      </div>
      {editing && (
        <BucketForm
          key={editing === 'new' ? 'new' : editing.id}
          bucket={editing === 'new' ? null : editing}
          onDone={() => {
            setEditing(null);
            buckets.reload();
          }}
          onCancel={() => setEditing(null)}
        />
      )}
      <Card title="Buckets">
        <LoadedTable
          label="Buckets"
          loaded={buckets}
          error={act.error}
          empty="No buckets yet."
          columns={[
            {
              label: 'Bucket',
              render: (b) => <Link to={`/storage?bucket=${encodeURIComponent(b.id)}`}>{b.id}</Link>,
            },
            { label: 'Access', render: (b) => <Badge value={b.public ? 'public' : 'private'} /> },
            { label: 'File size limit', render: (b) => (b.file_size_limit === null ? 'none' : fmtBytes(b.file_size_limit)) },
            { label: 'Allowed types', render: (b) => b.allowed_mime_types?.join(', ') ?? 'any' },
            { label: 'Owner rule', render: (b) => b.owner_rule },
            { label: 'Quota per owner', render: (b) => (b.user_quota_bytes === null ? 'none' : fmtBytes(b.user_quota_bytes)) },
            {
              label: 'Actions',
              render: (b) => (
                <div className="actions">
                  <button className="secondary" aria-label={`Edit ${b.id}`} onClick={() => setEditing(b)}>
                    Edit
                  </button>
                  <button className="danger" disabled={act.busy} aria-label={`Delete ${b.id}`} onClick={() => void remove(b)}>
                    Delete
                  </button>
                </div>
              ),
            },
          ]}
        />
      </Card>
      {selected && buckets.data && (
        <Objects
          key={`${selected} ${initialPrefix}`}
          bucket={buckets.data.data.find((b) => b.id === selected)}
          bucketId={selected}
          initialPrefix={initialPrefix}
        />
      )}
      {selected && <OwnerUsage key={selected} bucketId={selected} />}
      <StorageCheck />
    </div>
  );
}

/** GET /v1/storage/buckets/:id/usage: each owner's bytes used and reserved, against the bucket's quota. */
function OwnerUsage({ bucketId }: { bucketId: string }) {
  const paged = usePaged(
    async (cursor) => {
      const page = await api<Ok<'/v1/storage/buckets/{id}/usage', 'get'>>('GET', `/v1/storage/buckets/${encodeURIComponent(bucketId)}/usage${qs({ cursor, limit: 50 })}`);
      return { ...page, data: page.data.map((u) => ({ ...u, id: u.owner_id })) }; // one row per owner in a bucket
    },
    [bucketId],
  );
  return (
    <Card title={`Usage per owner in ${bucketId}`}>
      <PagedTable
        label="Usage per owner"
        paged={paged}
        empty="Nothing stored or reserved yet."
        columns={[
          { label: 'Owner', render: (u) => <Link to={`/storage?bucket=${encodeURIComponent(bucketId)}&prefix=${encodeURIComponent(`${u.owner_id}/`)}`}>{u.owner_id}</Link> },
          { label: 'Used', render: (u) => fmtBytes(u.used_bytes) },
          { label: 'Reserved (uploads in flight)', render: (u) => fmtBytes(u.reserved_bytes) },
          {
            label: 'Quota',
            render: (u) => (u.quota_bytes === null ? 'none' : `${fmtBytes(u.quota_bytes)} (${Math.round(((u.used_bytes + u.reserved_bytes) / Math.max(u.quota_bytes, 1)) * 100)}% taken)`),
          },
          { label: 'Updated', render: (u) => fmtDate(u.updated_at) },
        ]}
      />
    </Card>
  );
}

function BucketForm({ bucket, onDone, onCancel }: { bucket: Bucket | null; onDone: () => void; onCancel: () => void }) {
  const [id, setId] = useState('');
  const [isPublic, setPublic] = useState(bucket?.public ?? false);
  const [sizeLimit, setSizeLimit] = useState(bytesText(bucket?.file_size_limit ?? null));
  const [types, setTypes] = useState(bucket?.allowed_mime_types?.join(', ') ?? '');
  const [ownerRule, setOwnerRule] = useState<OwnerRule>(bucket?.owner_rule ?? 'owner_folder');
  const [quota, setQuota] = useState(bytesText(bucket?.user_quota_bytes ?? null));
  // A refused attempt is recorded under its key: the next attempt (the input corrected) needs a new one.
  const [idem, setIdem] = useState(() => newIdempotencyKey('bucket'));
  const { busy, error, run } = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    return run(async () => {
      const list = types.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
      const fields = {
        public: isPublic,
        file_size_limit: parseBytes(sizeLimit),
        allowed_mime_types: list.length ? list : null,
        owner_rule: ownerRule,
        user_quota_bytes: parseBytes(quota),
      };
      if (bucket) await api('PATCH', `/v1/storage/buckets/${encodeURIComponent(bucket.id)}`, { body: fields });
      else await api('POST', '/v1/storage/buckets', { body: { id: id.trim(), ...fields } satisfies BucketCreate, idempotencyKey: idem });
      onDone();
    }, () => setIdem(newIdempotencyKey('retry')));
  };
  const title = bucket ? `Edit bucket ${bucket.id}` : 'New bucket';
  return (
    <Card title={title}>
      <form className="stack" onSubmit={submit} aria-label={title}>
        <div className="form-row">
          {!bucket && (
            <label>
              Bucket id
              <input name="bucket-id" required pattern="[a-z0-9][a-z0-9._\-]{1,62}" value={id} onChange={(e) => setId(e.target.value)} placeholder="user-files" />
            </label>
          )}
          <label>
            File size limit
            <input name="size-limit" value={sizeLimit} onChange={(e) => setSizeLimit(e.target.value)} placeholder="empty: none; e.g. 50 MiB" />
          </label>
          <label className="grow">
            Allowed types (comma-separated)
            <input name="types" value={types} onChange={(e) => setTypes(e.target.value)} placeholder="empty: any; e.g. image/*, application/pdf" />
          </label>
          <label>
            Quota per owner
            <input name="quota" value={quota} onChange={(e) => setQuota(e.target.value)} placeholder="empty: none; e.g. 1 GiB" />
          </label>
          <label>
            Owner rule
            <select value={ownerRule} onChange={(e) => setOwnerRule(e.target.value as OwnerRule)}>
              <option value="owner_folder">owner_folder (first segment = owner)</option>
              <option value="none">none (service only)</option>
            </select>
          </label>
          <label className="inline">
            <input type="checkbox" checked={isPublic} onChange={(e) => setPublic(e.target.checked)} /> Public (read without credentials)
          </label>
        </div>
        <div className="form-row">
          <button type="submit" disabled={busy}>
            {busy ? 'Saving…' : bucket ? 'Save bucket' : 'Create bucket'}
          </button>
          <button type="button" className="secondary" onClick={onCancel}>
            Cancel
          </button>
        </div>
        <ErrorBox error={error} />
      </form>
    </Card>
  );
}

/** A bucket's objects under a prefix, in path order; each segment of a path narrows the prefix to it. */
function Objects({ bucket, bucketId, initialPrefix }: { bucket: Bucket | undefined; bucketId: string; initialPrefix: string }) {
  const b = encodeURIComponent(bucketId);
  const [input, setInput] = useState(initialPrefix);
  const [prefix, setPrefix] = useState(initialPrefix);
  const paged = usePaged((cursor) => api<Ok<'/v1/storage/objects/{bucket}', 'get'>>('GET', `/v1/storage/objects/${b}${qs({ prefix, cursor, limit: 50 })}`), [b, prefix]);
  const act = useAction();
  const go = (p: string) => {
    setInput(p);
    setPrefix(p);
  };
  const objectPath = (o: StoredObject) => o.path.split('/').map(encodeURIComponent).join('/');
  const download = (o: StoredObject) =>
    act.run(async () => {
      const link = await api<Ok<'/v1/storage/sign/{bucket}/{*}', 'post'>>('POST', `/v1/storage/sign/${b}/${objectPath(o)}`, {
        body: { action: 'download', expires_in: 300 },
      });
      window.open(link.url, '_blank', 'noopener');
    });
  const remove = (o: StoredObject) =>
    act.run(async () => {
      if (!window.confirm(`Delete ${o.path}?`)) return;
      await api('DELETE', `/v1/storage/objects/${b}/${objectPath(o)}`);
      paged.reload();
    });
  return (
    <Card
      title={`Objects in ${bucketId}`}
      actions={
        <form
          className="search"
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            go(input.trim());
          }}
        >
          <input aria-label="Prefix" placeholder="prefix, e.g. usr_…/" value={input} onChange={(e) => setInput(e.target.value)} />
          <button type="submit">Browse</button>
        </form>
      }
    >
      <p className="crumbs">
        <button className="link" onClick={() => go('')}>
          {bucketId}
        </button>
        {prefix
          .split('/')
          .filter(Boolean)
          .map((seg, i, all) => {
            const to = `${all.slice(0, i + 1).join('/')}/`;
            return (
              <span key={to}>
                {' / '}
                <button className="link" onClick={() => go(to)}>
                  {seg}
                </button>
              </span>
            );
          })}
      </p>
      <Usage key={prefix} bucket={bucket} bucketId={bucketId} prefix={prefix} />
      <ErrorBox error={act.error} />
      <PagedTable
        label="Objects"
        paged={paged}
        empty={prefix ? `Nothing under “${prefix}”.` : 'This bucket is empty.'}
        columns={[
          {
            label: 'Path',
            render: (o) => {
              const segs = o.path.split('/');
              return (
                <span className="mono">
                  {segs.map((seg, i) =>
                    i < segs.length - 1 ? (
                      <span key={i}>
                        <button className="link" onClick={() => go(`${segs.slice(0, i + 1).join('/')}/`)}>
                          {seg}
                        </button>
                        /
                      </span>
                    ) : (
                      <span key={i}>{seg}</span>
                    ),
                  )}
                </span>
              );
            },
          },
          { label: 'Size', render: (o) => fmtBytes(o.size) },
          { label: 'Type', render: (o) => (o.sniffed_type && o.sniffed_type !== o.declared_type ? `${o.declared_type ?? '—'} (sniffed ${o.sniffed_type})` : (o.declared_type ?? '—')) },
          { label: 'Owner', render: (o) => o.owner_id ?? '—' },
          { label: 'Updated', render: (o) => fmtDate(o.updated_at) },
          { label: 'SHA-256', render: (o) => <span className="mono" title={o.sha256}>{o.sha256.slice(0, 12)}…</span> },
          {
            label: 'Actions',
            render: (o) => (
              <div className="actions">
                <button className="secondary" disabled={act.busy} aria-label={`Download ${o.path}`} onClick={() => void download(o)}>
                  Download
                </button>
                <button className="danger" disabled={act.busy} aria-label={`Delete ${o.path}`} onClick={() => void remove(o)}>
                  Delete
                </button>
              </div>
            ),
          },
        ]}
      />
    </Card>
  );
}

/**
 * What is stored under any prefix, summed over every page of the listing (the quota applies per owner,
 * the first path segment; OwnerUsage shows each owner's counters). Read on demand: a big folder is many pages.
 */
function Usage({ bucket, bucketId, prefix }: { bucket: Bucket | undefined; bucketId: string; prefix: string }) {
  const [usage, setUsage] = useState<{ objects: number; bytes: number }>();
  const { busy, error, run } = useAction();
  const owner = prefix.split('/')[0] ?? '';
  const ownerFolder = owner !== '' && prefix === `${owner}/`;
  const measure = () =>
    run(async () => {
      let cursor: string | null = null;
      let objects = 0;
      let bytes = 0;
      do {
        const page: Ok<'/v1/storage/objects/{bucket}', 'get'> = await api('GET', `/v1/storage/objects/${encodeURIComponent(bucketId)}${qs({ prefix, cursor, limit: 200 })}`);
        objects += page.data.length;
        bytes += page.data.reduce((s, o) => s + o.size, 0);
        cursor = page.next_cursor;
      } while (cursor);
      setUsage({ objects, bytes });
    });
  const quota = bucket?.user_quota_bytes ?? null;
  return (
    <div className="usage">
      <button className="secondary" disabled={busy} onClick={() => void measure()}>
        {busy ? 'Measuring…' : `Measure usage under ${prefix ? `“${prefix}”` : 'the whole bucket'}`}
      </button>
      {busy && <Progress label="Reading every page…" />}
      <ErrorBox error={error} />
      {usage && (
        <span role="status" data-testid="storage-usage">
          {fmtNum(usage.objects)} {usage.objects === 1 ? 'object' : 'objects'}, {fmtBytes(usage.bytes)}
          {quota !== null && ownerFolder ? ` of ${fmtBytes(quota)} (${Math.round((usage.bytes / Math.max(quota, 1)) * 100)}% of ${owner}’s quota)` : ''}
          {quota !== null && !ownerFolder ? ` (the quota of ${fmtBytes(quota)} applies per owner: browse one owner’s folder to compare)` : ''}
        </span>
      )}
    </div>
  );
}

/** POST /v1/storage/check: rows against the bytes the driver holds. */
function StorageCheck() {
  const [report, setReport] = useState<Ok<'/v1/storage/check', 'post'>>();
  const { busy, error, run } = useAction();
  return (
    <Card
      title="Storage check"
      actions={
        <button
          className="secondary"
          disabled={busy}
          onClick={() => void run(async () => setReport(await api<Ok<'/v1/storage/check', 'post'>>('POST', '/v1/storage/check', { body: {} })))}
        >
          {busy ? 'Checking…' : 'Run storage check'}
        </button>
      }
    >
      <p className="muted">
        The check of <code>tally storage check</code>: every row’s bytes exist on the driver, and no bytes are left that no row points at.
      </p>
      {busy && <Progress label="Checking storage…" />}
      <ErrorBox error={error} />
      {report && (
        <>
          <p className={report.ok ? 'ok' : 'error'} role="status">
            {report.ok ? 'Rows and bytes agree.' : `${report.missing_count} missing, ${report.orphan_count} orphaned.`} {fmtNum(report.referenced)} referenced,{' '}
            {fmtNum(report.held)} held, {fmtNum(report.pending)} pending deletion.
          </p>
          {[...report.missing.map((k) => `missing: ${k}`), ...report.orphans.map((k) => `orphan: ${k}`)].map((line) => (
            <div key={line} className="mono">
              {line}
            </div>
          ))}
        </>
      )}
    </Card>
  );
}
