/**
 * The dashboard in a real Chromium (Debian's /usr/bin/chromium driven by playwright-core; never a
 * downloaded browser) against a real Tally listening on a port, on the embedded database. A few
 * focused flows, since a browser is slow on two cores. Screenshots go to docs/screenshots/ when
 * TALLY_SCREENSHOTS=1 (kept in git and shown in the README), otherwise to a temporary folder.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';
import type { Json } from './support/client.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const dashboardBuilt = existsSync(fileURLToPath(new URL('../dist/dashboard/index.html', import.meta.url)));
if (!haveChromium) console.warn(`SKIPPED dashboard browser tests: ${CHROMIUM} is absent (apt-get install -y chromium; .ci/run does)`);
const shots = process.env['TALLY_SCREENSHOTS'] === '1'
  ? fileURLToPath(new URL('../docs/screenshots/', import.meta.url))
  : mkdtempSync(join(tmpdir(), 'tally-shots-'));

// Once, on the embedded database: the browser drives the same HTTP API either way.
describe.skipIf(!haveChromium || TARGET !== 'pglite')('dashboard in Chromium', { timeout: 120_000 }, () => {
  let app: TestApp;
  let base: string;
  let context: BrowserContext;
  let userDir: string;
  const password = 'a long enough password';
  let alice: { id: string; email: string };
  let bob: { id: string; email: string };

  const call = async (method: string, path: string, body?: unknown, token: string | null = app.serviceKey, idem?: string) => {
    const headers: Record<string, string> = {};
    if (token) headers['authorization'] = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (idem) headers['idempotency-key'] = idem;
    const res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const signUp = async (email: string) => {
    const res = await call('POST', '/v1/auth/signup', { email, password }, null);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.user as { id: string; email: string };
  };

  async function newPage(width = 1280, height = 860): Promise<Page> {
    const page = await context.newPage();
    await page.setViewportSize({ width, height });
    return page;
  }
  async function signInOperator(page: Page) {
    await page.goto(`${base}/dashboard/`);
    await page.getByRole('tab', { name: 'Operator (service key)' }).click();
    await page.getByLabel('Service key').fill(app.serviceKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
  }
  async function signInUser(page: Page, email: string) {
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: email }).waitFor();
  }

  beforeAll(async () => {
    if (!dashboardBuilt) throw new Error('dist/dashboard is missing: run `npm run build` first (npm ci does it)');
    app = await createTestApp();
    await app.server.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.server.address();
    if (!addr || typeof addr === 'string') throw new Error('no port');
    base = `http://127.0.0.1:${addr.port}`;
    alice = await signUp(`alice_${randomBytes(4).toString('hex')}@example.com`);
    bob = await signUp(`bob_${randomBytes(4).toString('hex')}@example.com`);
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

  it('the first load asks for nothing that is missing: no 4xx or 5xx answer, no console error', async () => {
    const page = await newPage();
    const bad: string[] = [];
    const guard404 = `/v1/users/${alice.id}/budget-guard`;
    page.on('response', (r) => {
      if (r.status() >= 400 && !(r.status() === 404 && new URL(r.url()).pathname === guard404)) bad.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
    });
    page.on('console', (m) => {
      // The one 404 the API answers on purpose: GET …/budget-guard while no guard is set (shown as "none").
      if (m.type() === 'error' && !m.location().url.endsWith(guard404)) bad.push(`console: ${m.text()} (${m.location().url})`);
    });
    await page.goto(`${base}/dashboard/`);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await signInOperator(page);
    await page.getByTestId('total-users').waitFor();
    await page.goto(`${base}/dashboard/users/${alice.id}`);
    await page.getByTestId('balance').waitFor();
    await page.getByRole('table', { name: 'Ledger' }).waitFor();
    await page.waitForLoadState('networkidle');
    expect(bad).toEqual([]);
    await page.close();
  });

  it('an operator signs in with the service key; credits granted through the API appear on the user page; a wrong key is refused with its message', async () => {
    const page = await newPage();
    await page.goto(`${base}/dashboard/`);
    await page.getByRole('tab', { name: 'Operator (service key)' }).click();
    await page.getByLabel('Service key').fill('tsk_wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert').textContent()).resolves.toMatch(/unauthenticated|invalid|key/i);

    await signInOperator(page);
    const grant = await call('POST', '/v1/credits/grant', { user_id: alice.id, amount: 250, reason: 'welcome pack', class: 'promo', expires_at: '2099-01-01T00:00:00Z' }, app.serviceKey, `g-${randomBytes(6).toString('hex')}`);
    expect(grant.status).toBe(201);
    await call('POST', '/v1/holds', { user_id: alice.id, amount: 40 }, app.serviceKey, `h-${randomBytes(6).toString('hex')}`);
    // Some activity for the overview: two of Bob's jobs (one failed) and a paid invoice's payment.
    for (const fail of [false, true]) {
      const job = await call('POST', '/v1/jobs', { user_id: bob.id, kind: 'image', model: 'flux', input: {}, cost: 1 }, app.serviceKey, `j-${randomBytes(6).toString('hex')}`);
      expect(job.status, JSON.stringify(job.body)).toBe(201);
      if (fail) expect((await call('POST', `/v1/jobs/${job.body.id}/fail`, { error: 'provider timeout' })).status).toBe(200);
    }
    await sql`insert into ${sql.table(`${app.database.schema}.payments`)} (id, provider, provider_payment_id, amount, currency, status, match_status, user_id)
        values ('pay_browser0', 'stripe', 'pi_browser0', 4900, 'usd', 'succeeded', 'matched', ${bob.id})`.execute(app.database.root);
    await page.reload();
    await page.getByTestId('total-users').waitFor();
    expect(await page.getByTestId('total-users').textContent()).toBe('2');
    await page.screenshot({ path: join(shots, 'overview.png'), fullPage: true });

    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByLabel('Search users').fill('alice_');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: alice.email }).click();
    await page.getByTestId('balance').waitFor();
    // 3 sign-up bonus + 250; 40 of it held.
    await expect.poll(() => page.getByTestId('balance').textContent()).toBe('253');
    expect(await page.getByTestId('available').textContent()).toBe('213');
    expect(await page.getByTestId('held').textContent()).toBe('40');
    expect(await page.getByRole('table', { name: 'Grants' }).textContent()).toContain('promo');
    expect(await page.getByRole('table', { name: 'Ledger' }).textContent()).toContain('welcome pack');

    // The adjustment form needs a reason; the API's answer (here a refusal) is shown as its message.
    await page.getByLabel('Amount (+/−)').fill('-1000');
    await page.getByLabel('Reason').fill('correction');
    await page.getByRole('button', { name: 'Adjust' }).click();
    const refused = await page.getByRole('alert').first().textContent();
    expect(refused).toMatch(/insufficient|available|enough/i);
    await page.getByLabel('Amount (+/−)').fill('-3');
    await page.getByRole('button', { name: 'Adjust' }).click();
    await page.getByRole('status').filter({ hasText: 'Adjusted by -3' }).waitFor();
    await expect.poll(() => page.getByTestId('balance').textContent()).toBe('250');
    await page.screenshot({ path: join(shots, 'user.png'), fullPage: true });
    await page.close();
  });

  it('an operator sees counts that agree with their lists, plan names and prices, an unclipped usage axis, and a user\'s budget guard and overage', async () => {
    const schema = app.database.schema;
    // One kind of rejected delivery (a bad signature, 3 times) and no failed one.
    await sql`insert into ${sql.table(`${schema}.webhook_events`)} (id, provider, status, error, attempts)
        values ('whe_browser0', 'paypal', 'rejected', 'bad signature', 3)`.execute(app.database.root);
    const plan = await call('POST', '/v1/plans', { slug: `pro-${randomBytes(3).toString('hex')}`, name: 'Pro monthly', price_monthly: 1900, price_yearly: null, trial_days: 1, overage_unit_amount: '0.5' });
    expect(plan.status, JSON.stringify(plan.body)).toBe(201);
    const free = await call('POST', '/v1/plans', { slug: `free-${randomBytes(3).toString('hex')}`, name: 'Starter', trial_days: 0 });
    expect(free.status, JSON.stringify(free.body)).toBe(201);
    const sub = await call('POST', '/v1/subscriptions', { user_id: bob.id, plan_id: plan.body.id }, app.serviceKey, `s-${randomBytes(6).toString('hex')}`);
    expect(sub.status, JSON.stringify(sub.body)).toBe(201);
    expect((await call('PUT', `/v1/users/${bob.id}/budget-guard`, { monthly_cap: 2500, behavior: 'suspend' })).status).toBe(200);
    await sql`insert into ${sql.table(`${schema}.overage_charges`)} (id, user_id, subscription_id, metric, period_start, period_end, credits, amount, unit_amount, currency)
        values ('ovc_browser0', ${bob.id}, ${sub.body.id}, 'tokens', now() - interval '30 days', now(), 840, 420, 0.5, 'usd')`.execute(app.database.root);
    // Usage in the millions: its y-axis ticks must fit in the chart.
    await sql`insert into ${sql.table(`${schema}.usage_counters`)} (user_id, metric, "window", window_start, window_end, quantity, events)
        values (${bob.id}, 'tokens', 'day', date_trunc('day', now()), date_trunc('day', now()) + interval '1 day', 12345678, 9)`.execute(app.database.root);

    const page = await newPage();
    await signInOperator(page);
    await page.getByTestId('failed-webhooks').waitFor();
    expect(await page.getByTestId('failed-webhooks').textContent()).toBe('0');
    expect(await page.getByTestId('rejected-webhooks').textContent()).toBe('1');
    await page.getByTestId('rejected-webhooks').getByRole('link').click();
    const log = page.getByRole('table', { name: 'Webhook deliveries' });
    await log.waitFor();
    expect(await page.getByLabel('Delivery status').inputValue()).toBe('rejected');
    expect(await log.getByRole('row').count()).toBe(2); // the header and the one rejected row
    expect(await log.textContent()).toContain('bad signature');
    expect(await log.textContent()).toContain('3 deliveries');
    await page.goto(`${base}/dashboard/`);
    await page.getByTestId('failed-webhooks').getByRole('link').click();
    await page.getByText('No deliveries with this status.').waitFor();
    expect(await page.getByLabel('Delivery status').inputValue()).toBe('failed');

    await page.getByRole('link', { name: 'Plans' }).click();
    const pro = page.getByRole('table', { name: 'Plans' }).getByRole('row').filter({ hasText: 'Pro monthly' });
    await pro.waitFor();
    expect(await pro.getByRole('cell').allTextContents()).toEqual(expect.arrayContaining(['$19.00', 'not offered', '1 day']));
    const starter = page.getByRole('table', { name: 'Plans' }).getByRole('row').filter({ hasText: 'Starter' });
    expect(await starter.getByRole('cell').allTextContents()).toEqual(expect.arrayContaining(['free', 'none']));
    expect(await page.getByRole('table', { name: 'Plans' }).textContent()).not.toMatch(/\b1 days\b/);

    await page.goto(`${base}/dashboard/users/${bob.id}`);
    const subs = page.getByRole('table', { name: 'Subscriptions' });
    await subs.waitFor();
    expect(await subs.textContent()).toContain('Pro monthly');
    expect(await subs.textContent()).not.toContain(plan.body.id);
    expect(await page.getByTestId('guard-cap').textContent()).toBe('$25.00');
    expect(await page.getByTestId('guard-spent').textContent()).toBe('$0.00');
    const overage = page.getByRole('table', { name: 'Overage charges' });
    expect(await overage.textContent()).toContain('tokens');
    expect(await overage.textContent()).toContain('$4.20');
    expect(await overage.textContent()).toContain('pending');

    // Every y-axis tick of the usage chart lies inside the chart, none cut at its left edge.
    const usage = page.getByRole('region', { name: 'Usage per metric per day (30 days)' });
    const ticks = '.recharts-yAxis-tick-labels .recharts-cartesian-axis-tick-value';
    await usage.locator(ticks).last().waitFor();
    expect(await usage.locator(ticks).allTextContents()).toContain('14M');
    const clipped = await usage.locator('svg[role="application"]').evaluate((svg, sel) => {
      const box = svg.getBoundingClientRect();
      return [...svg.querySelectorAll(sel)]
        .map((t) => ({ text: t.textContent, left: t.getBoundingClientRect().left - box.left }))
        .filter((t) => t.left < 0);
    }, ticks);
    expect(clipped).toEqual([]);
    await page.screenshot({ path: join(shots, 'user-billing.png'), fullPage: true });
    await page.close();
  });

  it('a customer signs in with e-mail and password, creates a key (shown once) and revokes it', async () => {
    const page = await newPage();
    await signInUser(page, alice.email);
    const own = (await call('GET', `/v1/users/${alice.id}/balance`)).body.balance as number;
    await expect.poll(() => page.getByTestId('balance').textContent()).toBe(own.toLocaleString('en-US'));
    await page.getByLabel('New key name').fill('ci key');
    await page.getByRole('button', { name: 'Create key' }).click();
    const shown = await page.getByTestId('new-key').textContent();
    expect(shown).toMatch(/^tly_/);
    // The key works against the API, and is the caller's own.
    expect((await call('GET', '/v1/me', undefined, shown)).body.id).toBe(alice.id);
    await page.screenshot({ path: join(shots, 'portal.png'), fullPage: true });

    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Revoke ci key' }).click();
    await page.getByRole('table', { name: 'API keys' }).getByText('revoked').waitFor();
    expect((await call('GET', '/v1/me', undefined, shown)).status).toBe(401);

    // A phone-width layout: no sideways scrolling.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await page.getByTestId('balance').waitFor();
    const wide = await page.evaluate(() =>
      [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
        .slice(0, 5)
        .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}px`),
    );
    expect(wide, 'elements wider than a phone').toEqual([]);
    await page.screenshot({ path: join(shots, 'portal-phone.png'), fullPage: false });
    await page.close();
  });

  it('an end user cannot reach another user\'s page: the API refuses and nothing of theirs is shown', async () => {
    const page = await newPage();
    await signInUser(page, bob.email);
    await page.goto(`${base}/dashboard/users/${alice.id}`);
    const alert = await page.getByRole('alert').first().textContent();
    expect(alert).toMatch(/forbidden|own/i);
    expect(await page.getByText(alice.email).count()).toBe(0);
    expect(await page.getByTestId('balance').count()).toBe(0);
    // Operator pages are not theirs either: the navigation has only their account, and the API says no.
    expect(await page.getByRole('link', { name: 'Reconcile' }).count()).toBe(0);
    await page.close();
  });

  it('an operator resolves an unmatched payment: its credits reach the user once, and reconcile finds no drift', async () => {
    // A paid payment no user matched (webhook matching is tested in test/payments.test.ts).
    await sql`insert into ${sql.table(`${app.database.schema}.payments`)}
        (id, provider, provider_payment_id, amount, currency, status, match_status, email, credits)
        values ('pay_browser1', 'stripe', 'pi_browser1', 1500, 'usd', 'succeeded', 'unmatched', 'bob.other@example.com', 40)`.execute(app.database.root);
    const before = (await call('GET', `/v1/users/${bob.id}/balance`)).body.balance as number;
    const page = await newPage();
    await signInOperator(page);
    await page.getByRole('link', { name: 'Payments' }).click();
    const row = page.getByRole('table', { name: 'Unmatched payments' }).getByRole('row').filter({ hasText: 'pi_browser1' });
    await row.getByLabel('User id').fill('usr_nobody');
    await row.getByRole('button', { name: 'Assign' }).click();
    await expect.poll(async () => (await row.getByRole('alert').textContent()) ?? '').toMatch(/not found|no user|usr_nobody/i);
    await page.screenshot({ path: join(shots, 'payments.png'), fullPage: true });
    await row.getByLabel('User id').fill(bob.id);
    await row.getByRole('button', { name: 'Assign' }).click();
    await page.getByText('The queue is empty.').waitFor();
    expect((await call('GET', `/v1/users/${bob.id}/balance`)).body.balance).toBe(before + 40);
    expect((await call('GET', '/v1/payments/pay_browser1')).body.match_status).toBe('resolved');

    await page.getByRole('link', { name: 'Reconcile' }).click();
    await page.getByRole('button', { name: 'Run checks' }).click();
    await page.getByRole('status').filter({ hasText: 'No drift' }).waitFor();
    await page.screenshot({ path: join(shots, 'reconcile.png'), fullPage: true });
    await page.close();
  });
});
