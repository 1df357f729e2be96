import { sql } from 'kysely';
import type { Executor } from '../../db/database.js';

/**
 * How long a table keeps its rows, and how they go. Generic: any module registers its table
 * (`analytics_events` does, with its own column), the scheduler runs them all.
 *
 * - A table partitioned by month (`partitioned: true`, range on `column`, partitions named
 *   `<table>_pYYYYMM`, plus `<table>_default`): the coming months' partitions are created ahead,
 *   whole months past the cutoff are dropped (a catalogue change, no row-by-row delete), and the
 *   rows of the month the cutoff falls in (or of the default partition) that are older than the
 *   cutoff are deleted. So exactly the expired rows go, and most of them cheaply.
 * - A plain table: rows older than the cutoff are deleted, in bounded chunks.
 *
 * `days: null` keeps rows forever (the audit log is never registered at all).
 */
export interface RetentionRule {
  table: string;
  /** The timestamp a row expires by (the partition key of a partitioned table). */
  column: string;
  days: number | null;
  partitioned: boolean;
}

export interface RetentionReport {
  table: string;
  droppedPartitions: string[];
  createdPartitions: string[];
  deletedRows: number;
}

/** Months created ahead of the current one. */
const MONTHS_AHEAD = 2;
/** Rows deleted per statement on plain tables (a long delete would hold PGlite's one connection). */
const DELETE_CHUNK = 5_000;

export class Retention {
  private readonly rules = new Map<string, RetentionRule>();

  constructor(
    private readonly db: Executor,
    private readonly schema: string,
  ) {}

  /** Adds (or replaces) a table's rule. */
  register(rule: RetentionRule): void {
    if (!/^[a-z_][a-z0-9_]{0,40}$/.test(rule.table) || !/^[a-z_][a-z0-9_]{0,62}$/.test(rule.column)) {
      throw new Error(`retention: ${rule.table}.${rule.column} is not a plain identifier`);
    }
    this.rules.set(rule.table, rule);
  }

  get registered(): readonly RetentionRule[] {
    return [...this.rules.values()];
  }

  /** Runs every rule as of `now`; one table's failure does not stop the others (it is reported). */
  async run(now: Date): Promise<{ reports: RetentionReport[]; failures: { table: string; error: unknown }[] }> {
    const reports: RetentionReport[] = [];
    const failures: { table: string; error: unknown }[] = [];
    for (const rule of this.rules.values()) {
      try {
        reports.push(await this.apply(rule, now));
      } catch (error) {
        failures.push({ table: rule.table, error });
      }
    }
    return { reports, failures };
  }

  async apply(rule: RetentionRule, now: Date): Promise<RetentionReport> {
    const report: RetentionReport = { table: rule.table, droppedPartitions: [], createdPartitions: [], deletedRows: 0 };
    if (rule.partitioned) report.createdPartitions = await this.ensurePartitions(rule, now);
    if (rule.days === null) return report;
    const cutoff = new Date(now.getTime() - rule.days * 86_400_000);
    if (rule.partitioned) {
      for (const p of await this.partitions(rule.table)) {
        if (p.upper.getTime() <= cutoff.getTime()) {
          await this.db.transaction().execute(async (trx) => {
            await this.oneAtATime(trx);
            await sql`drop table if exists ${this.ref(p.name)}`.execute(trx);
          });
          report.droppedPartitions.push(p.name);
        }
      }
      // The rest: the month the cutoff falls in, and the default partition (pruned to those two).
      const res = await sql`delete from ${this.ref(rule.table)} where ${sql.ref(rule.column)} < ${cutoff}`.execute(this.db);
      report.deletedRows = Number(res.numAffectedRows ?? 0);
      return report;
    }
    for (;;) {
      const res = await sql`delete from ${this.ref(rule.table)} where ctid = any(array(
        select ctid from ${this.ref(rule.table)} where ${sql.ref(rule.column)} < ${cutoff} limit ${DELETE_CHUNK}))`.execute(this.db);
      const n = Number(res.numAffectedRows ?? 0);
      report.deletedRows += n;
      if (n < DELETE_CHUNK) return report;
    }
  }

  /** The monthly partitions of a table, with the end of the month each covers. */
  async partitions(table: string): Promise<{ name: string; upper: Date }[]> {
    const rows = await sql<{ name: string }>`
      select c.relname as name from pg_inherits i
      join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent
      join pg_namespace n on n.oid = p.relnamespace
      where n.nspname = ${this.schema} and p.relname = ${table}`.execute(this.db);
    const out: { name: string; upper: Date }[] = [];
    for (const { name } of rows.rows) {
      const m = new RegExp(`^${table}_p(\\d{4})(\\d{2})$`).exec(name);
      if (m) out.push({ name, upper: new Date(Date.UTC(Number(m[1]), Number(m[2]), 1)) });
    }
    return out.sort((a, b) => a.upper.getTime() - b.upper.getTime());
  }

  /**
   * The current month's partition and the next MONTHS_AHEAD ones. A month whose rows already sit
   * in the default partition (written before its partition existed) is created in one transaction
   * that moves them: PostgreSQL refuses a new partition while the default holds rows it would own.
   */
  async ensurePartitions(rule: RetentionRule, now: Date): Promise<string[]> {
    const existing = new Set((await this.partitions(rule.table)).map((p) => p.name));
    const created: string[] = [];
    for (let k = 0; k <= MONTHS_AHEAD; k++) {
      const from = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + k, 1));
      const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
      const name = `${rule.table}_p${from.getUTCFullYear()}${String(from.getUTCMonth() + 1).padStart(2, '0')}`;
      if (existing.has(name)) continue;
      await this.createPartition(rule, name, from, to);
      created.push(name);
    }
    return created;
  }

  async createPartition(rule: RetentionRule, name: string, from: Date, to: Date): Promise<void> {
    const parent = this.ref(rule.table);
    const def = this.ref(`${rule.table}_default`);
    const col = sql.ref(rule.column);
    // Bounds are literals in the DDL (it takes no parameters); they are ISO strings we made.
    const bounds = sql.raw(`for values from ('${from.toISOString()}') to ('${to.toISOString()}')`);
    await this.db.transaction().execute(async (trx) => {
      await this.oneAtATime(trx);
      const moved = `retention_moved_${name}`;
      const held = await sql<{ n: number }>`select count(*)::int as n from ${def} where ${col} >= ${from} and ${col} < ${to}`.execute(trx);
      const waiting = Number(held.rows[0]?.n ?? 0) > 0;
      if (waiting) {
        await sql`create temp table ${sql.id(moved)} on commit drop as select * from ${def} where ${col} >= ${from} and ${col} < ${to}`.execute(trx);
        await sql`delete from ${def} where ${col} >= ${from} and ${col} < ${to}`.execute(trx);
      }
      await sql`create table if not exists ${this.ref(name)} partition of ${parent} ${bounds}`.execute(trx);
      // Row-level security is per table: a partition read directly must be as closed as its parent.
      await sql`alter table ${this.ref(name)} enable row level security`.execute(trx);
      if (waiting) await sql`insert into ${parent} select * from ${sql.id(moved)}`.execute(trx);
    });
  }

  /**
   * Every Tally process runs the scheduler, so two may keep the same table's partitions at once
   * (`TALLY_PROCESSES`, or several servers): each takes the parent's and the default partition's
   * locks in its own order and PostgreSQL kills one as a deadlock. Partition changes therefore
   * queue on one transaction-scoped advisory lock per schema (transaction-scoped: it works through
   * a transaction-mode pooler); the second finds the work done (`if not exists`, `if exists`).
   */
  private async oneAtATime(trx: Executor): Promise<void> {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`tally.retention:${this.schema}`}, 0))`.execute(trx);
  }

  private ref(table: string) {
    return sql.table(`${this.schema}.${table}`);
  }
}
