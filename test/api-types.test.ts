import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { apiTypes, GENERATED, hoistTitledSchemas, liveOpenApi } from '../scripts/api-types.js';
import { TARGET } from './support/harness.js';
import type { Json } from './support/client.js';

/** The first line where two texts differ, with a little context, instead of a 13,000-line diff. */
function firstDifference(committed: string, generated: string): string {
  const a = committed.split('\n');
  const b = generated.split('\n');
  const i = a.findIndex((line, n) => line !== b[n]);
  const at = i === -1 ? a.length : i;
  const show = (lines: string[]) => lines.slice(Math.max(0, at - 3), at + 3).join('\n');
  return `line ${at + 1} differs (committed ${a.length} lines, generated ${b.length}).\n--- committed:\n${show(a)}\n--- generated:\n${show(b)}`;
}

describe(`the API types (client package, dashboard) are generated from /openapi.json (${TARGET})`, () => {
  it('clients/typescript/src/api.gen.ts is what `npm run gen:api` writes from the live document (stale: run it and commit)', { timeout: 120_000 }, async () => {
    const generated = await apiTypes(await liveOpenApi());
    const committed = readFileSync(GENERATED, 'utf8');
    if (committed !== generated) expect.fail(`clients/typescript/src/api.gen.ts is stale: run \`npm run gen:api\`. ${firstDifference(committed, generated)}`);
  });

  it('hoisting titled schemas names each shape once and refuses two shapes with one title', () => {
    const schema = (title: string, extra: object = {}) => ({ title, type: 'object', properties: { id: { type: 'string' }, ...extra } });
    const doc = {
      openapi: '3.1.0',
      info: { title: 't', version: '1' },
      paths: {
        '/a': { get: { responses: { 200: { description: 'ok', content: { 'application/json': { schema: { type: 'object', properties: { a: schema('A'), title: { type: 'string' } } } } } } } } },
        '/b': { get: { responses: { 200: { description: 'ok', content: { 'application/json': { schema: schema('A'), example: { title: 'data' } } } } } } },
      },
    };
    const out = hoistTitledSchemas(doc as never) as unknown as { paths: Record<string, Json>; components: { schemas: Record<string, unknown> } };
    expect(Object.keys(out.components.schemas)).toEqual(['A']);
    expect(out.paths['/b'].get.responses[200].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/A' });
    expect(out.paths['/b'].get.responses[200].content['application/json'].example).toEqual({ title: 'data' });
    // A property named `title` is a property, not a schema's title.
    expect(out.paths['/a'].get.responses[200].content['application/json'].schema.properties).toEqual({ a: { $ref: '#/components/schemas/A' }, title: { type: 'string' } });
    const clash = structuredClone(doc);
    clash.paths['/b'].get.responses[200].content['application/json'].schema = schema('A', { extra: { type: 'number' } });
    expect(() => hoistTitledSchemas(clash as never)).toThrow(/two different schemas are titled A/);
  });
});
