import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DESIGNS } from '../src/modules/import/import.designs.js';
import { detectShape, SHAPES } from '../src/modules/import/import.detect.js';
import { openSqliteSource } from '../src/modules/import/import.source.sqlite.js';
import { createAppBuilderSqlite } from './support/import-source-app-builder.js';

/**
 * Detection (docs/import.md): every seed design is recognised from the tables its own SQL creates
 * (test/support/import-sources/, copied from ../shared/seeds/), and the answer says what was detected.
 */
const tablesOf = (file: string) =>
  new Set(
    [...readFileSync(join(import.meta.dirname, 'support', 'import-sources', file), 'utf8').matchAll(/create table (?:if not exists )?([\w."]+)/gi)].map((m) =>
      String(m[1]).replaceAll('"', '').replace(/^public\./, ''),
    ),
  );

describe('tally import: detecting the shape from the tables present', () => {
  const seeds = [
    ['app-builder.sql', 'app-builder', '000', 24],
    ['video-credits.sql', 'video-credits', '001', 7],
    ['foundation.sql', 'foundation', '003', 3],
    ['llm-relay.sql', 'llm-relay', '004', 4],
  ] as const;

  for (const [file, name, seed, present] of seeds) {
    it(`recognises ${name} (seed ${seed}) from the tables its SQL creates`, () => {
      const d = detectShape(tablesOf(file), undefined);
      expect(d).toMatchObject({ ok: true, detected: true, shape: { name } });
      if (d.ok) expect(d.why).toMatch(new RegExp(`^detected ${name} from tables .* \\(${present} of the \\d+ tables of seed ${seed}'s design present\\)$`));
    });
  }

  it('recognises cloud-ide (seed 002) among the 30 tables its SQL creates', () => {
    const tables = tablesOf('cloud-ide.sql');
    expect(tables.size).toBe(30);
    const d = detectShape(tables, undefined);
    expect(d).toMatchObject({ ok: true, shape: { name: 'cloud-ide' } });
    expect(d.why).toBe("detected cloud-ide from tables users, workspaces, workspace_members, subscription_plans, subscriptions, usage_records (30 of the 30 tables of seed 002's design present)");
  });

  it("recognises app-builder from SQLite's own catalogue (cc.db as SQLAlchemy makes it)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tally-detect-'));
    try {
      const file = join(dir, 'cc.db');
      (await createAppBuilderSqlite(file)).close();
      const src = await openSqliteSource(file);
      const d = detectShape(await src.tables(), undefined);
      await src.close();
      expect(d).toMatchObject({ ok: true, shape: { name: 'app-builder' } });
      expect(src.fingerprint).toBe(`sqlite://${file}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to guess: no design, or two designs merged in one database; --schema settles it', () => {
    expect(detectShape(new Set(['users', 'orders']), undefined)).toMatchObject({ ok: false, why: expect.stringMatching(/^no known shape matches the source's tables \(orders, users\)/) });
    const merged = new Set([...tablesOf('foundation.sql'), ...tablesOf('llm-relay.sql')]);
    expect(detectShape(merged, undefined)).toMatchObject({ ok: false, why: 'several shapes match (llm-relay, foundation); name one with --schema' });
    expect(detectShape(merged, 'foundation')).toMatchObject({ ok: true, detected: false, shape: { name: 'foundation' } });
    expect(detectShape(tablesOf('foundation.sql'), 'llm-relay')).toMatchObject({ ok: false, why: 'the source is not llm-relay: missing table(s) api_keys, upstream_accounts, usage_records' });
  });

  it("each built shape's signature is its design's, and reads only tables of that design", () => {
    for (const shape of SHAPES) {
      const design = DESIGNS.find((d) => d.name === shape.name);
      expect(design?.signature).toEqual(shape.signature);
      for (const step of shape.steps) expect(design?.tables).toContain(step.table);
    }
  });
});
