import type { Kysely } from 'kysely';
import type { Anomaly, BatchContext, TableStep } from './import.js';
import { importMapInsert, type MapRow } from './import.repository.js';
import { freshRows, ownerOf, ownersOf, Tally } from './import.rows.js';

/**
 * The step every "one source row → one mapped Tally row" table shares: skip rows already mapped,
 * find each row's owners as imported, let the shape map the row (or refuse it by a written rule),
 * insert it (a row Tally already has is a `target_conflict`), and map it — all in the batch's
 * transaction. Shapes write only what differs: the columns, the owners and the mapping.
 */

/** A source column naming the row this one hangs off, and the source table it names. */
export interface OwnerRef {
  column: string;
  table: string;
  /** Required: without it the row is not imported (orphan / owner_not_imported). Optional: null when not imported. */
  required: boolean;
}

/** What the shape makes of one row: the Tally row, or why it is not imported. */
export type Mapped =
  | { values: Record<string, unknown>; targetId: string; facts?: Record<string, unknown> }
  | { skip: 'unknown_value' | 'expired' | 'empty' | 'owner_not_imported'; anomaly?: Omit<Anomaly, 'table' | 'source_id'> };

export interface MappedSpec<L = undefined> {
  table: string;
  /** The Tally table written (its primary key is `id`). */
  target: string;
  /** The select list. Required owners must be summed up as `owner_exists` (orphans vs owners not imported). */
  columns: TableStep['columns'];
  owners: OwnerRef[];
  /** Looked up once a batch (one query, not one a row) and handed to `map`: what rows name besides their owners. */
  lookup?(ctx: BatchContext, rows: Record<string, unknown>[]): Promise<L>;
  map(r: Record<string, unknown>, owners: Record<string, MapRow | null>, ctx: BatchContext, looked: L): Mapped | Promise<Mapped>;
  /** The rule when Tally already has the row (a unique key it holds). */
  conflictRule: string;
}

/** A Tally table named at run time: the spec's mapping is checked by the table's own constraints. */
type AnyDb = Kysely<Record<string, Record<string, unknown>>>;

export function mappedStep<L = undefined>(spec: MappedSpec<L>): TableStep {
  return {
    table: spec.table,
    key: 'id',
    columns: spec.columns,
    async write(ctx, rows) {
      const tally = new Tally();
      const fresh = await freshRows(ctx, spec.table, rows, 'id', tally);
      const found = await Promise.all(spec.owners.map((o) => ownersOf(ctx, o.table, fresh, o.column)));
      const looked = (spec.lookup ? await spec.lookup(ctx, fresh) : undefined) as L;
      const maps = [];
      rows: for (const r of fresh) {
        const sid = String(r.id);
        const owners: Record<string, MapRow | null> = {};
        for (const [i, o] of spec.owners.entries()) {
          const byId = found[i] as Map<string, MapRow>;
          if (o.required) {
            const owner = ownerOf(byId, r, o.column, tally);
            if (!owner) continue rows;
            owners[o.column] = owner;
          } else owners[o.column] = byId.get(String(r[o.column])) ?? null;
        }
        const m = await spec.map(r, owners, ctx, looked);
        if ('skip' in m) {
          tally.skip(m.skip);
          if (m.anomaly) ctx.anomaly({ ...m.anomaly, table: spec.table, source_id: sid });
          continue;
        }
        const row = await (ctx.trx as unknown as AnyDb)
          .insertInto(spec.target)
          .values(m.values)
          .onConflict((oc) => oc.doNothing())
          .returning('id')
          .executeTakeFirst();
        if (!row) {
          tally.skip('conflict');
          ctx.anomaly({ kind: 'target_conflict', table: spec.table, source_id: sid, rule: spec.conflictRule, details: {} });
          continue;
        }
        maps.push({ table: spec.table, sourceId: sid, targetTable: spec.target, targetId: m.targetId, facts: m.facts });
        // A row of this table may hang off one earlier in the same batch (000's parent messages).
        for (const [i, o] of spec.owners.entries()) if (o.table === spec.table) (found[i] as Map<string, MapRow>).set(sid, { source_id: sid, target_id: m.targetId, facts: m.facts ?? {} });
        tally.imported++;
      }
      await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
      return tally.outcome;
    },
  };
}

/** A value Tally refuses as it is, by the `unknown_value` rule (not imported; reported). */
export const unknownValue = (rule: string, details: Record<string, unknown>): Mapped => ({ skip: 'unknown_value', anomaly: { kind: 'unknown_value', rule, details } });

/** Text that fits a column's length check (null fits); JS length counts UTF-16 units, never fewer than characters. */
export const fits = (v: unknown, max: number, min = 0): boolean => v === null || v === undefined ? min === 0 : String(v).length >= min && String(v).length <= max;
