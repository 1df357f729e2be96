import type { Executor } from '../../db/database.js';
import type { Ledger } from '../credits/credits.port.js';
import type { StorageDriver } from '../storage/storage.driver.js';
import type { SourceDb } from './import.source.js';

/**
 * `tally import` (issue 20, docs/import.md): the seeds' databases moved onto Tally. A shape is one
 * seed's design; it names the tables that identify it, the anomalies it looks for before writing,
 * and the steps that stream each source table into Tally, one keyset batch per transaction.
 */
export const SHAPE_NAMES = ['video-credits', 'llm-relay', 'app-builder', 'cloud-ide', 'foundation'] as const;
export type ShapeName = (typeof SHAPE_NAMES)[number];

/** What the import found wrong in the source, and the written rule it applied (docs/import.md). */
export const ANOMALY_KINDS = [
  'balance_mismatch',
  'negative_balance',
  'duplicate_payment',
  'orphan',
  'target_conflict',
  'over_cap',
  'unknown_value',
  'key_rotation',
  'password_reset',
  'overused_allowance',
  'duplicate_guard',
  'missing_period',
  'duplicate_provider_id',
  'second_owner',
  'duplicate_subscription',
  'duplicate_deployment',
  'duplicate_path',
  'foreign_parent',
  'storage_only',
  'unlinked_file',
] as const;
export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

export interface Anomaly {
  kind: AnomalyKind;
  table: string;
  source_id: string;
  /** What the import did about it (the rule, in a sentence). */
  rule: string;
  details: Record<string, unknown>;
}

/** Where a batch writes: the caller's transaction, and what a shape needs besides the database. */
export interface BatchContext {
  trx: Executor;
  /** Tally's schema, for a step's raw SQL (`sql.table(\`${schema}.t\`)`). */
  schema: string;
  /** The source, for a step that reads more of it while writing (000's buckets of a batch of users). */
  src: SourceDb;
  /** The source's fingerprint: the key of cursors, mappings and history. */
  source: string;
  runId: string;
  ledger: Ledger;
  now: Date;
  /** When the run began: the one instant a source's expiries are judged at (report and writes agree). */
  asOf: Date;
  /** The deployment's balance cap (null: none): openings above it are imported and reported. */
  balanceCap: number | null;
  /** Seals secrets on the way in (upstream credentials): AES-256-GCM under the configured key, bound to `aad`. */
  seal: (plaintext: string, aad: string) => string;
  /** The id of the key `seal` uses (stored beside each sealed value, for rotation). */
  sealKeyId: string;
  /**
   * Tally's configured storage driver, for bytes a row of this batch points at (large file
   * versions). Write them after the row: what this batch wrote is deleted again if the batch rolls
   * back, and after a dry run.
   */
  storage: StorageDriver;
  /** Records an anomaly met while writing (a conflict with a row Tally already had). */
  anomaly(a: Anomaly): void;
  /** `--owner`: who owns the source's ownerless rows (null: not given, those steps do not run). */
  owner: ImportOwner | null;
}

/**
 * The Tally user `--owner` names: one Tally already has (`userId`), or a source user imported in
 * this run (`sourceId`: its Tally id is read from the mapping, so a user the import could not take
 * owns nothing and its rows are `owner_not_imported`).
 */
export type ImportOwner = { given: string; userId: string; sourceId: null } | { given: string; userId: null; sourceId: string };

/** What one batch did: rows imported, and rows skipped by reason. */
export interface BatchOutcome {
  imported: number;
  skipped: Partial<Record<SkipReason, number>>;
}

export type SkipReason =
  | 'already_imported'
  | 'orphan'
  | 'owner_not_imported'
  | 'duplicate'
  | 'conflict'
  | 'unknown_value'
  | 'rotation'
  | 'expired'
  | 'empty'
  | 'paid_debt'
  | 'folder'
  | 'deleted'
  | 'storage_only';

/** One source table, streamed in keyset order and written batch by batch. */
export interface TableStep {
  /** The source table (unqualified). */
  table: string;
  /** A unique, ordered column: the keyset position (`where key > last order by key`). */
  key: string;
  /**
   * A table the design lists as optional (001's auxiliary `api_keys`, `usage_stats`): absent from a
   * source, the step is skipped (no table in the report) instead of failing the import.
   */
  optional?: boolean;
  /**
   * Rows a batch, as a multiple of `--batch-size` (default 1; see `batchRows`). History tables
   * take HISTORY_BATCH_SCALE: their rows are light (one set-based insert a batch, no ledger
   * operation, no audit row), so a batch's fixed cost (its round trips, its commit) is spread over
   * more of them. A killed import still loses at most the one batch in flight.
   */
  batchScale?: number;
  /**
   * Batches independent of each other: no row of a batch reads what another batch of this table
   * writes (only rows of earlier steps), and their rows meet no lock of one another. On a
   * PostgreSQL server two such batches are written at once, in two transactions (the second
   * saves the cursor, and commits, only after the first did: a killed import resumes exactly as
   * with one). Set it only for steps whose write is one set-based insert of rows keyed by the
   * source (history tables); a step that links rows of its own table must not.
   */
  concurrentBatches?: boolean;
  /** The select list (source columns, cast where needed); `t` qualifies another source table. */
  columns: (t: (table: string) => string) => string;
  /** Writes one batch in the caller's transaction. Rows come as the source driver returns them. */
  write(ctx: BatchContext, rows: Record<string, unknown>[]): Promise<BatchOutcome>;
}

export interface Shape {
  name: ShapeName;
  /** The tables whose presence identifies this shape (all of them). */
  signature: string[];
  /** Source tables the shape reads: the steps, in the order they run (parents before children). */
  steps: TableStep[];
  /** Source tables the shape knows but does not import yet (named in the report, never silently dropped). */
  notImported: { table: string; why: string }[];
  /** The anomalies, found by queries over the source before anything is written (`owned`: --owner given). */
  scan(src: SourceDb, opts: { owned: boolean }): Promise<Anomaly[]>;
  /**
   * Source tables without an owner (a single-user design): imported only with `--owner`, owned by
   * that user; without it they are listed under `not_imported` with `why`. `findOwner` looks the
   * option up among the source's users (id or e-mail) when Tally does not have that user yet.
   */
  ownerless?: { steps: TableStep[]; notImported: { table: string; why: string }[]; findOwner(src: SourceDb, given: string): Promise<string[]> };
  /** Credits in the source: per account total and count, read from the source itself. */
  sourceCredits(src: SourceDb, asOf: Date): Promise<{ total: number; accounts: number }>;
  /**
   * Rows this source brought in that an operator must review (upstreams: where users' prompts would
   * go; cost models priced in money; overage not settled). Read from Tally at the end of each run, so
   * a re-run still lists what is still waiting.
   */
  review?(trx: Executor, source: string): Promise<ReviewItem[]>;
}

/** An imported row an operator must act on: left inactive until looked at, or money owed outside Tally (docs/import.md). */
export interface ReviewItem {
  table: string;
  source_id: string;
  target_table: string;
  target_id: string;
  /** What to check, in a sentence. */
  why: string;
  details: Record<string, unknown>;
}

/** History tables' batches: ten times `--batch-size`. */
export const HISTORY_BATCH_SCALE = 10;
/** A scaled batch stays within this many rows (unless `--batch-size` itself asks for more): bounded memory. */
export const SCALED_BATCH_MAX = 10_000;

/** The rows a step reads and writes a batch. */
export const batchRows = (step: TableStep, batchSize: number): number =>
  step.batchScale === undefined ? batchSize : Math.max(batchSize, Math.min(batchSize * step.batchScale, SCALED_BATCH_MAX));

/** Anomalies kept in the report per kind (all are counted; a million-row source may have many). */
export const ANOMALIES_LISTED = 1000;
