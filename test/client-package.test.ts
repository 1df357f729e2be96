import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTally, type Schema, TallyError, unwrap } from '../clients/typescript/src/index.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

const run = promisify(execFile);
const PACKAGE = fileURLToPath(new URL('../clients/typescript/', import.meta.url));

/**
 * The client package (clients/typescript) against a real Tally listening on a port: typed calls,
 * the catalogue's errors as TallyError, and retries that keep their Idempotency-Key.
 */
describe(`the TypeScript client package (${TARGET})`, () => {
  let app: TestApp;
  let baseUrl: string;
  let serviceKey: string;

  beforeAll(async () => {
    app = await createTestApp();
    await app.server.listen({ port: 0, host: '127.0.0.1' });
    baseUrl = `http://127.0.0.1:${(app.server.server.address() as AddressInfo).port}`;
    serviceKey = app.config.auth.serviceKey;
  });
  afterAll(async () => {
    await app.close();
  });

  const newUser = async (tally: ReturnType<typeof createTally>, credits: number) => {
    const user = await unwrap(tally.POST('/v1/users', { body: { email: `c_${randomBytes(5).toString('hex')}@example.com` } }));
    await unwrap(tally.POST('/v1/credits/grant', { body: { user_id: user.id, amount: credits, reason: 'fund' } }));
    return user;
  };
  const balanceOf = async (tally: ReturnType<typeof createTally>, id: string): Promise<Schema<'Balance'>> =>
    unwrap(tally.GET('/v1/users/{id}/balance', { params: { path: { id } } }));

  it('a debit whose answer was lost is retried with the same Idempotency-Key and charged once', async () => {
    const keys: string[] = [];
    let lose = 1;
    const tally = createTally({
      baseUrl,
      token: serviceKey,
      retryDelayMs: 10,
      // Tally answers, but the answer never reaches the caller (a dropped connection) — once.
      fetch: async (request) => {
        if (request.url.endsWith('/v1/credits/debit')) keys.push(request.headers.get('idempotency-key') ?? '');
        const response = await fetch(request);
        if (request.url.endsWith('/v1/credits/debit') && lose-- > 0) throw new TypeError('socket hang up');
        return response;
      },
    });
    const user = await newUser(tally, 50);
    const tx = await unwrap(tally.POST('/v1/credits/debit', { body: { user_id: user.id, amount: 7, reason: 'render' } }));
    expect(tx.transaction.amount).toBe(-7);
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe(keys[0]);
    // Sign-up bonus 3 + 50 − 7: one debit, not two.
    expect((await balanceOf(tally, user.id)).balance).toBe(3 + 50 - 7);
  });

  it('two calls get two keys; a key the caller sets is the one sent', async () => {
    const keys: string[] = [];
    const tally = createTally({
      baseUrl,
      token: serviceKey,
      fetch: (request) => {
        if (request.method === 'POST') keys.push(request.headers.get('idempotency-key') ?? '');
        return fetch(request);
      },
    });
    const user = await newUser(tally, 20);
    const debit = () => tally.POST('/v1/credits/debit', { body: { user_id: user.id, amount: 2, reason: 'r' }, headers: { 'idempotency-key': `mine-${user.id}` } });
    await unwrap(debit());
    await unwrap(debit()); // the same key: Tally replays, nothing more is charged
    expect(keys.slice(-2)).toEqual([`mine-${user.id}`, `mine-${user.id}`]);
    expect(new Set(keys.slice(0, 2)).size).toBe(2);
    expect((await balanceOf(tally, user.id)).balance).toBe(3 + 20 - 2);
  });

  it("refusals are TallyErrors carrying the catalogue's code, status and details", async () => {
    const tally = createTally({ baseUrl, token: serviceKey });
    const user = await newUser(tally, 5);
    const err = await unwrap(tally.POST('/v1/credits/debit', { body: { user_id: user.id, amount: 100, reason: 'too much' } })).catch((e: unknown) => e);
    expect(TallyError.is(err, 'insufficient_credits')).toBe(true);
    if (!TallyError.is(err, 'insufficient_credits')) return;
    expect(err.status).toBe(402);
    expect(err.details).toMatchObject({ needed: 100, available: 8 });
    expect(err.requestId).toEqual(expect.any(String));
    const stranger = createTally({ baseUrl, token: 'tly_not_a_key' });
    const denied = await unwrap(stranger.GET('/v1/users/{id}/balance', { params: { path: { id: user.id } } })).catch((e: unknown) => e);
    expect(TallyError.is(denied, 'unauthenticated')).toBe(true);
    // No answer at all: a network error, after the retries.
    const away = createTally({ baseUrl: 'http://127.0.0.1:9', token: serviceKey, retryDelayMs: 1 });
    const lost = await unwrap(away.GET('/v1/users/{id}/balance', { params: { path: { id: user.id } } })).catch((e: unknown) => e);
    expect(TallyError.is(lost, 'network')).toBe(true);
  });

  it('503 unavailable is retried (Retry-After honoured) until Tally answers', async () => {
    let unavailable = 2;
    const seen: number[] = [];
    const tally = createTally({
      baseUrl,
      token: serviceKey,
      fetch: async (request) => {
        if (request.url.includes('/balance') && unavailable-- > 0) {
          seen.push(Date.now());
          return new Response(JSON.stringify({ error: { code: 'unavailable', message: 'away', request_id: 'r' } }), { status: 503, headers: { 'retry-after': '0.05' } });
        }
        return fetch(request);
      },
    });
    const user = await newUser(tally, 1);
    expect((await balanceOf(tally, user.id)).balance).toBe(4);
    expect(seen).toHaveLength(2);
  });

  it('works from a separate Node process as a built package (examples/quickstart.mjs, the README example)', { timeout: 120_000 }, async () => {
    // Built into a directory of its own (both databases' runs build at once), installed there as
    // an app would have it: node_modules/@tally/client and its one dependency.
    const app_ = mkdtempSync(join(tmpdir(), 'tally-client-'));
    const installed = join(app_, 'node_modules', '@tally', 'client');
    mkdirSync(join(app_, 'node_modules', '@tally'), { recursive: true });
    cpSync(PACKAGE, installed, { recursive: true, filter: (src) => !/[/\\](dist|node_modules)$/.test(src) });
    symlinkSync(fileURLToPath(new URL('../node_modules/openapi-fetch', import.meta.url)), join(app_, 'node_modules', 'openapi-fetch'));
    await run(process.execPath, [fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', join(installed, 'tsconfig.json')], { cwd: installed });
    cpSync(join(PACKAGE, 'examples'), join(app_, 'examples'), { recursive: true });
    const { stdout } = await run(process.execPath, ['examples/quickstart.mjs'], {
      cwd: app_,
      env: { ...process.env, TALLY_URL: baseUrl, TALLY_SERVICE_KEY: serviceKey, EMAIL: `q_${randomBytes(5).toString('hex')}@example.com` },
    });
    const out = JSON.parse(stdout) as { user: string; balance: number; refused: { status: number; code: string; details: { needed: number; available: number } } };
    expect(out.balance).toBe(3 + 100 - 30);
    expect(out.refused).toMatchObject({ status: 402, code: 'insufficient_credits', details: { needed: 1000, available: 73 } });
  });
});
