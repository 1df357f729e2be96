import { sql } from 'kysely';
import type { Database, Executor } from '../../db/database.js';
import { newId } from '../../lib/ids.js';
import { type Ledger, reconcile } from '../credits/credits.port.js';
import { ANOMALIES_LISTED, type Anomaly, batchRows, type BatchContext, type ImportOwner, type Shape, type ShapeName, type SkipReason, type TableStep } from './import.js';
import { detectShape } from './import.detect.js';
import {
  type CursorRow,
  importAccountsCompare,
  importCursorSave,
  importCursorsFind,
  importCursorsReset,
  importOwnerFind,
  importRunFinish,
  importRunInsert,
} from './import.repository.js';
import type { ImportReport, TableReport } from './import.report.js';
import type { SourceDb } from './import.source.js';
import type { StorageDriver } from '../storage/storage.driver.js';

export interface ImportOptions {
  shape?: ShapeName;
  dryRun: boolean;
  resume: boolean;
  strict: boolean;
  /** Rows per keyset batch (one Tally transaction each). */
  batchSize: number;
  /** `--owner`: a user id or e-mail, in Tally or among the source's users (docs/import.md). */
  owner?: string;
}

export interface ImportDeps {
  database: Database;
  ledger: Ledger;
  seal: (plaintext: string, aad: string) => string;
  sealKeyId: string;
  /** Tally's storage driver (the server's): large file versions' bytes go there. */
  storage: StorageDriver;
  balanceCap: number | null;
  clock: () => Date;
  /** Told after every batch (the CLI draws its progress line from it). */
  onProgress?: (p: { table: string; read: number; total: number; imported: number; skipped: number }) => void;
}

/** `--strict` met an anomaly while writing (a conflict with a row Tally already had). */
class StrictRefusal extends Error {}
/** A dry run's one transaction ends here, rolled back, carrying the report out. */
class DryRunDone extends Error {
  constructor(readonly report: ImportReport) {
    super('dry run');
  }
}

/**
 * `tally import` (docs/import.md): detect the shape, scan the source for anomalies, then stream
 * each source table in keyset batches, one Tally transaction per batch that writes the rows, their
 * mappings and the table's cursor together — so a killed import resumes exactly where its last
 * committed batch ended, and a second run finds every row mapped and imports nothing twice.
 * A dry run does all of it in one transaction and rolls it back.
 */
export async function runImport(src: SourceDb, opts: ImportOptions, deps: ImportDeps): Promise<ImportReport> {
  const detection = detectShape(await src.tables(), opts.shape);
  if (!detection.ok) throw new ImportRefused(detection.why);
  const shape = detection.shape;
  // Settled before anything is written: an --owner naming nobody imports nothing, not even a run.
  const owner = opts.owner === undefined ? null : await resolveOwner(src, shape, deps.database.db, opts.owner);
  const startedAt = deps.clock();
  const scanned = await shape.scan(src, { owned: owner !== null });
  const anomalies = new Anomalies(scanned);
  const runId = newId('importRun');
  const db = deps.database.db;
  await importRunInsert(db, { id: runId, source: src.fingerprint, shape: shape.name, dryRun: opts.dryRun, strict: opts.strict, resumed: opts.resume });
  const base = { run_id: runId, source: src.fingerprint, shape: shape.name, detection: detection.why, owner: owner && { given: owner.given, user_id: owner.userId ?? owner.sourceId, from: owner.userId ? ('tally' as const) : ('source' as const) }, dry_run: opts.dryRun, strict: opts.strict, resumed: opts.resume, started_at: startedAt.toISOString() };
  const tables: TableReport[] = [];
  const finish = async (status: ImportReport['status'], executor: Executor, error: string | null): Promise<ImportReport> => {
    const report: ImportReport = {
      ...base,
      status,
      error,
      tables,
      not_imported: owner || !shape.ownerless ? shape.notImported : [...shape.notImported, ...shape.ownerless.notImported],
      needs_review: (await shape.review?.(executor, src.fingerprint)) ?? [],
      credits: await creditsOf(src, shape, executor, src.fingerprint, startedAt),
      anomalies: anomalies.report(),
      reconcile: await reconcileOf(deps.database, executor),
      finished_at: deps.clock().toISOString(),
    };
    return report;
  };

  if (opts.strict && scanned.length > 0) {
    const report = await finish('refused', db, `--strict: the source has ${anomalies.total} anomal${anomalies.total === 1 ? 'y' : 'ies'}; nothing was imported`);
    await importRunFinish(db, runId, 'refused', report, report.error);
    return report;
  }

  // Bytes a dry run wrote to storage for rows it then rolled back: removed when it ends.
  const dryKeys: string[] = [];
  const onAnomaly = (a: Anomaly) => {
    anomalies.add(a);
    if (opts.strict) throw new StrictRefusal(`--strict: ${a.kind} in ${a.table} ${a.source_id}; the batch was rolled back`);
  };
  try {
    if (opts.dryRun) {
      await db.transaction().execute(async (trx) => {
        await importTables(src, shape, owner, trx, (fn) => fn(trx), runId, startedAt, opts, { ...deps, storage: tracked(deps.storage, dryKeys) }, onAnomaly, tables);
        throw new DryRunDone(await finish('completed', trx, null));
      });
      throw new Error('unreachable: a dry run always rolls back');
    }
    if (!opts.resume) await importCursorsReset(db, src.fingerprint);
    await importTables(src, shape, owner, db, (fn) => db.transaction().execute(fn), runId, startedAt, opts, deps, onAnomaly, tables);
    const report = await finish('completed', db, null);
    await importRunFinish(db, runId, 'completed', report, null);
    return report;
  } catch (err) {
    await forget(deps.storage, dryKeys.splice(0));
    if (err instanceof DryRunDone) {
      await importRunFinish(db, runId, 'completed', err.report, null);
      return err.report;
    }
    const refused = err instanceof StrictRefusal;
    const report = await finish(refused ? 'refused' : 'failed', db, err instanceof Error ? err.message : String(err));
    await importRunFinish(db, runId, refused ? 'refused' : 'failed', report, report.error);
    if (refused) return report;
    throw err;
  }
}

/** The source's shape could not be settled (unknown tables, a shape not built yet), or `--owner` names nobody. */
export class ImportRefused extends Error {}

/**
 * `--owner`: a Tally user (id or e-mail) first — on a second run the owner the first run imported
 * is one — else a user of the source, imported in this same run. Exactly one must match.
 */
async function resolveOwner(src: SourceDb, shape: Shape, db: Executor, given: string): Promise<ImportOwner> {
  if (!shape.ownerless) throw new ImportRefused(`--owner applies to designs with ownerless rows (app-builder); ${shape.name} has none`);
  const inTally = await importOwnerFind(db, given);
  if (inTally.length === 1) return { given, userId: inTally[0] as string, sourceId: null };
  if (inTally.length > 1) throw new ImportRefused(`--owner ${given} matches ${inTally.length} Tally users; pass the user id`);
  const inSource = await shape.ownerless.findOwner(src, given);
  if (inSource.length === 1) return { given, userId: null, sourceId: inSource[0] as string };
  if (inSource.length > 1) throw new ImportRefused(`--owner ${given} matches ${inSource.length} users of the source; pass the user id`);
  throw new ImportRefused(`--owner ${given} names no user, neither in Tally nor in the source's users (an id or e-mail); nothing was imported`);
}

async function importTables(
  src: SourceDb,
  shape: Shape,
  owner: ImportOwner | null,
  db: Executor,
  inBatch: <T>(fn: (trx: Executor) => Promise<T>) => Promise<T>,
  runId: string,
  asOf: Date,
  opts: ImportOptions,
  deps: ImportDeps,
  onAnomaly: (a: Anomaly) => void,
  tables: TableReport[],
): Promise<void> {
  const cursors = opts.resume ? await importCursorsFind(db, src.fingerprint) : new Map<string, CursorRow>();
  const present = await src.tables();
  const steps = (owner && shape.ownerless ? [...shape.steps, ...shape.ownerless.steps] : shape.steps).filter((s) => !s.optional || present.has(s.table));
  for (const step of steps) {
    const report = await importTable(src, shape, owner, step, cursors.get(step.table), inBatch, runId, asOf, opts, deps, onAnomaly);
    tables.push(report);
  }
}

async function importTable(
  src: SourceDb,
  shape: Shape,
  owner: ImportOwner | null,
  step: TableStep,
  cursor: CursorRow | undefined,
  inBatch: <T>(fn: (trx: Executor) => Promise<T>) => Promise<T>,
  runId: string,
  asOf: Date,
  opts: ImportOptions,
  deps: ImportDeps,
  onAnomaly: (a: Anomaly) => void,
): Promise<TableReport> {
  const [count] = await src.rows<{ n: string | number }>(`select count(*) as n from ${src.t(step.table)}`);
  const total = Number(count?.n ?? 0);
  // Resumed: the counts go on from where the stopped run left them, so the report is the whole import's.
  const state = { after: cursor?.last_key ?? null, read: cursor?.rows_read ?? 0, imported: cursor?.rows_imported ?? 0, skipped: cursor?.rows_skipped ?? 0 };
  const byReason: Partial<Record<SkipReason, number>> = {};
  if (!cursor?.done) {
    const size = batchRows(step, opts.batchSize);
    const read = (after: string | null) => src.batch(step.table, step.key, step.columns(src.t), after, size);
    // Two batches written at once where the step allows it (see TableStep.concurrentBatches), on a
    // PostgreSQL server only (PGlite is one connection), with a pool of at least two (the second
    // would otherwise wait for the first's connection) and never in a dry run (one transaction).
    const inFlight = step.concurrentBatches && deps.database.kind === 'postgres' && (deps.database.pool?.options.max ?? 0) >= 2 && !opts.dryRun ? 2 : 1;
    const writing: Promise<void>[] = [];
    /** The batch before this one: settled once it has committed and been counted. */
    let previous: Promise<void> = Promise.resolve();
    const writeBatch = async (rows: Record<string, unknown>[], lastKey: string | null, done: boolean, before: Promise<void>): Promise<void> => {
      const stored: string[] = [];
      await inBatch(async (trx) => {
        if (deps.database.kind === 'postgres') await asyncCommit(trx);
        const ctx: BatchContext = { trx, schema: deps.database.schema, src, source: src.fingerprint, runId, ledger: deps.ledger, now: deps.clock(), asOf, balanceCap: deps.balanceCap, seal: deps.seal, sealKeyId: deps.sealKeyId, storage: tracked(deps.storage, stored), anomaly: onAnomaly, owner };
        const outcome = rows.length === 0 ? { imported: 0, skipped: {} } : await step.write(ctx, rows);
        const skipped = Object.values(outcome.skipped).reduce((a, b) => a + (b ?? 0), 0);
        // The cursor moves in key order: this batch saves it only after the one before committed
        // (if that one failed, this throws and rolls back too), so a killed import never has a
        // cursor past a batch that is not in.
        await before;
        await importCursorSave(trx, {
          source: src.fingerprint,
          shape: shape.name,
          runId,
          table: step.table,
          lastKey,
          read: state.read + rows.length,
          imported: state.imported + outcome.imported,
          skipped: state.skipped + skipped,
          done,
        });
        // Counted only once the batch's transaction has its writes (a rollback throws past here).
        state.read += rows.length;
        state.imported += outcome.imported;
        state.skipped += skipped;
        for (const [k, v] of Object.entries(outcome.skipped)) byReason[k as SkipReason] = (byReason[k as SkipReason] ?? 0) + (v ?? 0);
      }).catch(async (err: unknown) => {
        // The batch rolled back: the bytes it stored belong to no row (a batch only stores bytes for rows it inserted).
        await forget(deps.storage, stored);
        throw err;
      });
      state.after = lastKey;
      deps.onProgress?.({ table: step.table, read: state.read, total, imported: state.imported, skipped: state.skipped });
    };
    let next = read(state.after);
    let lastRead = state.after;
    try {
      for (;;) {
        const rows = await next;
        const last = rows.at(-1);
        const lastKey = last === undefined ? lastRead : String(last[step.key]);
        lastRead = lastKey;
        const done = rows.length < size;
        // The next batch is read from the source (its own connection) while this one is written:
        // at most two batches in memory (three with two in flight). A batch that fails leaves its
        // read unused (caught, dropped).
        if (!done) {
          next = read(lastKey);
          next.catch(() => undefined);
        }
        const batch = writeBatch(rows, lastKey, done, previous);
        batch.catch(() => undefined); // awaited below, in order
        previous = batch;
        writing.push(batch);
        if (writing.length >= inFlight) await writing.shift();
        if (done) break;
      }
    } finally {
      // Every batch started is settled before the step ends or fails (no transaction left open).
      await Promise.allSettled(writing);
    }
    for (const batch of writing) await batch;
  }
  return { table: step.table, source_rows: total, read: state.read, imported: state.imported, skipped: state.skipped, skipped_by_reason: byReason };
}

/** The driver, noting every key written through it (so a rolled-back batch or a dry run can remove them). */
function tracked(driver: StorageDriver, keys: string[]): StorageDriver {
  return new Proxy(driver, {
    get(target, prop, receiver) {
      if (prop !== 'put') return Reflect.get(target, prop, receiver);
      return async (...args: Parameters<StorageDriver['put']>) => {
        const r = await target.put(...args);
        keys.push(args[0]);
        return r;
      };
    },
  });
}

/** Removes bytes no committed row points at. Best effort: `tally storage check` reports any left. */
async function forget(driver: StorageDriver, keys: string[]): Promise<void> {
  for (const key of keys) await driver.delete(key).catch(() => undefined);
}

/**
 * On a PostgreSQL server, a batch's commit does not wait for its WAL flush (`synchronous_commit =
 * off`, this transaction only): it is visible at once, and a `kill -9` of the importer loses
 * nothing committed (the server keeps it). Only a crash of the server itself within a moment of
 * the commit could lose it — and then the batch is lost whole, rows and cursor together, and
 * `--resume` redoes it. The run's final `import_runs` update commits as usual and flushes every
 * batch before it (the WAL is one sequence), so a finished import is durable. Saves an fsync a
 * batch. Not on PGlite: there the database lives in the importer's process and dies with it, so a
 * killed import must find every batch it had committed.
 */
async function asyncCommit(trx: Executor): Promise<void> {
  await sql`set local synchronous_commit = off`.execute(trx);
}

async function creditsOf(src: SourceDb, shape: Shape, executor: Executor, source: string, asOf: Date): Promise<ImportReport['credits']> {
  const inSource = await shape.sourceCredits(src, asOf);
  const inTally = await importAccountsCompare(executor, source);
  return {
    source_total: inSource.total,
    source_accounts: inSource.accounts,
    tally_total: inTally.openingTotal,
    tally_accounts: inTally.accounts,
    recorded_source_total: inTally.sourceTotal,
    match: inSource.total === inTally.openingTotal && inSource.accounts === inTally.accounts && inTally.mismatches.length === 0,
    mismatches: inTally.mismatches,
  };
}

async function reconcileOf(database: Database, executor: Executor): Promise<ImportReport['reconcile']> {
  const r = await reconcile(database, executor);
  return { ok: r.ok, accounts: r.accounts, drift: r.drift.length };
}

/** Anomalies: every one counted, the first ANOMALIES_LISTED of each kind listed. */
class Anomalies {
  private readonly counts = new Map<string, number>();
  private readonly cases: Anomaly[] = [];
  total = 0;
  constructor(initial: Anomaly[]) {
    for (const a of initial) this.add(a);
  }
  add(a: Anomaly): void {
    const n = (this.counts.get(a.kind) ?? 0) + 1;
    this.counts.set(a.kind, n);
    this.total++;
    if (n <= ANOMALIES_LISTED) this.cases.push(a);
  }
  report(): ImportReport['anomalies'] {
    return { total: this.total, by_kind: Object.fromEntries(this.counts), cases: this.cases };
  }
}
