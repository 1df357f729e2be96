import pg from 'pg';

/**
 * A source database, read-only: the seed's own PostgreSQL (Supabase or plain), one schema of it.
 * Reads are keyset batches (`where key > $1 order by key limit n`), so memory stays bounded by the
 * batch size whatever the table's size, and a batch's last key is a position to resume from.
 */
export interface SourceDb {
  /** The source's identity without credentials: `postgres://host:port/db#schema`. */
  readonly fingerprint: string;
  /** PostgreSQL, or SQLite (import.source.sqlite.ts): shapes that read both write portable SQL. */
  readonly dialect: 'postgres' | 'sqlite';
  /** Tables present in the source schema. */
  tables(): Promise<Set<string>>;
  /** A table name qualified by the source schema, quoted. */
  t(table: string): string;
  rows<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  /** `column` is a time later than the parameter `param` (`$n`, a Date), in this source's dialect. */
  after(column: string, param: string): string;
  /** One keyset batch of `table`: rows with `key` above `after` (null: from the start). */
  batch(table: string, key: string, columns: string, after: string | null, size: number): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** What identifies a PostgreSQL source: host, port, database and schema — never the user or password. */
export function postgresFingerprint(url: string, schema: string): string {
  const u = new URL(url);
  return `postgres://${u.hostname}:${u.port || '5432'}${u.pathname}#${schema}`;
}

export async function openPostgresSource(url: string, schema: string): Promise<SourceDb> {
  const client = new pg.Client({ connectionString: url, application_name: 'tally-import' });
  await client.connect();
  // Read-only, and every statement sees the data as it was when the import began reading it.
  await client.query('set session characteristics as transaction read only');
  // bigint (int8) and numeric arrive as strings: amounts are converted exactly, never through floats.
  const rows = async <T>(text: string, params: unknown[] = []): Promise<T[]> =>
    (await client.query({ text, values: params, types: { getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === 20 || oid === 1700 ? (v: string) => v : pg.types.getTypeParser(oid, format)) } })).rows as T[];
  const t = (table: string) => `${quote(schema)}.${quote(table)}`;
  return {
    fingerprint: postgresFingerprint(url, schema),
    dialect: 'postgres',
    async tables() {
      const r = await rows<{ table_name: string }>(
        `select table_name from information_schema.tables where table_schema = $1 and table_type in ('BASE TABLE', 'VIEW')`,
        [schema],
      );
      return new Set(r.map((x) => x.table_name));
    },
    t,
    rows,
    after: (column, param) => `${column} > ${param}::timestamptz`,
    batch(table, key, columns, after, size) {
      // Qualified, so a select list may name the table (`exists (… where u.id = "schema"."t".user_id)`).
      const k = `${t(table)}.${quote(key)}`;
      return after === null
        ? rows(`select ${columns} from ${t(table)} order by ${k} limit $1`, [size])
        : rows(`select ${columns} from ${t(table)} where ${k} > $1 order by ${k} limit $2`, [after, size]);
    },
    close: () => client.end(),
  };
}
