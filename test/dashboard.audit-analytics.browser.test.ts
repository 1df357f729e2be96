/**
 * The operator's Audit and Analytics pages in a real Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core, never a downloaded browser) against a real Tally listening on a port, on the
 * embedded database. Audit rows and analytics events are made through the API; every list the page
 * shows is compared with what the API answers for the same filters, and the pages load with no
 * 4xx/5xx answer and no console error. TALLY_SCREENSHOTS=1 writes docs/screenshots/audit.png and
 * analytics.png.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from './support/client.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const dashboardBuilt = existsSync(fileURLToPath(new URL('../dist/dashboard/index.html', import.meta.url)));
if (!haveChromium) console.warn(`SKIPPED dashboard audit/analytics browser test: ${CHROMIUM} is absent (apt-get install -y chromium; .ci/run does)`);
const shots = process.env['TALLY_SCREENSHOTS'] === '1'
  ? fileURLToPath(new URL('../docs/screenshots/', import.meta.url))
  : mkdtempSync(join(tmpdir(), 'tally-shots-'));

/** What a datetime-local input takes for an instant: the browser runs in UTC (timezoneId below). */
const inputTime = (d: Date): string => d.toISOString().slice(0, 19);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!haveChromium || TARGET !== 'pglite')('dashboard Audit and Analytics pages in Chromium', { timeout: 180_000 }, () => {
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
  /** Every row a paged list answers for `path` (all pages), as the page would show them after "Load more". */
  const all = async (path: string): Promise<Json[]> => {
    const rows: Json[] = [];
    let cursor: string | null = null;
    do {
      const sep = path.includes('?') ? '&' : '?';
      const res = await call('GET', `${path}${sep}limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(res.status).toBe(200);
      rows.push(...res.body.data);
      cursor = res.body.next_cursor;
    } while (cursor);
    return rows;
  };

  const operatorPage = async (width = 1400) => {
    const page = await context.newPage();
    await page.setViewportSize({ width, height: 1000 });
    const bad: string[] = [];
    page.on('response', (r) => r.status() >= 400 && bad.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`));
    page.on('console', (m) => m.type() === 'error' && bad.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => bad.push(`page error: ${e.message}`));
    await page.goto(`${base}/dashboard/`);
    await page.getByRole('tab', { name: 'Operator (service key)' }).click();
    await page.getByLabel('Service key').fill(app.serviceKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    return { page, bad };
  };
  /** Submits a filter form with exactly these values (the others emptied) and waits for the list. */
  const filter = async (page: Page, formName: string, values: Record<string, string>, fields: string[]) => {
    const form = page.getByRole('form', { name: formName });
    for (const f of fields) {
      const el = form.locator(`[name="${f}"]`);
      if ((await el.evaluate((e) => e.tagName)) === 'SELECT') await el.selectOption(values[f] ?? '');
      else await el.fill(values[f] ?? '');
    }
    await form.getByRole('button', { name: 'Filter' }).click();
    await page.waitForLoadState('networkidle');
  };
  /** Clicks "Load more" until it is gone, then answers the rows' count. */
  const loadAll = async (page: Page, table: string) => {
    const rows = page.getByRole('table', { name: table }).locator('tbody tr');
    for (;;) {
      await page.waitForLoadState('networkidle');
      const more = page.getByRole('button', { name: 'Load more' });
      if ((await more.count()) === 0) break;
      const before = await rows.count();
      await more.click();
      await expect.poll(() => rows.count()).toBeGreaterThan(before);
    }
    return rows.count();
  };

  beforeAll(async () => {
    if (!dashboardBuilt) throw new Error('dist/dashboard is missing: run `npm run build` first (npm ci does it)');
    app = await createTestApp();
    await app.server.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.server.address();
    if (!addr || typeof addr === 'string') throw new Error('no port');
    base = `http://127.0.0.1:${addr.port}`;
    userDir = mkdtempSync(join(tmpdir(), 'tally-chromium-'));
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM,
      headless: true,
      timezoneId: 'UTC',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(shots, { recursive: true });
  });
  afterAll(async () => {
    await context?.close();
    if (userDir) rmSync(userDir, { recursive: true, force: true });
    await app?.close();
  });

  it('Audit: filters by action, actor, target and time narrow the list as the API does; paging; the diff; verify', async () => {
    const tag = randomBytes(3).toString('hex');
    // 27 users created by the service: more than one page (25) of user.created.
    const created: string[] = [];
    for (let i = 0; i < 27; i++) {
      const u = await call('POST', '/v1/users', { email: `a${i}_${tag}@example.com`, ...(i === 0 ? { name: 'Ada' } : {}) });
      expect(u.status).toBe(201);
      created.push(u.body.id);
    }
    const ada = created[0] as string;
    // The window's edge: a whole second (the input's precision) after everything above.
    const mid = new Date(Math.ceil((Date.now() + 1) / 1000) * 1000);
    await sleep(mid.getTime() - Date.now() + 50);
    const renamed = await call('PATCH', `/v1/users/${ada}`, { name: 'Ada Lovelace' });
    expect(renamed.status).toBe(200);
    const signed = await call('POST', '/v1/auth/signup', { email: `c_${tag}@example.com`, password: 'a long enough password' }, null);
    expect(signed.status).toBe(201);
    const customer = signed.body.user.id as string;
    const own = await call('PATCH', `/v1/users/${customer}`, { bio: 'writes compilers' }, signed.body.access_token);
    expect(own.status).toBe(200);

    const { page, bad } = await operatorPage();
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Audit', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Audit', exact: true }).waitFor();
    const table = page.getByRole('table', { name: 'Audit log' });
    const rows = table.locator('tbody tr');
    await table.waitFor();
    const fields = ['actor_kind', 'actor_id', 'action', 'target_table', 'target_id', 'request_id', 'from', 'to'];
    const seqs = async () => (await table.locator('td[data-label="Seq"]').allTextContents()).map((s) => Number(s.replace(/\D/g, '')));

    // Verify: the chain is intact and counts what the API counts.
    await page.getByRole('button', { name: 'Verify chain' }).click();
    const verdict = page.getByTestId('verify-result');
    await verdict.waitFor();
    const verified = (await call('GET', '/v1/audit/verify')).body;
    expect(verified.ok).toBe(true);
    expect(await verdict.textContent()).toContain('Chain intact');
    expect(await verdict.textContent()).toContain(`${verified.rows} rows, last seq ${verified.last_seq}`);
    await page.getByText(verified.last_hash).waitFor();

    // Action: every user.created, 25 a page, "Load more" brings the rest; the same rows as the API's.
    await filter(page, 'Filter audit log', { action: 'user.created' }, fields);
    await page.waitForURL(/action=user.created/);
    await expect.poll(() => rows.count()).toBe(25);
    const createdRows = await all('/v1/audit?action=user.created');
    expect(createdRows.length).toBeGreaterThanOrEqual(28); // 27 by the service, the sign-up, and the seed's if any
    expect(await loadAll(page, 'Audit log')).toBe(createdRows.length);
    expect(await seqs()).toEqual(createdRows.map((r) => r.seq));
    expect(await table.locator('td[data-label="Action"]').allTextContents()).toEqual(createdRows.map(() => 'user.created'));

    // Target: Ada's row's history, created then renamed; the update's diff shows the one changed field.
    await filter(page, 'Filter audit log', { target_table: 'users', target_id: ada }, fields);
    await page.waitForURL(/target_id=/);
    await expect.poll(() => rows.count()).toBe(2);
    const history = await all(`/v1/audit?target_table=users&target_id=${ada}`);
    expect(history.map((r) => r.action)).toEqual(['user.updated', 'user.created']);
    expect(await seqs()).toEqual(history.map((r) => r.seq));
    const update = rows.filter({ hasText: 'user.updated' });
    const diff = update.locator('dl.diff');
    await diff.waitFor({ state: 'visible' });
    expect(await diff.locator('dt').allTextContents()).toEqual(['name']);
    expect(await diff.locator('del').textContent()).toBe('Ada');
    expect(await diff.locator('ins').textContent()).toBe('Ada Lovelace');
    expect(await update.getByRole('link', { name: renamed.requestId }).count()).toBe(1);
    // The create's image is folded: one click shows its fields, none struck out.
    const create = rows.filter({ hasText: 'user.created' });
    await create.locator('summary').click();
    await create.locator('dl.diff dt', { hasText: /^email$/ }).waitFor();
    expect(await create.locator('dl.diff del').count()).toBe(0);

    // Actor: the customer's own request (their JWT), with its bio diff.
    await filter(page, 'Filter audit log', { actor_kind: 'user', actor_id: customer }, fields);
    await page.waitForURL(/actor_kind=user/);
    const byCustomer = await all(`/v1/audit?actor_kind=user&actor_id=${customer}`);
    expect(byCustomer.length).toBeGreaterThanOrEqual(1);
    await expect.poll(() => rows.count()).toBe(byCustomer.length);
    expect(await seqs()).toEqual(byCustomer.map((r) => r.seq));
    const bio = rows.filter({ hasText: own.requestId });
    expect(await bio.locator('dl.diff dt').allTextContents()).toEqual(['bio']);
    expect(await bio.locator('dl.diff ins').textContent()).toBe('writes compilers');
    expect(await bio.locator('td[data-label="Actor"]').getByRole('link', { name: customer, exact: true }).count()).toBe(1);

    // Time window: from the edge on, only what came after (no user.created by the service); before it, the 27 are there.
    await filter(page, 'Filter audit log', { from: inputTime(mid) }, fields);
    await page.waitForURL(/from=/);
    const after = await all(`/v1/audit?from=${mid.toISOString()}`);
    expect(after.some((r) => r.target.id === ada && r.action === 'user.updated')).toBe(true);
    expect(after.some((r) => r.action === 'user.created' && created.includes(r.target.id))).toBe(false);
    await expect.poll(() => rows.count()).toBe(after.length);
    expect(await seqs()).toEqual(after.map((r) => r.seq));
    await filter(page, 'Filter audit log', { action: 'user.created', to: inputTime(mid) }, fields);
    await page.waitForURL(/to=/);
    const before = await all(`/v1/audit?action=user.created&to=${mid.toISOString()}`);
    expect(created.every((id) => before.some((r) => r.target.id === id))).toBe(true);
    expect(await loadAll(page, 'Audit log')).toBe(before.length);
    expect(await seqs()).toEqual(before.map((r) => r.seq));

    // Nothing matches: the empty state, no table.
    await filter(page, 'Filter audit log', { request_id: `req_none_${tag}` }, fields);
    await page.getByText('No audit row matches these filters.').waitFor();
    expect(await table.count()).toBe(0);

    await page.getByRole('button', { name: 'Clear' }).click();
    await page.waitForLoadState('networkidle');
    await page.getByRole('button', { name: 'Verify chain' }).click();
    await verdict.waitFor();
    await page.screenshot({ path: join(shots, 'audit.png'), fullPage: false });
    expect(bad).toEqual([]);
    await page.close();
  });

  it('Analytics: counts per event match what was sent (table and bars); filters and paging of the events', async () => {
    const tag = randomBytes(3).toString('hex');
    const u = await call('POST', '/v1/users', { email: `an_${tag}@example.com` });
    expect(u.status).toBe(201);
    const userId = u.body.id as string;
    const now = new Date();
    const twoDaysAgo = new Date(now.getTime() - 2 * 86_400_000);
    const today = now.toISOString().slice(0, 10);
    const earlier = twoDaysAgo.toISOString().slice(0, 10);
    const events = [
      ...Array.from({ length: 12 }, (_, i) => ({ id: `pv-${i}`, event: 'page_viewed', user_id: userId, properties: { path: `/p/${i}` }, ...(i < 4 ? { occurred_at: twoDaysAgo.toISOString() } : {}) })),
      ...Array.from({ length: 10 }, (_, i) => ({ id: `sc-${i}`, event: 'signup_clicked', anonymous_id: `anon-${tag}`, session_id: `sess-${tag}` })),
      ...Array.from({ length: 8 }, (_, i) => ({ id: `co-${i}`, event: 'checkout_started', user_id: userId, properties: { plan: 'pro' } })),
    ];
    const sent = await call('POST', '/v1/analytics/events', { events });
    expect(sent.status).toBe(200);
    expect(sent.body.inserted).toBe(30);
    // A replay stores nothing twice: the counts below stay what was sent once.
    const replay = await call('POST', '/v1/analytics/events', { events });
    expect(replay.body).toMatchObject({ inserted: 0, duplicates: 30 });
    const signed = await call('POST', '/v1/auth/signup', { email: `ac_${tag}@example.com`, password: 'a long enough password' }, null);
    expect(signed.status).toBe(201);
    const mine = await call('POST', '/v1/analytics/events', { events: [1, 2, 3].map((i) => ({ id: `me-${i}`, event: 'page_viewed' })) }, signed.body.access_token);
    expect(mine.status).toBe(200);
    const sentCounts: Record<string, number> = { page_viewed: 15, signup_clicked: 10, checkout_started: 8 };

    const { page, bad } = await operatorPage();
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Analytics', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Analytics', exact: true }).waitFor();
    const bars = page.locator('ul.bars');
    const barCounts = async () =>
      Object.fromEntries(
        await bars.locator('li').evaluateAll((lis) => lis.map((li) => [li.getAttribute('data-event'), Number((li.querySelector('.bar-count')?.textContent ?? '').replace(/\D/g, ''))])),
      );
    const perDay = page.getByRole('table', { name: 'Event counts per day' });
    const dayRows = async () =>
      (await perDay.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent).join(' '))));

    // Counts over the last 30 days: the bars and the per-day table say what was sent, as the API does.
    await bars.waitFor();
    await page.waitForLoadState('networkidle');
    expect(await barCounts()).toEqual(sentCounts);
    expect(await bars.locator('li').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-event')))).toEqual(['page_viewed', 'signup_clicked', 'checkout_started']);
    const api = (await call('GET', `/v1/analytics/events/counts?from=${new Date(Date.parse(`${earlier}T00:00:00Z`) - 86_400_000).toISOString()}`)).body;
    expect(api.truncated).toBe(false);
    expect((await dayRows()).sort()).toEqual(api.data.map((r: Json) => `${r.day} ${r.event} ${r.count}`).sort());
    expect(await dayRows()).toEqual(expect.arrayContaining([`${earlier} page_viewed 4`, `${today} page_viewed 11`, `${today} signup_clicked 10`, `${today} checkout_started 8`]));
    // Today only: the four older page views drop out.
    await page.getByLabel('Counts window').selectOption('1');
    await expect.poll(barCounts).toEqual({ ...sentCounts, page_viewed: 11 });

    // Events: 33 stored, 25 a page, "Load more" brings the rest, newest received first as the API lists them.
    const table = page.getByRole('table', { name: 'Analytics events' });
    const rows = table.locator('tbody tr');
    const fields = ['event', 'user_id', 'anonymous_id', 'session_id', 'from', 'to'];
    const clientIds = () => table.locator('td[data-label="Client id"]').allTextContents();
    await expect.poll(() => rows.count()).toBe(25);
    const everything = await all('/v1/analytics/events');
    expect(everything.length).toBe(33);
    expect(await loadAll(page, 'Analytics events')).toBe(33);
    expect(await clientIds()).toEqual(everything.map((e) => e.client_id));

    // Event name: the list and the counts both narrow to it.
    await filter(page, 'Filter events', { event: 'checkout_started' }, fields);
    await page.waitForURL(/event=checkout_started/);
    await expect.poll(() => rows.count()).toBe(8);
    await expect.poll(barCounts).toEqual({ checkout_started: 8 });
    await rows.first().locator('summary').click();
    await rows.first().getByText('"plan": "pro"').waitFor();
    // User: that user's 20, and their counts.
    await filter(page, 'Filter events', { user_id: userId }, fields);
    await page.waitForURL(/user_id=/);
    expect(await loadAll(page, 'Analytics events')).toBe(20);
    expect(await clientIds()).toEqual((await all(`/v1/analytics/events?user_id=${userId}`)).map((e) => e.client_id));
    await expect.poll(barCounts).toEqual({ page_viewed: 12, checkout_started: 8 });
    // Anonymous visitor and session: the ten sign-up clicks.
    await filter(page, 'Filter events', { anonymous_id: `anon-${tag}`, session_id: `sess-${tag}` }, fields);
    await page.waitForURL(/anonymous_id=/);
    await expect.poll(() => rows.count()).toBe(10);
    expect(new Set(await table.locator('td[data-label="Event"]').allTextContents())).toEqual(new Set(['signup_clicked']));
    // Time window on occurred_at: from today's start, the four older views are gone; before it, only they remain.
    const midnight = new Date(`${today}T00:00:00Z`);
    await filter(page, 'Filter events', { event: 'page_viewed', from: inputTime(midnight) }, fields);
    await page.waitForURL(/from=/);
    await expect.poll(() => rows.count()).toBe(11);
    await filter(page, 'Filter events', { event: 'page_viewed', to: inputTime(midnight) }, fields);
    await page.waitForURL(/to=/);
    await expect.poll(() => rows.count()).toBe(4);
    expect((await clientIds()).sort()).toEqual(['pv-0', 'pv-1', 'pv-2', 'pv-3']);
    // Nothing matches: both empty states.
    await filter(page, 'Filter events', { event: `never_${tag}` }, fields);
    await page.getByText('No event matches these filters.').waitFor();
    await page.getByText('No events in this window.').waitFor();
    expect(await bars.count()).toBe(0);

    await page.getByRole('button', { name: 'Clear' }).click();
    await bars.waitFor();
    await page.waitForLoadState('networkidle');
    await page.screenshot({ path: join(shots, 'analytics.png'), fullPage: false });
    expect(bad).toEqual([]);
    await page.close();
  });

  it('at phone width both pages fit: no sideways scrolling', async () => {
    const { page, bad } = await operatorPage(390);
    for (const [path, heading] of [['/audit', 'Audit'], ['/analytics', 'Analytics']] as const) {
      await page.goto(`${base}/dashboard${path}`);
      await page.getByRole('heading', { level: 1, name: heading, exact: true }).waitFor();
      await page.waitForLoadState('networkidle');
      if (path === '/audit') await page.getByRole('button', { name: 'Verify chain' }).click();
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
