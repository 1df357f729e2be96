/**
 * The operator's Logs page in a real Chromium (Debian's /usr/bin/chromium driven by playwright-core,
 * never a downloaded browser) against a real Tally listening on a port, on the embedded database:
 * request logs filtered by status, route, user and request id, 5xx errors grouped by fingerprint,
 * latency by route. Every check compares the page with what the API answers, and the page loads with
 * no 4xx/5xx answer and no console error. TALLY_SCREENSHOTS=1 writes docs/screenshots/logs.png.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from './support/client.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const dashboardBuilt = existsSync(fileURLToPath(new URL('../dist/dashboard/index.html', import.meta.url)));
if (!haveChromium) console.warn(`SKIPPED dashboard logs browser test: ${CHROMIUM} is absent (apt-get install -y chromium; .ci/run does)`);
const shots = process.env['TALLY_SCREENSHOTS'] === '1'
  ? fileURLToPath(new URL('../docs/screenshots/', import.meta.url))
  : mkdtempSync(join(tmpdir(), 'tally-shots-'));

describe.skipIf(!haveChromium || TARGET !== 'pglite')('dashboard Logs page in Chromium', { timeout: 120_000 }, () => {
  let app: TestApp;
  let base: string;
  let context: BrowserContext;
  let userDir: string;

  const call = async (method: string, path: string, body?: unknown, token: string | null = app.serviceKey) => {
    const headers: Record<string, string> = {};
    if (token) headers['authorization'] = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, body: (await res.json()) as Json, requestId: res.headers.get('x-request-id') ?? '' };
  };

  beforeAll(async () => {
    if (!dashboardBuilt) throw new Error('dist/dashboard is missing: run `npm run build` first (npm ci does it)');
    app = await createTestApp({ observability: { requestLogs: { batchSize: 500, flushMs: 50, maxBuffered: 10_000 }, errorLogs: true, retentionDays: {} } });
    await app.server.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.server.address();
    if (!addr || typeof addr === 'string') throw new Error('no port');
    base = `http://127.0.0.1:${addr.port}`;
    userDir = mkdtempSync(join(tmpdir(), 'tally-chromium-'));
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(shots, { recursive: true });
  });
  afterAll(async () => {
    await context?.close();
    if (userDir) rmSync(userDir, { recursive: true, force: true });
    await app?.close();
  });

  it('filters requests by status, route, user and request id; groups errors; shows latency by route', async () => {
    const user = await call('POST', '/v1/users', { email: `logs_${randomBytes(4).toString('hex')}@example.com` });
    expect(user.status).toBe(201);
    const mine = await call('GET', `/v1/users/${user.body.id}`);
    expect(mine.status).toBe(200);
    const signed = await call('POST', '/v1/auth/signup', { email: `c_${randomBytes(4).toString('hex')}@example.com`, password: 'a long enough password' }, null);
    expect(signed.status).toBe(201);
    const own = await call('GET', `/v1/users/${signed.body.user.id}`, undefined, signed.body.access_token);
    expect(own.status).toBe(200);
    const missing = await call('GET', '/v1/users/usr_nobody_here');
    expect(missing.status).toBe(404);
    // A dependency failing inside the reconcile (the one fault a test may plant: nothing else fails on purpose).
    app.services.admin.reconcile = async () => {
      throw new RangeError('ledger scan failed at entry 17');
    };
    const failures = [await call('POST', '/v1/admin/reconcile'), await call('POST', '/v1/admin/reconcile')];
    expect(failures.map((f) => f.status)).toEqual([500, 500]);
    await app.services.observability.flush();

    const page = await context.newPage();
    await page.setViewportSize({ width: 1400, height: 1000 });
    const bad: string[] = [];
    page.on('response', (r) => r.status() >= 400 && bad.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`));
    page.on('console', (m) => m.type() === 'error' && bad.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => bad.push(`page error: ${e.message}`));
    await page.goto(`${base}/dashboard/`);
    await page.getByRole('tab', { name: 'Operator (service key)' }).click();
    await page.getByLabel('Service key').fill(app.serviceKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Logs', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Logs', exact: true }).waitFor();
    const requests = page.getByRole('table', { name: 'Request logs' });
    await requests.waitFor();

    // 5xx: exactly the two failed reconciles, as the API lists them.
    const form = page.getByRole('form', { name: 'Filter requests' });
    await form.getByLabel('Status').fill('5xx');
    await form.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/status=5xx/);
    await expect.poll(() => requests.locator('tbody tr').count()).toBe(2);
    const fromApi = await call('GET', '/v1/logs/requests?status_class=5');
    expect(fromApi.body.data.map((l: { request_id: string }) => l.request_id).sort()).toEqual(failures.map((f) => f.requestId).sort());
    for (const f of failures) await requests.getByText(f.requestId).waitFor();

    // Route and user: the one read of the user's row by its template.
    await form.getByLabel('Status').fill('');
    await form.getByLabel('Route').fill('/v1/users/:id');
    await form.getByLabel('User').fill('');
    await form.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/route=/);
    await requests.getByText(mine.requestId).waitFor();
    await requests.getByText(missing.requestId).waitFor();
    await form.getByLabel('Status').fill('404');
    await form.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/status=404/);
    await expect.poll(() => requests.locator('tbody tr').count()).toBe(1);
    await requests.getByText(missing.requestId).waitFor();

    // User: the signed-up customer's one authenticated request (sign-up itself was anonymous).
    await form.getByLabel('Status').fill('');
    await form.getByLabel('Route').fill('');
    await form.getByLabel('User').fill(signed.body.user.id);
    await form.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/user_id=/);
    await expect.poll(() => requests.locator('tbody tr').count()).toBe(1);
    await requests.getByText(own.requestId).waitFor();
    await requests.getByRole('link', { name: signed.body.user.id }).waitFor();

    // Errors grouped: one group, counted twice; its latest request opens the logs filtered to it.
    const groups = page.getByRole('table', { name: 'Error groups' });
    const group = groups.locator('tbody tr');
    await expect.poll(() => group.count()).toBe(1);
    await group.getByText('RangeError').waitFor();
    await expect.poll(() => group.locator('td[data-label="Count"]').textContent()).toBe('2');
    await group.getByRole('link', { name: failures[1]?.requestId ?? '' }).click();
    await page.waitForURL(/request_id=/);
    await expect.poll(() => requests.locator('tbody tr').count()).toBe(1);
    await requests.getByText(failures[1]?.requestId ?? '').waitFor();

    // Latency by route: the reconcile route with its two requests, both 5xx.
    const latency = page.getByRole('table', { name: 'Latency by route' });
    const reconcileRow = latency.locator('tbody tr', { hasText: 'POST /v1/admin/reconcile' });
    await reconcileRow.waitFor();
    expect(await reconcileRow.locator('td[data-label="Requests"]').textContent()).toBe('2');
    expect(await reconcileRow.locator('td[data-label="5xx"]').textContent()).toBe('2');

    await page.screenshot({ path: join(shots, 'logs.png'), fullPage: true });
    expect(bad).toEqual([]);
    await page.close();
  });
});
