import { readFileSync } from 'node:fs';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateTypes } from '../src/db/typegen.js';
import { createTestDb, type TestDb } from './support/harness.js';
import { must } from '../src/lib/must.js';

const COMMITTED = new URL('../src/db/database.types.ts', import.meta.url);

describe('tally typegen', () => {
  let testDb: TestDb;
  beforeAll(async () => {
    testDb = await createTestDb();
  });
  afterAll(async () => {
    await testDb?.close();
  });

  it('matches the committed src/db/database.types.ts (migrations and types agree)', async () => {
    const generated = await generateTypes(testDb.database);
    // On failure: run `tally typegen` (or regenerate from a migrated database) and commit the file.
    expect(generated).toBe(readFileSync(COMMITTED, 'utf8'));
    expect(generated.endsWith('}\n')).toBe(true);
  });

  it('is deterministic and does not mention the schema', async () => {
    const { database } = testDb;
    const [a, b] = [await generateTypes(database), await generateTypes(database)];
    expect(a).toBe(b);
    // PGlite's schema is `tally`, which the header names anyway; PostgreSQL's is random.
    if (database.schema !== 'tally') expect(a).not.toContain(database.schema);
  });

  it('maps nullability, defaults, arrays, json and enums', async () => {
    const { database } = testDb;
    const schema = sql.id(database.schema);
    await sql`create type ${schema}.typegen_mood as enum ('happy', 'sad', 'it''s complicated')`.execute(database.root);
    try {
      await sql`create table ${schema}.typegen_probe (
        id         bigint generated always as identity primary key,
        serial_no  serial,
        label      varchar(40) not null,
        note       text,
        tags       text[] not null default '{}',
        scores     int4[],
        payload    jsonb,
        settings   jsonb not null default '{}'::jsonb,
        maybe_on   boolean default false,
        price      numeric(10, 2),
        ratio      float8 not null,
        seen_on    date,
        happened   timestamp[],
        mood       ${schema}.typegen_mood not null default 'happy',
        moods      ${schema}.typegen_mood[],
        "Odd Name" uuid,
        ip         inet,
        weird      point
      )`.execute(database.root);

      const generated = await generateTypes(database);
      const block = generated.slice(generated.indexOf('export interface TypegenProbe {'));
      expect(block.slice(0, block.indexOf('}\n') + 2)).toBe(
        [
          'export interface TypegenProbe {',
          '  happened: Date[] | null;',
          '  id: Generated<number>;',
          '  ip: string | null;',
          '  label: string;',
          '  maybe_on: Generated<boolean | null>;',
          "  mood: Generated<'happy' | 'sad' | 'it\\'s complicated'>;",
          "  moods: ('happy' | 'sad' | 'it\\'s complicated')[] | null;",
          '  note: string | null;',
          "  'Odd Name': string | null;",
          '  payload: Json | null;',
          '  price: string | null;',
          '  ratio: number;',
          '  scores: number[] | null;',
          '  seen_on: Timestamp | null;',
          '  serial_no: Generated<number>;',
          '  settings: Generated<Json>;',
          '  tags: Generated<string[]>;',
          '  weird: unknown;',
          '}',
          '',
        ].join('\n'),
      );
      expect(generated).toContain('  typegen_probe: TypegenProbe;\n');
      // The DB map stays sorted by table name.
      const dbBlock = generated.slice(generated.indexOf('export interface DB {'));
      const keys = [...dbBlock.matchAll(/^ {2}(\w+):/gm)].map((m) => must(m[1], 'm[1]'));
      expect(keys).toEqual([...keys].sort());
      expect(keys).toContain('tally_migrations');
    } finally {
      await sql`drop table if exists ${schema}.typegen_probe`.execute(database.root);
      await sql`drop type if exists ${schema}.typegen_mood`.execute(database.root);
    }
  });
});
