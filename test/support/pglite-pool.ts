import { PGlite } from '@electric-sql/pglite';

/**
 * A worker's spare in-memory PGlite databases (issue 17). Loading the run's migrated snapshot
 * costs ~0.5 s of wall time and ~0.7 s of CPU per database, and the suite makes a few hundred; a
 * database a file has closed is instead put back exactly as the snapshot was — session state
 * discarded, every table emptied, the migrations' own rows and the sequences restored — and the
 * worker's next file takes it (~30 ms).
 *
 * "Exactly" is checked, not assumed: the catalog (schemas, tables, columns, constraints, triggers
 * and whether they are enabled, policies, functions, roles and their settings, grants) is digested
 * when a database first comes from the snapshot and again after each reset. A file that changed
 * any of it (made a role, dropped a trigger, altered a table), left a transaction open, or whose
 * reset failed, gets its database closed, never reused. Vitest runs a worker's files one after
 * another (test isolation is off: vitest.config.ts), so a pooled database is never shared by two
 * files at once; a closed Kysely refuses late queries, so a file's leftover timers cannot reach
 * the next file's rows.
 */

/** How many spare databases a worker keeps (a file rarely holds more than two at once). */
const SPARE = 2;

interface Pristine {
  catalog: string;
  /** Every table, schema-qualified and quoted (one TRUNCATE empties them all). */
  tables: string[];
  /** Tables the migrations left rows in, with those rows, and the columns an insert may set. */
  seeded: { table: string; columns: string; rows: string }[];
  sequences: { name: string; last: string; called: boolean }[];
}

const spare: PGlite[] = [];
let pristine: Pristine | undefined;
/** Databases handed out from the pool this run, and returned to it (the harness's own test reads these). */
export const pglitePoolStats = { created: 0, reused: 0, discarded: 0 };

const USER_NAMESPACES = `n.nspname not like 'pg\\_%' and n.nspname <> 'information_schema'`;

/** Everything about the database that a reset does not put back: one digest. */
const CATALOG_SQL = `
select md5(string_agg(x, E'\\n' order by x)) as digest from (
  select 'n:' || nspname || ':' || coalesce(nspacl::text, '') as x from pg_namespace n where ${USER_NAMESPACES}
  union all
  select 'c:' || c.oid::regclass::text || ':' || relkind::text || ':' || relrowsecurity || ':' || relforcerowsecurity || ':' || relpersistence::text || ':' || coalesce(relacl::text, '') || ':' || coalesce(reloptions::text, '')
    from pg_class c join pg_namespace n on n.oid = c.relnamespace where ${USER_NAMESPACES}
  union all
  select 'a:' || a.attrelid::regclass::text || ':' || attname || ':' || atttypid || ':' || atttypmod || ':' || attnotnull || ':' || attgenerated::text || ':' || attidentity::text || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
    left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where a.attnum > 0 and not a.attisdropped and ${USER_NAMESPACES}
  union all
  select 'k:' || c.conrelid::regclass::text || ':' || c.contypid || ':' || conname || ':' || convalidated || ':' || pg_get_constraintdef(c.oid)
    from pg_constraint c join pg_namespace n on n.oid = c.connamespace where ${USER_NAMESPACES}
  union all
  select 't:' || tgrelid::regclass::text || ':' || tgname || ':' || tgenabled::text || ':' || tgfoid::regprocedure::text from pg_trigger
  union all
  select 'p:' || polrelid::regclass::text || ':' || polname || ':' || polcmd::text || ':' || polpermissive || ':' || polroles::text || ':' || coalesce(pg_get_expr(polqual, polrelid), '') || ':' || coalesce(pg_get_expr(polwithcheck, polrelid), '')
    from pg_policy
  union all
  select 'f:' || p.oid::regprocedure::text || ':' || md5(prosrc) || ':' || prosecdef || ':' || provolatile::text || ':' || coalesce(proconfig::text, '') || ':' || coalesce(proacl::text, '')
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace where ${USER_NAMESPACES}
  union all
  select 'e:' || enumtypid::regtype::text || ':' || enumlabel from pg_enum
  union all
  select 'y:' || t.oid::regtype::text || ':' || typtype::text from pg_type t join pg_namespace n on n.oid = t.typnamespace where ${USER_NAMESPACES} and typtype in ('d', 'e', 'r', 'm')
  union all
  select 'r:' || rolname || ':' || rolsuper || ':' || rolinherit || ':' || rolcreaterole || ':' || rolcanlogin || ':' || rolbypassrls || ':' || coalesce(rolconfig::text, '') from pg_roles
  union all
  select 'm:' || roleid::regrole::text || ':' || member::regrole::text || ':' || admin_option from pg_auth_members
  union all
  select 's:' || setdatabase || ':' || setrole || ':' || setconfig::text from pg_db_role_setting
  union all
  select 'x:' || extname || ':' || extversion from pg_extension
  union all
  select 'd:' || datname || ':' || coalesce(datacl::text, '') from pg_database
  union all
  select 'l:' || count(*) from pg_largeobject_metadata
) s`;

const quoted = (schema: string, name: string) => `"${schema.replace(/"/g, '""')}"."${name.replace(/"/g, '""')}"`;

async function digest(p: PGlite): Promise<string> {
  const r = await p.query<{ digest: string }>(CATALOG_SQL);
  const d = r.rows[0]?.digest;
  if (!d) throw new Error('pglite-pool: no catalog digest');
  return d;
}

/** What a database straight from the snapshot holds: read once per worker. */
async function capture(p: PGlite): Promise<Pristine> {
  const tables = await p.query<{ schema: string; name: string }>(
    `select n.nspname as schema, c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and ${USER_NAMESPACES} order by 1, 2`,
  );
  const seeded: Pristine['seeded'] = [];
  for (const t of tables.rows) {
    const table = quoted(t.schema, t.name);
    const rows = await p.query<{ rows: string }>(`select coalesce(json_agg(t), '[]')::text as rows, count(*) as n from ${table} t having count(*) > 0`);
    const json = rows.rows[0]?.rows;
    if (!json) continue;
    // Generated columns are computed again; identity columns are set as they were.
    const cols = await p.query<{ name: string }>(
      `select attname as name from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped and attgenerated = '' order by attnum`,
      [table],
    );
    seeded.push({ table, columns: cols.rows.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(', '), rows: json });
  }
  const seqs = await p.query<{ name: string }>(
    `select c.oid::regclass::text as name from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'S' and ${USER_NAMESPACES}`,
  );
  const sequences: Pristine['sequences'] = [];
  for (const s of seqs.rows) {
    const v = await p.query<{ last: string; called: boolean }>(`select last_value::text as last, is_called as called from ${s.name}`);
    const row = v.rows[0];
    if (row) sequences.push({ name: s.name, last: row.last, called: row.called });
  }
  return { catalog: await digest(p), tables: tables.rows.map((t) => quoted(t.schema, t.name)), seeded, sequences };
}

/** Puts the database back as the snapshot was; false if it cannot be proven to be. */
async function reset(p: PGlite, want: Pristine): Promise<boolean> {
  try {
    // A file that left a transaction open: ROLLBACK ends it (outside one it only warns).
    await p.exec('rollback');
    await p.exec('discard all');
    if ((await digest(p)) !== want.catalog) return false;
    // Replica mode: no trigger fires (the audit log's refusal of TRUNCATE, its seal, updated_at …).
    const restore = [
      'set session_replication_role = replica',
      `truncate ${want.tables.join(', ')}`,
      ...want.seeded.map((s) => `insert into ${s.table} (${s.columns}) overriding system value select ${s.columns} from json_populate_recordset(null::${s.table}, '${s.rows.replace(/'/g, "''")}')`),
      ...want.sequences.map((s) => `select setval('${s.name.replace(/'/g, "''")}', ${s.last}, ${s.called})`),
      'reset session_replication_role',
    ];
    await p.exec(`begin; ${restore.join(';\n')}; commit`);
    return true;
  } catch {
    return false;
  }
}

/** A database as the snapshot holds it: a worker's spare one, or `load()`ed anew. */
export async function takePglite(load: () => Promise<PGlite>): Promise<PGlite> {
  const reused = spare.pop();
  if (reused) {
    pglitePoolStats.reused++;
    return reused;
  }
  const p = await load();
  pglitePoolStats.created++;
  pristine ??= await capture(p);
  return p;
}

/** Gives a database back: kept for the worker's next file if it resets cleanly, closed otherwise. */
export async function giveBackPglite(p: PGlite): Promise<void> {
  if (process.env['TALLY_TEST_PGLITE_POOL'] !== '0' && pristine && spare.length < SPARE && !p.closed && (await reset(p, pristine))) {
    spare.push(p);
    return;
  }
  pglitePoolStats.discarded++;
  if (!p.closed) await p.close();
}
