/**
 * The operator's catalogue, workspaces, outgoing webhooks, mail and storage pages in a real Chromium
 * (Debian's /usr/bin/chromium driven by playwright-core; never a downloaded browser) against a real
 * Tally listening on a port, on the embedded database. Every check reads back through the API what the
 * page did, and each page loads with no 4xx/5xx answer and no console error. The app's webhook
 * receiver is the one faked edge: a plain HTTP server on 127.0.0.1. TALLY_SCREENSHOTS=1 writes the
 * screenshots into docs/screenshots/ (see test/dashboard.browser.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_WEBHOOKS_OUT } from '../src/config/config.js';
import type { Json } from './support/client.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const dashboardBuilt = existsSync(fileURLToPath(new URL('../dist/dashboard/index.html', import.meta.url)));
if (!haveChromium) console.warn(`SKIPPED dashboard browser tests: ${CHROMIUM} is absent (apt-get install -y chromium; .ci/run does)`);
const shots = process.env['TALLY_SCREENSHOTS'] === '1'
  ? fileURLToPath(new URL('../docs/screenshots/', import.meta.url))
  : mkdtempSync(join(tmpdir(), 'tally-shots-'));

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

describe.skipIf(!haveChromium || TARGET !== 'pglite')('dashboard pages in Chromium: catalogue, workspaces, webhooks, mail, storage', { timeout: 120_000 }, () => {
  let app: TestApp;
  let base: string;
  let context: BrowserContext;
  let userDir: string;
  let receiver: Server;
  let receiverUrl: string;
  const received: Received[] = [];
  const password = 'a long enough password';
  let alice: { id: string; email: string; token: string };
  let bob: { id: string; email: string; token: string };

  const call = async (method: string, path: string, body?: unknown, token: string | null = app.serviceKey, idem?: string) => {
    const headers: Record<string, string> = {};
    if (token) headers['authorization'] = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (idem) headers['idempotency-key'] = idem;
    const res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const key = () => randomBytes(6).toString('hex');
  /** A job of Bob's that ends `outcome`: the one kind of event Tally emits so far (job.completed / job.failed). */
  const finishedJob = async (outcome: 'complete' | 'fail', cost: number) => {
    const job = await call('POST', '/v1/jobs', { user_id: bob.id, kind: 'video', model: 'veo3', input: {}, cost }, app.serviceKey, `j-${key()}`);
    expect(job.status, JSON.stringify(job.body)).toBe(201);
    const done = await call('POST', `/v1/jobs/${job.body.id}/${outcome}`, outcome === 'fail' ? { error: 'boom' } : {}, app.serviceKey, `d-${key()}`);
    expect(done.status).toBe(200);
    return job.body.id as string;
  };
  const signUp = async (email: string) => {
    const res = await call('POST', '/v1/auth/signup', { email, password }, null);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const user = res.body.user as { id: string; email: string };
    return { ...user, token: res.body.access_token as string };
  };

  /**
   * A page that records every 4xx/5xx answer and console error; `allow` names the refusals a test
   * provokes on purpose (method and path prefix), which are then expected, not tolerated in general.
   */
  async function operatorPage(allow: { status: number; method: string; path: string }[] = []) {
    const page = await context.newPage();
    await page.setViewportSize({ width: 1280, height: 900 });
    const bad: string[] = [];
    const allowed = (status: number, method: string, path: string) => allow.some((a) => a.status === status && a.method === method && path.startsWith(a.path));
    page.on('response', (r) => {
      const path = new URL(r.url()).pathname;
      if (r.status() >= 400 && !allowed(r.status(), r.request().method(), path)) bad.push(`${r.status()} ${r.request().method()} ${path}`);
    });
    page.on('console', (m) => {
      // Chromium logs each failed fetch as a console error naming its URL: allowed when its answer was.
      const url = m.location().url;
      const expected = url && allow.some((a) => new URL(url, base).pathname.startsWith(a.path));
      if (m.type() === 'error' && !expected) bad.push(`console: ${m.text()} (${url})`);
    });
    page.on('pageerror', (e) => bad.push(`page error: ${e.message}`));
    await page.goto(`${base}/dashboard/`);
    await page.getByRole('tab', { name: 'Operator (service key)' }).click();
    await page.getByLabel('Service key').fill(app.serviceKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    return { page, bad };
  }
  const nav = async (page: Page, name: string, heading = name) => {
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).click();
    await page.getByRole('heading', { level: 1, name: heading, exact: true }).waitFor();
  };

  beforeAll(async () => {
    if (!dashboardBuilt) throw new Error('dist/dashboard is missing: run `npm run build` first (npm ci does it)');
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('thanks');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
    app = await createTestApp({ webhooksOut: { ...DEFAULT_WEBHOOKS_OUT, allowPrivate: true, timeoutMs: 2_000 } });
    await app.server.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.server.address();
    if (!addr || typeof addr === 'string') throw new Error('no port');
    base = `http://127.0.0.1:${addr.port}`;
    alice = await signUp(`alice_${key()}@example.com`);
    bob = await signUp(`bob_${key()}@example.com`);
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
    await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
  });

  it('the users list shows each user\'s balance, as the API reports it, from the list alone', async () => {
    expect((await call('POST', '/v1/credits/grant', { user_id: alice.id, amount: 1200, reason: 'pack' }, app.serviceKey, `g-${key()}`)).status).toBe(201);
    expect((await call('POST', '/v1/holds', { user_id: alice.id, amount: 200 }, app.serviceKey, `h-${key()}`)).status).toBe(201);
    const { page, bad } = await operatorPage();
    const reads: string[] = [];
    page.on('request', (r) => {
      const path = new URL(r.url()).pathname;
      if (path.startsWith('/v1/')) reads.push(`${r.method()} ${path}`);
    });
    await nav(page, 'Users');
    const table = page.getByRole('table', { name: 'Users' });
    for (const u of [alice, bob]) {
      const api = (await call('GET', `/v1/users/${u.id}/balance`)).body as { balance: number; held: number };
      const cell = table.getByRole('row').filter({ hasText: u.email }).getByTestId(`balance-${u.id}`);
      await expect.poll(() => cell.textContent()).toBe(
        api.held > 0 ? `${api.balance.toLocaleString('en-US')} (${api.held.toLocaleString('en-US')} held)` : api.balance.toLocaleString('en-US'),
      );
    }
    expect(await table.getByRole('row').filter({ hasText: alice.email }).textContent()).toContain('1,203 (200 held)');
    await page.waitForLoadState('networkidle');
    // One list read per page, no read per row (GET /v1/users answers balance and held).
    expect(reads.filter((r) => r.endsWith('/balance'))).toEqual([]);
    expect(reads).toContain('GET /v1/users');
    expect(bad).toEqual([]);
    await page.close();
  });

  it('an operator creates and edits a plan and a cost model; refused input shows the API\'s message and changes nothing', async () => {
    const slug = `team-${key()}`;
    const { page, bad } = await operatorPage([{ status: 400, method: 'POST', path: '/v1/cost-models' }]);
    await nav(page, 'Plans');
    await page.getByRole('button', { name: 'New plan' }).click();
    const form = page.getByRole('form', { name: 'New plan' });
    await form.getByLabel('Slug').fill(slug);
    await form.getByLabel('Plan name').fill('Team');
    await form.getByLabel('Monthly price').fill('19.9');
    await form.getByLabel('Trial days').fill('7');
    await form.getByRole('button', { name: 'Add allowance' }).click();
    const allowance = form.getByRole('group', { name: 'Allowance 1' });
    // The class is a choice among the configured ones, as GET /v1/credit-classes lists them.
    const configured = ((await call('GET', '/v1/credit-classes')).body as { data: { name: string }[] }).data.map((c) => c.name);
    expect(configured).toContain('RC');
    await expect.poll(() => allowance.getByLabel('Class').locator('option:not([disabled])').allTextContents()).toEqual(configured);
    await allowance.getByLabel('Class').selectOption('RC');
    await allowance.getByLabel('Amount').fill('500');
    await allowance.getByLabel('Rollover').selectOption('1_cycle');
    // A price that is not an amount is refused before anything is sent.
    await form.getByLabel('Yearly price').fill('lots');
    await form.getByRole('button', { name: 'Create plan' }).click();
    await expect.poll(() => form.getByRole('alert').textContent()).toContain('is not an amount');
    expect((await call('GET', `/v1/plans/${slug}`)).status).toBe(404);
    await form.getByLabel('Yearly price').fill('');
    await form.getByRole('button', { name: 'Create plan' }).click();
    const row = page.getByRole('table', { name: 'Plans' }).getByRole('row').filter({ hasText: slug });
    await row.waitFor();
    const created = (await call('GET', `/v1/plans/${slug}`)).body;
    expect(created).toMatchObject({
      name: 'Team', price_monthly: 1990, price_yearly: null, currency: 'usd', trial_days: 7, is_active: true,
      allowances: [{ class: 'RC', amount: 500, window: 'monthly', rollover_policy: '1_cycle' }],
    });
    expect(await row.getByRole('cell').allTextContents()).toEqual(expect.arrayContaining(['$19.90', 'not offered', '7 days', '500 RC/monthly']));

    // Edit: a yearly price, a second allowance, inactive.
    await row.getByRole('button', { name: 'Edit Team' }).click();
    const edit = page.getByRole('form', { name: 'Edit plan Team' });
    await edit.getByLabel('Plan name').fill('Team plus');
    await edit.getByLabel('Yearly price').fill('199');
    await edit.getByRole('button', { name: 'Add allowance' }).click();
    await edit.getByRole('group', { name: 'Allowance 2' }).getByLabel('Class').selectOption('BC');
    await edit.getByRole('group', { name: 'Allowance 2' }).getByLabel('Window').selectOption('daily');
    await edit.getByLabel('Active').uncheck();
    await edit.getByRole('button', { name: 'Save plan' }).click();
    await page.getByRole('table', { name: 'Plans' }).getByRole('row').filter({ hasText: 'Team plus' }).waitFor();
    expect((await call('GET', `/v1/plans/${slug}`)).body).toMatchObject({
      name: 'Team plus', price_monthly: 1990, price_yearly: 19900, is_active: false,
      allowances: expect.arrayContaining([
        { class: 'RC', amount: 500, window: 'monthly', rollover_policy: '1_cycle' },
        { class: 'BC', amount: 100, window: 'daily', rollover_policy: 'none' },
      ]),
    });

    // Cost models: a formula the API refuses shows its message, and no model exists; then one it takes.
    const metric = `tokens_${key()}`;
    await page.getByRole('button', { name: 'New cost model' }).click();
    const cm = page.getByRole('form', { name: 'New cost model' });
    await cm.getByLabel('Metric').fill(metric);
    await cm.getByLabel('Formula').fill('quantity * nonsense(');
    await cm.getByRole('button', { name: 'Create cost model' }).click();
    await expect.poll(() => cm.getByRole('alert').textContent()).toMatch(/formula|HTTP 400/i);
    expect((await call('GET', `/v1/cost-models/${metric}`)).status).toBe(404);
    await cm.getByLabel('Formula').fill('quantity * base_rate');
    await cm.getByLabel('Base rate').fill('0.25');
    await cm.getByLabel('Free per day').fill('1000');
    await expect.poll(() => cm.getByLabel('Credit class').locator('option').allTextContents()).toEqual(["the API's default", ...configured]);
    await cm.getByLabel('Credit class').selectOption('BC');
    await cm.getByRole('button', { name: 'Create cost model' }).click();
    const models = page.getByRole('table', { name: 'Cost models' });
    await models.getByRole('row').filter({ hasText: metric }).waitFor();
    expect((await call('GET', `/v1/cost-models/${metric}`)).body).toMatchObject({ formula: 'quantity * base_rate', base_rate: '0.25', class: 'BC', daily_free_quota: 1000, is_active: true });
    await models.getByRole('button', { name: `Edit ${metric}` }).click();
    const cmEdit = page.getByRole('form', { name: `Edit cost model ${metric}` });
    expect(await cmEdit.getByLabel('Credit class').inputValue()).toBe('BC'); // the stored class, kept on edit
    await cmEdit.getByLabel('Formula').fill('ceil(quantity / 1000) * base_rate');
    await cmEdit.getByRole('button', { name: 'Save cost model' }).click();
    await models.getByRole('row').filter({ hasText: 'ceil(quantity / 1000) * base_rate' }).waitFor();
    expect((await call('GET', `/v1/cost-models/${metric}`)).body).toMatchObject({ formula: 'ceil(quantity / 1000) * base_rate', class: 'BC' });
    await page.screenshot({ path: join(shots, 'plans.png'), fullPage: true });
    await page.waitForLoadState('networkidle');
    expect(bad).toEqual([]);
    await page.close();
  });

  it('the workspaces page lists workspaces; a workspace shows its pool\'s balance and its members with their roles, which the operator adds, changes and removes', async () => {
    const ws = await call('POST', '/v1/workspaces', { name: 'Render farm', owner_id: alice.id }, app.serviceKey, `w-${key()}`);
    expect(ws.status, JSON.stringify(ws.body)).toBe(201);
    const id = ws.body.id as string;
    expect((await call('POST', `/v1/workspaces/${id}/members`, { user_id: bob.id, role: 'viewer' })).status).toBe(201);
    expect((await call('POST', '/v1/credits/grant', { workspace_id: id, amount: 5000, reason: 'team pack' }, app.serviceKey, `g-${key()}`)).status).toBe(201);
    expect((await call('POST', '/v1/holds', { workspace_id: id, amount: 300 }, app.serviceKey, `h-${key()}`)).status).toBe(201);

    const { page, bad } = await operatorPage([{ status: 409, method: 'POST', path: `/v1/workspaces/${id}/members` }]);
    await nav(page, 'Workspaces');
    await page.getByRole('table', { name: 'Workspaces' }).getByRole('link', { name: 'Render farm' }).click();
    await page.getByRole('heading', { name: 'Render farm' }).waitFor();
    const pool = (await call('GET', `/v1/workspaces/${id}/balance`)).body as { balance: number; available: number };
    await expect.poll(() => page.getByTestId('pool-balance').textContent()).toBe(pool.balance.toLocaleString('en-US'));
    expect(await page.getByTestId('pool-available').textContent()).toBe(pool.available.toLocaleString('en-US'));
    expect(pool).toMatchObject({ balance: 5000, available: 4700 });
    const members = page.getByRole('table', { name: 'Members' });
    expect(await members.getByRole('row').filter({ hasText: alice.id }).textContent()).toContain('owner');
    expect(await members.getByRole('row').filter({ hasText: alice.id }).getByRole('combobox').count()).toBe(0);
    expect(await page.getByLabel(`Role of ${bob.id}`).inputValue()).toBe('viewer');
    const roster = async () => ((await call('GET', `/v1/workspaces/${id}/members`)).body.data as { user_id: string; role: string }[]).map((m) => `${m.user_id}:${m.role}`).sort();

    // Bob becomes a member; Carol is added as an admin, then removed; adding Bob twice is refused.
    await page.getByLabel(`Role of ${bob.id}`).selectOption('member');
    await expect.poll(roster).toEqual([`${alice.id}:owner`, `${bob.id}:member`].sort());
    const carol = await signUp(`carol_${key()}@example.com`);
    const add = page.getByRole('form', { name: 'Add a member' });
    await add.getByLabel('User id').fill(carol.id);
    await add.getByLabel('Role').selectOption('admin');
    await add.getByRole('button', { name: 'Add member' }).click();
    await members.getByRole('row').filter({ hasText: carol.id }).waitFor();
    expect(await roster()).toEqual([`${alice.id}:owner`, `${bob.id}:member`, `${carol.id}:admin`].sort());
    await page.screenshot({ path: join(shots, 'workspace.png'), fullPage: true });
    await add.getByLabel('User id').fill(bob.id);
    await add.getByRole('button', { name: 'Add member' }).click();
    await expect.poll(() => page.getByRole('alert').first().textContent()).toMatch(/already a member/);
    page.once('dialog', (d) => void d.accept());
    await members.getByRole('button', { name: `Remove ${carol.id}` }).click();
    await expect.poll(roster).toEqual([`${alice.id}:owner`, `${bob.id}:member`].sort());
    await page.getByRole('button', { name: 'Add member' }).waitFor();
    expect(await page.getByRole('table', { name: 'Pool ledger' }).textContent()).toContain('team pack');
    await page.waitForLoadState('networkidle');
    expect(bad).toEqual([]);
    await page.close();
  });

  it('a customer sees their workspaces on their page and a workspace\'s pool and members read-only; not a workspace they are not in', async () => {
    const studio = await call('POST', '/v1/workspaces', { name: 'Studio', owner_id: alice.id }, app.serviceKey, `w-${key()}`);
    const secret = await call('POST', '/v1/workspaces', { name: 'Secret lab', owner_id: alice.id }, app.serviceKey, `w-${key()}`);
    expect([studio.status, secret.status]).toEqual([201, 201]);
    expect((await call('POST', `/v1/workspaces/${studio.body.id}/members`, { user_id: bob.id, role: 'member' })).status).toBe(201);
    expect((await call('POST', '/v1/credits/grant', { workspace_id: studio.body.id, amount: 700, reason: 'studio pack' }, app.serviceKey, `g-${key()}`)).status).toBe(201);
    const other = `/v1/workspaces/${secret.body.id}`;

    const page = await context.newPage();
    await page.setViewportSize({ width: 1280, height: 900 });
    const bad: string[] = [];
    // Bob's page asks for his budget guard (none: 404); the workspace he is not in is refused, on purpose.
    const expected = (path: string) => path.startsWith(other) || path === `/v1/users/${bob.id}/budget-guard`;
    page.on('response', (r) => {
      const path = new URL(r.url()).pathname;
      if (r.status() >= 400 && !expected(path)) bad.push(`${r.status()} ${r.request().method()} ${path}`);
    });
    page.on('console', (m) => {
      const url = m.location().url;
      if (m.type() === 'error' && !(url && expected(new URL(url).pathname))) bad.push(`console: ${m.text()} (${url})`);
    });
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('E-mail').fill(bob.email);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: bob.email }).waitFor();
    const mine = page.getByRole('table', { name: 'Workspaces' });
    await mine.getByRole('link', { name: 'Studio' }).waitFor();
    expect(await mine.textContent()).not.toContain('Secret lab');
    await mine.getByRole('link', { name: 'Studio' }).click();
    await page.getByRole('heading', { name: 'Studio' }).waitFor();
    await expect.poll(() => page.getByTestId('pool-balance').textContent()).toBe('700');
    const members = page.getByRole('table', { name: 'Members' });
    await members.getByRole('row').filter({ hasText: bob.id }).waitFor();
    expect(await members.getByRole('row').filter({ hasText: bob.id }).textContent()).toContain('member');
    // Read-only for a member: no roster form, no role select, no remove button.
    expect(await page.getByRole('form', { name: 'Add a member' }).count()).toBe(0);
    expect(await members.getByRole('combobox').count()).toBe(0);
    expect(await members.getByRole('button').count()).toBe(0);

    await page.goto(`${base}/dashboard/workspaces/${secret.body.id}`);
    expect(await page.getByRole('alert').first().textContent()).toMatch(/not found|forbidden|member/i);
    expect(await page.getByText('Secret lab').count()).toBe(0);
    expect(await page.getByTestId('pool-balance').count()).toBe(0);
    await page.waitForLoadState('networkidle');
    expect(bad).toEqual([]);
    await page.close();
  });

  it('outgoing webhooks: an endpoint added (secret shown once, it verifies what arrives), event types edited, a canceled delivery retried, a delivered one replayed, the secret rotated, disabled, enabled, deleted', async () => {
    const deliver = () => app.services.queue.runDue(new Date());
    const { page, bad } = await operatorPage([{ status: 409, method: 'POST', path: '/v1/webhook-endpoints/' }]);
    await nav(page, 'Webhooks', 'Outgoing webhooks');
    const add = page.getByRole('form', { name: 'Add an endpoint' });
    await add.getByLabel('Endpoint URL').fill(receiverUrl);
    await add.getByLabel('Description').fill('the app');
    await add.getByLabel('Every event (*)').uncheck();
    await add.getByLabel('job.completed').check();
    await add.getByRole('button', { name: 'Add endpoint' }).click();
    const secret = (await page.getByTestId('endpoint-secret').textContent()) ?? '';
    expect(secret).toMatch(/^whsec_/);
    const listed = (await call('GET', '/v1/webhook-endpoints')).body.data as { id: string; url: string; event_types: string[] }[];
    const ep = listed.find((e) => e.url === receiverUrl);
    expect(ep?.event_types).toEqual(['job.completed']);
    const epId = ep?.id ?? '';
    // Shown once: the list (and the API) never answers it again.
    await page.getByRole('button', { name: 'I have copied it' }).click();
    expect(await page.getByText(secret).count()).toBe(0);
    expect(JSON.stringify((await call('GET', `/v1/webhook-endpoints/${epId}`)).body)).not.toContain(secret);

    // A completed job is delivered, signed with the secret the page showed; a failed one was not asked for.
    expect((await call('POST', '/v1/credits/grant', { user_id: bob.id, amount: 100, reason: 'jobs' }, app.serviceKey, `g-${key()}`)).status).toBe(201);
    await finishedJob('fail', 1);
    await finishedJob('complete', 2);
    await deliver();
    await expect.poll(() => received.length).toBe(1);
    const first = received[0] as Received;
    const verified = new Webhook(secret).verify(first.body, {
      'webhook-id': String(first.headers['webhook-id']),
      'webhook-timestamp': String(first.headers['webhook-timestamp']),
      'webhook-signature': String(first.headers['webhook-signature']),
    }) as { type: string };
    expect(verified.type).toBe('job.completed');

    // The endpoint's page: edit its event types.
    await page.getByRole('table', { name: 'Webhook endpoints' }).getByRole('link', { name: receiverUrl }).click();
    const edit = page.getByRole('form', { name: 'Edit endpoint' });
    await edit.getByLabel('job.failed').check();
    await edit.getByLabel('Description').fill('the app, failures too');
    await edit.getByRole('button', { name: 'Save endpoint' }).click();
    await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
    expect((await call('GET', `/v1/webhook-endpoints/${epId}`)).body).toMatchObject({ event_types: ['job.completed', 'job.failed'], description: 'the app, failures too' });

    // Replay the delivered one: the same message (same webhook-id) arrives again.
    const log = page.getByRole('table', { name: 'Deliveries' });
    const delivered = log.getByRole('row').filter({ hasText: 'succeeded' });
    await delivered.waitFor();
    await delivered.getByRole('button', { name: /^Replay / }).click();
    await page.getByRole('status').filter({ hasText: /Replay of job.completed/ }).waitFor();
    await deliver();
    await expect.poll(() => received.length).toBe(2);
    expect(received[1]?.headers['webhook-id']).toBe(first.headers['webhook-id']);

    // Disabled before its delivery went out: the delivery is canceled, and a test event is refused with the API's message.
    const failedJob = await finishedJob('fail', 3);
    await page.goto(`${base}/dashboard/webhooks`);
    await page.getByRole('button', { name: `Disable ${receiverUrl}` }).click();
    await page.getByRole('button', { name: `Enable ${receiverUrl}` }).waitFor();
    expect((await call('GET', `/v1/webhook-endpoints/${epId}`)).body.is_active).toBe(false);
    await deliver();
    await page.getByRole('link', { name: receiverUrl }).click();
    await page.getByRole('button', { name: 'Send test event' }).click();
    await expect.poll(() => page.getByRole('alert').first().textContent()).toMatch(/disabled/i);
    await page.getByLabel('Delivery status').selectOption('canceled');
    const canceled = log.getByRole('row').filter({ hasText: 'canceled' });
    await canceled.waitFor();
    expect(await log.getByRole('row').count()).toBe(2); // the header and the one canceled delivery
    expect(received).toHaveLength(2);

    // Enabled again, the canceled delivery is retried and arrives.
    await page.goto(`${base}/dashboard/webhooks`);
    await page.getByRole('button', { name: `Enable ${receiverUrl}` }).click();
    await page.getByRole('button', { name: `Disable ${receiverUrl}` }).waitFor();
    await page.getByRole('link', { name: receiverUrl }).click();
    await page.getByLabel('Delivery status').selectOption('canceled');
    await log.getByRole('row').filter({ hasText: 'canceled' }).getByRole('button', { name: /^Retry / }).click();
    await page.getByRole('status').filter({ hasText: /Retry of job.failed/ }).waitFor();
    await deliver();
    await expect.poll(() => received.length).toBe(3);
    expect(JSON.parse(received[2]?.body ?? '{}')).toMatchObject({ type: 'job.failed', data: { id: failedJob } });
    await page.getByLabel('Delivery status').selectOption('');
    await expect.poll(async () => (await log.getByRole('row').filter({ hasText: 'succeeded' }).count())).toBe(2);
    await page.screenshot({ path: join(shots, 'webhooks.png'), fullPage: true });

    // Rotate: a new secret, shown once; the next delivery verifies with it.
    await page.goto(`${base}/dashboard/webhooks`);
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: `Rotate secret of ${receiverUrl}` }).click();
    const rotated = (await page.getByTestId('endpoint-secret').textContent()) ?? '';
    expect(rotated).toMatch(/^whsec_/);
    expect(rotated).not.toBe(secret);
    const afterRotation = await finishedJob('complete', 4);
    await deliver();
    await expect.poll(() => received.length).toBe(4);
    const fourth = received[3] as Received;
    expect(
      (new Webhook(rotated).verify(fourth.body, {
        'webhook-id': String(fourth.headers['webhook-id']),
        'webhook-timestamp': String(fourth.headers['webhook-timestamp']),
        'webhook-signature': String(fourth.headers['webhook-signature']),
      }) as { data: { id: string } }).data.id,
    ).toBe(afterRotation);

    // Delete.
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: `Delete ${receiverUrl}` }).click();
    await page.getByText('No endpoints yet.').waitFor();
    expect((await call('GET', `/v1/webhook-endpoints/${epId}`)).status).toBe(404);
    await page.waitForLoadState('networkidle');
    expect(bad).toEqual([]);
    await page.close();
  });

  it('the mail outbox lists what Tally mailed; in development (mail to the log) its text can be read', async () => {
    expect((await call('POST', '/v1/auth/password-reset', { email: alice.email }, null)).status).toBeLessThan(300);
    await app.services.queue.runDue(new Date());
    const { page, bad } = await operatorPage();
    await nav(page, 'Mail', 'Mail outbox');
    await page.getByLabel('Recipient').fill(alice.email);
    await page.getByRole('button', { name: 'Filter' }).click();
    const table = page.getByRole('table', { name: 'Mail' });
    const row = table.getByRole('row').filter({ hasText: 'password' });
    await row.first().waitFor();
    const api = (await call('GET', `/v1/mail?to=${encodeURIComponent(alice.email)}`)).body.data as { id: string; template: string; subject: string }[];
    expect(await table.getByRole('row').count()).toBe(api.length + 1);
    expect(await table.textContent()).not.toContain(bob.email);
    const reset = api.find((m) => m.template.includes('password'));
    expect(reset).toBeDefined();
    await row.first().getByRole('button', { name: /^Read / }).click();
    const text = (await page.getByTestId('mail-text').textContent()) ?? '';
    expect(text).toBe((await call('GET', `/v1/mail/${reset?.id}`)).body.text);
    expect(text.length).toBeGreaterThan(20);
    await page.screenshot({ path: join(shots, 'mail.png'), fullPage: true });
    await page.waitForLoadState('networkidle');
    expect(bad).toEqual([]);
    await page.close();
  });

  it('storage: a bucket created and edited with its limits, objects browsed by prefix, usage against the quota, a download, a delete, a clean check', async () => {
    const bucket = `files-${key()}`;
    // The one 404 the API answers on purpose: a user page asks for Bob's budget guard, and he has none.
    const { page, bad } = await operatorPage([{ status: 404, method: 'GET', path: `/v1/users/${bob.id}/budget-guard` }]);
    await nav(page, 'Storage');
    await page.getByRole('button', { name: 'New bucket' }).click();
    const form = page.getByRole('form', { name: 'New bucket' });
    await form.getByLabel('Bucket id').fill(bucket);
    await form.getByLabel('File size limit').fill('1 MiB');
    await form.getByLabel('Allowed types (comma-separated)').fill('text/plain, image/*');
    await form.getByLabel('Quota per owner').fill('10 KiB');
    await form.getByRole('button', { name: 'Create bucket' }).click();
    const buckets = page.getByRole('table', { name: 'Buckets' });
    await buckets.getByRole('row').filter({ hasText: bucket }).waitFor();
    expect((await call('GET', `/v1/storage/buckets/${bucket}`)).body).toMatchObject({
      public: false, file_size_limit: 1_048_576, allowed_mime_types: ['text/plain', 'image/*'], owner_rule: 'owner_folder', user_quota_bytes: 10_240,
    });
    await buckets.getByRole('button', { name: `Edit ${bucket}` }).click();
    await page.getByRole('form', { name: `Edit bucket ${bucket}` }).getByLabel('Quota per owner').fill('20 KiB');
    await page.getByRole('form', { name: `Edit bucket ${bucket}` }).getByRole('button', { name: 'Save bucket' }).click();
    await buckets.getByRole('row').filter({ hasText: '20 KiB' }).waitFor();
    expect((await call('GET', `/v1/storage/buckets/${bucket}`)).body.user_quota_bytes).toBe(20_480);

    // Alice and Bob upload into their own folders (the API's owner rule), through the API.
    const put = async (user: { id: string; token: string }, path: string, text: string) => {
      const res = await fetch(`${base}/v1/storage/objects/${bucket}/${user.id}/${path}`, {
        method: 'PUT', headers: { authorization: `Bearer ${user.token}`, 'content-type': 'text/plain' }, body: text,
      });
      expect(res.status, await res.clone().text()).toBe(201);
    };
    await put(alice, 'docs/a.txt', 'a'.repeat(3000));
    await put(alice, 'docs/b.txt', 'hello from alice');
    await put(alice, 'notes.txt', 'n'.repeat(1000));
    await put(bob, 'bob.txt', 'bob');

    await buckets.getByRole('link', { name: bucket }).click();
    // Each owner's counters, as GET /v1/storage/buckets/:id/usage answers them.
    const usageApi = (await call('GET', `/v1/storage/buckets/${bucket}/usage`)).body as { data: { owner_id: string; used_bytes: number; reserved_bytes: number }[] };
    expect(usageApi.data.map((u) => [u.owner_id, u.used_bytes, u.reserved_bytes]).sort()).toEqual([[alice.id, 4016, 0], [bob.id, 3, 0]].sort());
    const perOwner = page.getByRole('table', { name: 'Usage per owner' });
    await expect.poll(() => perOwner.getByRole('row').filter({ hasText: alice.id }).textContent()).toContain('3.9 KiB');
    expect(await perOwner.getByRole('row').filter({ hasText: alice.id }).textContent()).toContain('20 KiB (20% taken)');
    expect(await perOwner.getByRole('row').filter({ hasText: bob.id }).textContent()).toContain('20 KiB (0% taken)');
    const objects = page.getByRole('table', { name: 'Objects' });
    await objects.getByRole('row').filter({ hasText: 'bob.txt' }).waitFor();
    expect(await objects.getByRole('row').count()).toBe(5);
    // Browse into Alice's folder by clicking the segment, then into docs/.
    await objects.getByRole('row').filter({ hasText: 'notes.txt' }).getByRole('button', { name: alice.id, exact: true }).click();
    await expect.poll(() => objects.getByRole('row').count()).toBe(4);
    expect(await page.getByLabel('Prefix').inputValue()).toBe(`${alice.id}/`);
    await page.getByRole('button', { name: /^Measure usage under/ }).click();
    // 3000 + 16 + 1000 bytes, against the 20 KiB quota per owner.
    await expect.poll(() => page.getByTestId('storage-usage').textContent()).toBe(`3 objects, 3.9 KiB of 20 KiB (20% of ${alice.id}’s quota)`);
    await objects.getByRole('row').filter({ hasText: 'a.txt' }).getByRole('button', { name: 'docs', exact: true }).click();
    await expect.poll(() => objects.getByRole('row').count()).toBe(3);
    await page.screenshot({ path: join(shots, 'storage.png'), fullPage: true });

    // Download through a signed link, in a new tab.
    const [tab] = await Promise.all([context.waitForEvent('page'), objects.getByRole('button', { name: `Download ${alice.id}/docs/b.txt` }).click()]);
    await tab.waitForLoadState();
    expect(await tab.evaluate(() => document.body.innerText)).toBe('hello from alice');
    await tab.close();

    // Delete one: the API no longer has it.
    page.once('dialog', (d) => void d.accept());
    await objects.getByRole('button', { name: `Delete ${alice.id}/docs/a.txt` }).click();
    await expect.poll(() => objects.getByRole('row').count()).toBe(2);
    const gone = await fetch(`${base}/v1/storage/objects/${bucket}/${alice.id}/docs/a.txt`, { headers: { authorization: `Bearer ${app.serviceKey}` } });
    expect(gone.status).toBe(404);

    // A user's page links to their folder.
    await page.goto(`${base}/dashboard/users/${bob.id}`);
    await page.getByRole('link', { name: 'Files in storage' }).click();
    await expect.poll(() => page.getByLabel('Prefix').inputValue()).toBe(`${bob.id}/`);

    await app.services.queue.runDue(new Date());
    await page.getByRole('button', { name: 'Run storage check' }).click();
    await page.getByRole('status').filter({ hasText: 'Rows and bytes agree.' }).waitFor();
    await page.waitForLoadState('networkidle');
    expect(bad).toEqual([]);
    await page.close();
  });

  it('at phone width every new page fits: no sideways scrolling', async () => {
    const { page, bad } = await operatorPage();
    await page.setViewportSize({ width: 390, height: 844 });
    // An endpoint with a delivery, so the deliveries table (payload and all) is drawn.
    const ep = await call('POST', '/v1/webhook-endpoints', { url: receiverUrl, event_types: ['*'], description: 'phone' }, app.serviceKey, `e-${key()}`);
    expect(ep.status).toBe(201);
    await finishedJob('complete', 1);
    await app.services.queue.runDue(new Date());
    const ws = await call('POST', '/v1/workspaces', { name: 'Phone team', owner_id: bob.id }, app.serviceKey, `w-${key()}`);
    expect(ws.status).toBe(201);
    const pages: [string, string][] = [
      ['/users', 'Users'], ['/plans', 'Plans'], ['/workspaces', 'Workspaces'], [`/workspaces/${ws.body.id}`, 'Phone team'],
      ['/webhooks', 'Outgoing webhooks'], [`/webhooks/${ep.body.id}`, receiverUrl], ['/storage', 'Storage'], ['/mail', 'Mail outbox'],
    ];
    for (const [path, heading] of pages) {
      await page.goto(`${base}/dashboard${path}`);
      await page.getByRole('heading', { level: 1, name: heading, exact: true }).waitFor();
      await page.waitForLoadState('networkidle');
      const wide = await page.evaluate(() =>
        [...document.querySelectorAll('body *')]
          .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
          .slice(0, 5)
          .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}px`),
      );
      expect(wide, `elements wider than a phone on ${path}`).toEqual([]);
    }
    expect(bad).toEqual([]);
    await page.close();
  });
});
