
import argon2 from 'argon2';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ImportReport } from '../src/modules/import/import.report.js';
import { TARGET } from './support/harness.js';
import { type ImportTarget, importHarness } from './support/import-cli.js';
import { createSource, fillLlmRelay, type LlmRelayFixture, type Source, SOURCE_URL } from './support/import-source.js';

vi.setConfig({ testTimeout: 180_000 });

/** `tally import` of seed 004's Prisma relay (docs/import.md), through the compiled CLI. */
describe(`tally import llm-relay (${TARGET})`, () => {
  const ih = importHarness('relay');
  let src: Source;
  let fixture: LlmRelayFixture;
  let target: ImportTarget;
  const run = (...args: string[]) => ih.run(target, ...args);
  const q = <R>(text: string): Promise<R[]> => ih.q<R>(target, text);

  beforeAll(async () => {
    await ih.start();
    target = ih.newTarget();
    src = await createSource('llm-relay');
    fixture = await fillLlmRelay(src, await argon2.hash('correct horse', { type: argon2.argon2id }));
    // A hostile source: an active upstream, first in priority, every model, pointed at its own server.
    await src.query(`insert into upstream_accounts (type, email, credentials, priority, updated_at) values ('openai', 'evil@example.com', '{"api_key": "sk-evil-0123456789", "base_url": "https://evil.example/v1"}', 0, now())`);
  }, 300_000);
  afterAll(async () => {
    await src?.drop();
    await ih.stop();
  });

  it('keeps SHA-256 key hashes and argon2 passwords, flags the rest for rotation or reset, seals upstream credentials, keeps usage as history, and imports nothing twice', async () => {
    const res = await run('import', '--from', SOURCE_URL, '--source-schema', src.schema, '--json');
    expect(res.code, res.err + res.out).toBe(0);
    const report = JSON.parse(res.out) as ImportReport;
    expect(report.detection).toMatch(/detected llm-relay/);
    expect(report.credits).toMatchObject({ source_total: 0, tally_total: 0, source_accounts: fixture.users, tally_accounts: fixture.users, match: true });
    expect(report.anomalies.by_kind).toEqual({ password_reset: 3, key_rotation: 3, orphan: 1, unknown_value: 1 });
    const table = (name: string) => report.tables.find((x) => x.table === name);
    expect(table('api_keys')).toMatchObject({ imported: 5, skipped_by_reason: { rotation: 1 } });
    expect(table('upstream_accounts')).toMatchObject({ imported: 3, skipped_by_reason: { unknown_value: 1 } });
    expect(table('usage_records')).toMatchObject({ imported: fixture.usageKept, skipped_by_reason: { orphan: 1, owner_not_imported: 1 } });

    const users = await q<{ id: string; password_hash: string | null; role: string; metadata: { password_reset_required?: boolean } }>('select id, password_hash, role, metadata from T.users order by id::bigint');
    expect(users.map((u) => u.password_hash?.startsWith('$argon2id$') ?? false)).toEqual([true, true, true, false, false, false]);
    expect(users.filter((u) => u.metadata.password_reset_required).length).toBe(3);
    expect(users[0]?.role).toBe('admin');
    expect(await q('select 1 from T.credit_ledger')).toEqual([]);
    const keys = await q<{ key_hash: string; scopes: string[]; revoked_at: Date | null }>('select key_hash, scopes, revoked_at from T.api_keys order by created_at, id');
    expect(keys.filter((k) => k.revoked_at === null).map((k) => k.key_hash).sort()).toEqual([...fixture.keptHashes].sort());
    expect(keys.filter((k) => k.revoked_at !== null)).toHaveLength(1);
    const ups = await q<{ id: string; type: string; name: string; base_url: string; models: string[]; credentials_enc: string; credentials_hint: string; is_active: boolean; priority: number; weight: number }>(
      'select id, type, name, base_url, models, credentials_enc, credentials_hint, is_active, priority, weight from T.gateway_upstreams order by type, name',
    );
    // Every upstream arrives inactive (the source chose where it sends prompts); models as in the source.
    expect(ups.map((u) => [u.type, u.name, u.is_active])).toEqual([['anthropic', 'oauth@example.com', false], ['openai', 'evil@example.com', false], ['openai', 'ops@example.com', false]]);
    for (const u of ups) {
      expect(u.credentials_enc).toMatch(/^v1\./);
      expect(u.credentials_enc).not.toMatch(/sk-test|sk-evil|at-123/);
      expect(u.models).toEqual(['*']);
    }
    expect(ups[1]).toMatchObject({ base_url: 'https://evil.example/v1', priority: 0 });
    expect(ups[2]).toMatchObject({ credentials_hint: 'mnop', priority: 2, weight: 50 });
    // …and each is listed for an operator's review, with where it would send traffic.
    expect(report.needs_review.map((r) => [r.target_id, r.details.base_url]).sort()).toEqual(ups.map((u) => [u.id, u.base_url]).sort());
    expect(report.needs_review.every((r) => r.table === 'upstream_accounts' && r.target_table === 'gateway_upstreams' && /review|inactive/.test(r.why))).toBe(true);
    const [h] = await q<{ n: number }>("select count(*)::int as n from T.imported_credit_history where type = 'usage' and amount = 0");
    expect(h?.n).toBe(fixture.usageKept);
    expect((await run('reconcile')).code).toBe(0);

    const again = JSON.parse((await run('import', '--from', SOURCE_URL, '--source-schema', src.schema, '--schema', 'llm-relay', '--json')).out) as ImportReport;
    expect(again.tables.map((x) => x.imported)).toEqual([0, 0, 0, 0]);
    const [n] = await q<{ users: number; keys: number; ups: number; hist: number }>('select (select count(*) from T.users)::int as users, (select count(*) from T.api_keys)::int as keys, (select count(*) from T.gateway_upstreams)::int as ups, (select count(*) from T.imported_credit_history)::int as hist');
    expect(n).toEqual({ users: 6, keys: 5, ups: 3, hist: fixture.usageKept });
    // The report for people names every upstream still waiting for review, and where it points.
    const human = await run('import', '--from', SOURCE_URL, '--source-schema', src.schema, '--schema', 'llm-relay');
    expect(human.out).toMatch(/needs review \(3, each says what to do\)/);
    for (const u of ups) expect(human.out).toContain(`gateway_upstreams ${u.id}`);
    expect(human.out).toContain('base_url https://evil.example/v1');
  });
});
