/**
 * Every route the app documents is classified (who may call it, which scope it needs), the
 * classification agrees with the OpenAPI document, and the error catalogue is one closed list in
 * code, spec and OpenAPI. Reads the document only: no fixtures.
 *
 * Part of the shared security suite: its set-up and the classification of every route are in
 * test/support/security-suite.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../src/core/errors.js';
import { ERROR_STATUS } from '../src/http/errors.js';
import { app, isPublic, ops, protectedOps, ROUTES, useSecuritySuite } from './support/security-suite.js';
import { must } from '../src/lib/must.js';
import type { Json } from './support/client.js';

useSecuritySuite({ documentOnly: true });

describe('every route is classified, and the classification matches the OpenAPI document', () => {
  it('the route table lists exactly the operations in /openapi.json (classify new routes here)', () => {
    expect(ops.length).toBeGreaterThan(10);
    const documented = ops.map((o) => o.key).sort();
    expect(documented).toEqual(Object.keys(ROUTES).sort());
  });

  it('the operations without a security requirement are exactly the public ones', () => {
    const unsecured = ops.filter((o) => !o.operation.security || o.operation.security.length === 0).map((o) => o.key).sort();
    expect(unsecured).toEqual(Object.entries(ROUTES).filter(([, r]) => r.auth === 'public').map(([k]) => k).sort());
    expect(unsecured.every(isPublic)).toBe(true);
  });

  it('every protected operation documents 401 and 403 with the Error schema', () => {
    const missing = protectedOps().flatMap((op) =>
      ['401', '403'].filter((s) => !(op.operation.responses && s in op.operation.responses)).map((s) => `${op.key} lacks ${s}`),
    );
    expect(protectedOps().length).toBeGreaterThan(0);
    expect(missing).toEqual([]);
  });

  it('public endpoints answer without credentials', async () => {
    for (const url of ['/health', '/openapi.json']) {
      expect((await app.server.inject({ method: 'GET', url })).statusCode, url).toBe(200);
    }
    expect((await app.server.inject({ method: 'GET', url: '/docs' })).statusCode).toBeLessThan(400);
  });
});

describe('the error catalogue is one closed list, the same in code, spec and OpenAPI', () => {
  const specPath = fileURLToPath(new URL('../../shared/spec/API.md', import.meta.url));
  const specExists = existsSync(specPath);

  it.skipIf(!specExists)(
    specExists
      ? 'every code in ERROR_STATUS appears in ../shared/spec/API.md with the same status, and nothing else does'
      : `SKIPPED: ../shared/spec/API.md not found at ${specPath}; cannot compare the error catalogue with the spec`,
    () => {
      const text = readFileSync(specPath, 'utf8');
      const table: Record<string, number> = {};
      for (const m of text.matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|\s*$/gm)) table[must(m[1], 'm[1]')] = Number(m[2]);
      expect(Object.keys(table).length).toBeGreaterThan(5);
      expect(table).toEqual({ ...ERROR_STATUS });
    },
  );

  it("the OpenAPI Error schema's code enum equals the catalogue, on every documented error response", () => {
    const enumOf = (schema: unknown): string[] | null => {
      const s = schema as { enum?: unknown[]; const?: unknown; anyOf?: unknown[]; oneOf?: unknown[] } | undefined;
      if (!s) return null;
      if (Array.isArray(s.enum)) return s.enum.map(String);
      if (s.const !== undefined) return [String(s.const)];
      const parts = s.anyOf ?? s.oneOf;
      if (Array.isArray(parts)) return parts.flatMap((p) => enumOf(p) ?? ['<not an enum>']);
      return null;
    };
    const catalogue = [...ERROR_CODES].sort();
    const problems: string[] = [];
    let checked = 0;
    for (const op of ops) {
      for (const [status, response] of Object.entries(op.operation.responses ?? {})) {
        if (Number(status) < 400) continue;
        const schema = (response as { content?: Record<string, { schema?: Record<string, Json> }> }).content?.['application/json']?.schema;
        if (!schema) {
          problems.push(`${op.key} ${status}: no application/json schema`);
          continue;
        }
        if (schema['title'] !== 'Error') problems.push(`${op.key} ${status}: schema is not the Error schema`);
        const codes = enumOf(schema['properties']?.error?.properties?.code);
        if (!codes) problems.push(`${op.key} ${status}: error.code has no enum`);
        else if (JSON.stringify([...codes].sort()) !== JSON.stringify(catalogue)) problems.push(`${op.key} ${status}: code enum ${codes.join(',')}`);
        // A documented error status must be the status of some code in the catalogue.
        if (!Object.values(ERROR_STATUS).includes(Number(status) as never)) problems.push(`${op.key}: documents ${status}, which no error code has`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(ops.length);
    expect(problems).toEqual([]);
  });
});
