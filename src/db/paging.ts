import { sql, type RawBuilder } from 'kysely';

/** Selects a row's cursor position; pair with `cursorBefore` and order by created_at desc, id desc. */
export function cursorColumn(table: string): RawBuilder<number> {
  return sql<number>`(extract(epoch from ${sql.ref(`${table}.created_at`)}) * 1000000)::int8`;
}

export function cursorBefore(table: string, after: { us: number; id: string }, idColumn = 'id'): RawBuilder<boolean> {
  return sql<boolean>`(${sql.ref(`${table}.created_at`)}, ${sql.ref(`${table}.${idColumn}`)}) <
    (timestamptz 'epoch' + ${after.us} * interval '1 microsecond', ${after.id})`;
}
