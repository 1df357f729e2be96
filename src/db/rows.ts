import type { ColumnType, Insertable, Selectable, Updateable } from 'kysely';
import type { DB, JsonValue } from './database.types.js';

/**
 * Row types of the generated schema (database.types.ts) for repositories that are generic over a
 * table: a renamed or retyped column fails tsc in every caller, with no per-table copy of the code.
 */
export type Table = keyof DB;

/** A row of table T as `select *` / `returning *` reads it. */
export type RowOf<T extends Table> = Selectable<DB[T]>;

/** A row of T restricted to the listed columns (a repository that never selects a secret column). */
export type RowPick<T extends Table, C extends keyof RowOf<T>> = Pick<RowOf<T>, C>;

/**
 * A jsonb column as these repositories take it: any value (they encode it with JSON.stringify, see
 * `encodeJson`), where the generated type wants the JSON text. Other columns are left as generated.
 */
type JsonTaken<C> = C extends ColumnType<infer S, unknown, unknown> ? ([JsonValue] extends [S] ? ColumnType<S, unknown, unknown> : C) : C;
type JsonTakenRow<R> = { [K in keyof R]: JsonTaken<R[K]> };

/** The values of a new row of T (jsonb columns as values). */
export type NewRow<T extends Table> = Insertable<JsonTakenRow<DB[T]>>;
/** A patch of a row of T (jsonb columns as values). */
export type RowPatch<T extends Table> = Updateable<JsonTakenRow<DB[T]>>;

/**
 * Writes the jsonb columns of `values` as JSON text (Kysely passes values through as parameters) and
 * leaves out undefined fields. The answer is the generated insert/update shape of the same table.
 */
export function encodeJson<R extends object>(values: R, jsonColumns: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue;
    out[k] = jsonColumns.has(k) && v !== null ? JSON.stringify(v) : v;
  }
  return out;
}

/**
 * A row written through `jsonb_to_recordset` (the rows go as one JSON parameter): T's insert values
 * for the columns C, every one present; numeric columns N as JSON numbers (the recordset's column
 * list casts them); timestamps as Date (JSON.stringify writes ISO) or ISO string.
 */
export type JsonWriteRow<T extends Table, C extends keyof NewRow<T>, N extends C = never> = {
  [K in C]-?: K extends N ? number | Extract<NewRow<T>[K], null> : Exclude<NewRow<T>[K], undefined>;
};

/** A column's value as json carries it: timestamps and dates become ISO strings. */
type JsonField<V> = V extends Date ? string : V;

/**
 * A row as read through json (`row_to_json`, `json_agg`, `jsonb_agg`) — the one place the drivers'
 * difference is stated. R is a generated row (`RowOf<T>`, or a Pick of one): timestamps and dates
 * are ISO strings; numbers are JSON numbers, numeric columns N too (a plain select types them as
 * their decimal text); int8 is a number either way (both drivers parse it); jsonb stays JSON.
 */
export type JsonRow<R, N extends keyof R = never> = { [K in keyof R]: K extends N ? number | Extract<R[K], null> : JsonField<R[K]> };

/** A row read either way (`select *` or json), for mappers that take both: convert dates with `new Date`. */
export type WireRow<R, N extends keyof R = never> = R | JsonRow<R, N>;
