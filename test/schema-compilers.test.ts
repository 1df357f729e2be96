import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schemaCompilers } from '../src/http/schema-compilers.js';
import { createTestApp, type TestApp } from './support/harness.js';

/**
 * Route schemas compile on first use (src/http/schema-compilers.ts). These tests make sure that
 * laziness hides nothing: every route's validators and serializers compile, and a lazily compiled
 * validator still reports what was wrong.
 */
describe('route schemas compiled on first use', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
    await app.server.ready();
  });
  afterAll(() => app.close());

  it('every route schema compiles (warmSchemas resolves)', async () => {
    await expect(app.server.warmSchemas()).resolves.toBeUndefined();
  });

  it('a lazily compiled validator still names the offending field', async () => {
    const bad = await app.server.inject({
      method: 'POST',
      url: '/v1/users',
      headers: { authorization: `Bearer ${app.serviceKey}` },
      payload: { email: 'not-an-email' },
    });
    expect(bad.statusCode).toBe(400);
    expect(JSON.stringify(bad.json())).toContain('email');
    const ok = await app.server.inject({ method: 'GET', url: '/health' });
    expect(ok.statusCode).toBe(200);
  });
});

describe('schemaCompilers', () => {
  it('warm() finds a schema that does not compile before any request does', async () => {
    const compilers = schemaCompilers();
    const server = Fastify();
    server.setValidatorCompiler(compilers.validatorCompiler);
    server.setSerializerCompiler(compilers.serializerCompiler);
    server.post('/x', { schema: { body: { type: 'object', properties: { a: { type: 'no-such-type' } } } } }, async () => ({}));
    await server.ready();
    await expect(compilers.warm()).rejects.toThrow();
    await server.close();
  });

  it('a serializer answers with the schema, not the object (unknown fields dropped)', async () => {
    const compilers = schemaCompilers();
    const server = Fastify();
    server.setSerializerCompiler(compilers.serializerCompiler);
    const schema = { response: { 200: { type: 'object', properties: { shown: { type: 'string' } } } } };
    server.get('/y', { schema }, async () => ({ shown: 'yes', secret: 'no' }));
    expect((await server.inject({ method: 'GET', url: '/y' })).json()).toEqual({ shown: 'yes' });
    await server.close();
  });
});
