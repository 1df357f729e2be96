import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Json } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { stripeCheckout, type Webhooks, webhookSenders } from './support/payment-webhooks.js';
import { createTestApp, TARGET, type TestApp } from './support/harness.js';

/**
 * The audit log (docs/audit.md): every money and admin action leaves one row, with who did it and
 * from which request, in the transaction of the change; nobody — the service through the API, the
 * owning role through SQL — can change or remove a row; secrets never appear in it; and the hash
 * chain finds what a superuser did with the triggers off.
 */
describe(`audit log (${TARGET})`, () => {
  let app: TestApp;
  const svc = () => client(app.server, app.serviceKey);
  const key = () => `k-${randomBytes(6).toString('hex')}`;
  const t = (name: string) => sql.table(`${app.database.schema}.${name}`);

  /** The audit rows one request left, oldest first. */
  async function rowsOf(requestId: unknown): Promise<Json[]> {
    expect(typeof requestId).toBe('string');
    const res = await svc().get(`/v1/audit?request_id=${String(requestId)}`);
    expect(res.status).toBe(200);
    return [...res.body.data].reverse();
  }

  /** What the owning role sees when it tries a statement (the database's error code, or 'ok'). */
  async function failure(fn: () => Promise<unknown>): Promise<string> {
    try {
      await fn();
      return 'ok';
    } catch (err) {
      return (err as { code?: string }).code ?? String(err);
    }
  }

  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('admin actions are recorded with the service as actor and the request id', async () => {
    const created = await svc().post('/v1/users', { email: `a_${randomBytes(4).toString('hex')}@example.com`, name: 'Ann' });
    expect(created.status).toBe(201);
    const userId = created.body.id;
    const rows = await rowsOf(created.headers['x-request-id']);
    expect(rows.map((r) => r.action)).toEqual(['user.created', 'credits.granted']);
    expect(rows[0]).toMatchObject({ actor: { kind: 'service', id: null }, target: { table: 'users', id: userId }, before: null });
    expect(rows[0].after).toMatchObject({ id: userId, name: 'Ann' });
    expect([null, '[redacted]']).toContain(rows[0].after.password_hash);
    // The sign-up bonus is a ledger entry: the audit row points at it.
    expect(rows[1]).toMatchObject({ actor: { kind: 'service' }, target: { table: 'credit_ledger' }, after: { type: 'grant', amount: 3, user_id: userId } });

    const deactivated = await svc().patch(`/v1/users/${userId}`, { is_active: false });
    expect(deactivated.status).toBe(200);
    const [off] = await rowsOf(deactivated.headers['x-request-id']);
    expect(off).toMatchObject({ action: 'user.deactivated', before: { is_active: true }, after: { is_active: false } });
  });

  it('a sign-up is recorded with the anonymous caller and its request id, the bonus with it', async () => {
    const res = await client(app.server, null).post('/v1/auth/signup', { email: `s_${randomBytes(4).toString('hex')}@example.com`, password: 'correct horse battery' });
    expect(res.status).toBe(201);
    const rows = await rowsOf(res.headers['x-request-id']);
    expect(rows.map((r) => r.action)).toEqual(['user.created', 'credits.granted']);
    expect(rows[0]).toMatchObject({ actor: { kind: 'anon', id: null }, target: { table: 'users', id: res.body.user.id } });
    expect(rows[1]).toMatchObject({ target: { table: 'credit_ledger' }, after: { type: 'grant', user_id: res.body.user.id } });
  });

  it("a user's own actions name the user and the API key they used; revoking is its own action", async () => {
    const me = await signUp(app);
    const made = await me.api.post(`/v1/users/${me.user.id}/api-keys`, { name: 'ci', scopes: ['*'] });
    expect(made.status).toBe(201);
    const [row] = await rowsOf(made.headers['x-request-id']);
    expect(row).toMatchObject({ action: 'api_key.created', actor: { kind: 'user', id: me.user.id, api_key_id: null }, target: { table: 'api_keys', id: made.body.id } });
    // The key's hash is never copied: a redaction marker stands in its place.
    expect(row.after.key_hash).toBe('[redacted]');
    expect(JSON.stringify(row)).not.toContain(made.body.key);

    // With the key itself: the audit row names the key that acted.
    const viaKey = client(app.server, made.body.key);
    const second = await viaKey.post(`/v1/users/${me.user.id}/api-keys`, { name: 'second' });
    expect(second.status).toBe(201);
    const [byKey] = await rowsOf(second.headers['x-request-id']);
    expect(byKey.actor).toEqual({ kind: 'user', id: me.user.id, api_key_id: made.body.id });

    const revoked = await me.api.del(`/v1/api-keys/${second.body.id}`);
    expect(revoked.status).toBeLessThan(300);
    const [rev] = await rowsOf(revoked.headers['x-request-id']);
    expect(rev).toMatchObject({ action: 'api_key.revoked', target: { id: second.body.id }, before: { revoked_at: null } });
    // Using a key (its counters and last_used_at move) is not an admin action: no row.
    const before = (await svc().get(`/v1/audit?target_id=${made.body.id}`)).body.data.length;
    expect((await viaKey.get('/v1/me')).status).toBe(200);
    expect((await svc().get(`/v1/audit?target_id=${made.body.id}`)).body.data.length).toBe(before);
  });

  it('workspace membership, role changes and spend caps, and money movements through the ledger', async () => {
    const owner = await makeUser(app);
    const member = await makeUser(app);
    const ws = await svc().post('/v1/workspaces', { name: 'Audit Co', owner_id: owner.id });
    expect(ws.status).toBe(201);
    const added = await svc().post(`/v1/workspaces/${ws.body.id}/members`, { user_id: member.id, role: 'member' });
    expect(added.status).toBe(201);
    expect((await rowsOf(added.headers['x-request-id'])).map((r) => r.action)).toContain('workspace_member.added');
    const changed = await svc().patch(`/v1/workspaces/${ws.body.id}/members/${member.id}`, { role: 'admin' });
    expect(changed.status).toBe(200);
    const [role] = await rowsOf(changed.headers['x-request-id']);
    expect(role).toMatchObject({ action: 'workspace_member.role_changed', target: { table: 'workspace_members', id: `${ws.body.id}:${member.id}` }, before: { role: 'member' }, after: { role: 'admin' } });

    const cap = await svc().put(`/v1/workspaces/${ws.body.id}/members/${member.id}/spend-cap`, { amount: 500, period: 'month' }, { idempotencyKey: key() });
    expect(cap.status).toBe(200);
    expect((await rowsOf(cap.headers['x-request-id']))[0]).toMatchObject({ action: 'spend_cap.set', after: { amount: 500 } });

    const grant = await svc().post('/v1/credits/grant', { user_id: member.id, amount: 40, reason: 'promo' }, { idempotencyKey: key() });
    expect(grant.status).toBe(201);
    const [g] = await rowsOf(grant.headers['x-request-id']);
    expect(g).toMatchObject({ action: 'credits.granted', actor: { kind: 'service' }, target: { table: 'credit_ledger', id: grant.body.transaction.id }, after: { amount: 40, reason: 'promo' } });
    const adjust = await svc().post('/v1/credits/adjust', { user_id: member.id, amount: -5, reason: 'correction' }, { idempotencyKey: key() });
    expect(adjust.status).toBe(201);
    expect((await rowsOf(adjust.headers['x-request-id']))[0]).toMatchObject({ action: 'credits.adjusted', after: { amount: -5 } });
    // Debits are the ledger's own record only: the hot path writes no audit row.
    const debit = await svc().post('/v1/credits/debit', { user_id: member.id, amount: 1, reason: 'use' }, { idempotencyKey: key() });
    expect(debit.status).toBe(201);
    expect(await rowsOf(debit.headers['x-request-id'])).toEqual([]);
    // A replayed grant moves nothing and records nothing.
    const k = key();
    const first = await svc().post('/v1/credits/grant', { user_id: member.id, amount: 2, reason: 'once' }, { idempotencyKey: k });
    const replay = await svc().post('/v1/credits/grant', { user_id: member.id, amount: 2, reason: 'once' }, { idempotencyKey: k });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(await rowsOf(first.headers['x-request-id'])).toHaveLength(1);
    expect(await rowsOf(replay.headers['x-request-id'])).toEqual([]);
  });

  it('secrets are named, never copied: env vars, upstream credentials, webhook secrets', async () => {
    const dev = await signUp(app);
    const project = (await dev.api.post('/v1/projects', { name: 'audited' })).body.id;
    const secret = `sk-live-${randomBytes(12).toString('hex')}`;
    const env = await dev.api.post(`/v1/projects/${project}/env-vars`, { key: 'OPENAI_API_KEY', value: secret });
    expect(env.status).toBe(201);
    const [set] = await rowsOf(env.headers['x-request-id']);
    expect(set).toMatchObject({ action: 'env_var.set', actor: { kind: 'user', id: dev.user.id }, after: { key: 'OPENAI_API_KEY', value_enc: '[redacted]' } });
    const removed = await dev.api.del(`/v1/projects/${project}/env-vars/${env.body.id}`);
    expect(removed.status).toBeLessThan(300);
    expect((await rowsOf(removed.headers['x-request-id']))[0]).toMatchObject({ action: 'env_var.deleted', before: { key: 'OPENAI_API_KEY' } });

    const ups = await svc().post('/v1/gateway/upstreams', { type: 'openai', base_url: 'https://api.example.com/v1', credentials: secret, models: ['gpt-4o*'] });
    expect(ups.status).toBe(201);
    expect((await rowsOf(ups.headers['x-request-id']))[0]).toMatchObject({ action: 'upstream.created', after: { credentials_enc: '[redacted]' } });
    const rotated = await svc().patch(`/v1/gateway/upstreams/${ups.body.id}`, { credentials: `${secret}-2` });
    expect(rotated.status).toBe(200);
    expect((await rowsOf(rotated.headers['x-request-id']))[0]).toMatchObject({ action: 'upstream.credentials_rotated' });

    const ep = await svc().post('/v1/webhook-endpoints', { url: 'https://hooks.example.com/tally', event_types: ['*'] }, { idempotencyKey: key() });
    expect(ep.status).toBe(201);
    const [epRow] = await rowsOf(ep.headers['x-request-id']);
    expect(epRow).toMatchObject({ action: 'webhook_endpoint.created', after: { secret_enc: '[redacted]' } });

    const bucket = await svc().post('/v1/storage/buckets', { id: `b${randomBytes(3).toString('hex')}`, allowed_mime_types: ['text/*'] });
    expect(bucket.status).toBe(201);
    expect((await rowsOf(bucket.headers['x-request-id']))[0]).toMatchObject({ action: 'bucket.created', target: { table: 'storage_buckets', id: bucket.body.id } });

    // Nowhere in the whole log: not the plaintext, not the key's ciphertext.
    const { rows } = await sql<{ text: string }>`select coalesce(before::text, '') || coalesce(after::text, '') as text from ${t('audit_log')}`.execute(app.database.db);
    const all = rows.map((r) => r.text).join('\n');
    expect(all).not.toContain(secret);
    const { rows: enc } = await sql<{ value_enc: string }>`select credentials_enc as value_enc from ${t('gateway_upstreams')}`.execute(app.database.db);
    for (const e of enc) expect(all).not.toContain(e.value_enc);
  });

  it('plans, cost models and budget guards are recorded; usage moving a guard is not', async () => {
    const plan = await svc().post('/v1/plans', { slug: `p${randomBytes(3).toString('hex')}`, name: `Plan ${randomBytes(3).toString('hex')}`, allowances: [{ class: 'Usage', amount: 10 }] });
    expect(plan.status).toBe(201);
    const actions = (await rowsOf(plan.headers['x-request-id'])).map((r) => r.action);
    expect(actions).toEqual(expect.arrayContaining(['plan.created', 'plan_allowance.created']));
    const cm = await svc().post('/v1/cost-models', { metric: `m_${randomBytes(3).toString('hex')}`, base_rate: '1', class: 'Usage' });
    expect(cm.status).toBe(201);
    expect((await rowsOf(cm.headers['x-request-id']))[0]).toMatchObject({ action: 'cost_model.created', target: { table: 'cost_models', id: cm.body.metric } });
    const u = await makeUser(app);
    const guard = await svc().put(`/v1/users/${u.id}/budget-guard`, { monthly_cap: 30, behavior: 'suspend' });
    expect(guard.status).toBe(200);
    expect((await rowsOf(guard.headers['x-request-id']))[0]).toMatchObject({ action: 'budget_guard.created', after: { monthly_cap: 30 } });
    const raised = await svc().put(`/v1/users/${u.id}/budget-guard`, { monthly_cap: 60, behavior: 'suspend' });
    expect((await rowsOf(raised.headers['x-request-id']))[0]).toMatchObject({ action: 'budget_guard.updated', before: { monthly_cap: 30 }, after: { monthly_cap: 60 } });
    // Only the spend counter moves: the trigger's WHEN filters it out.
    await sql`update ${t('budget_guards')} set current_window_spend = current_window_spend + 1 where user_id = ${u.id}`.execute(app.database.db);
    expect((await svc().get(`/v1/audit?target_table=budget_guards&target_id=${guard.body.id}`)).body.data).toHaveLength(2);
  });

  it('a change that rolls back leaves no audit row; a refused request neither', async () => {
    const before = (await sql<{ n: number }>`select count(*)::int as n from ${t('audit_log')}`.execute(app.database.db)).rows[0]?.n;
    const dup = await svc().post('/v1/plans', { slug: 'dupe', name: 'Dupe one' });
    expect(dup.status).toBe(201);
    const again = await svc().post('/v1/plans', { slug: 'dupe', name: 'Dupe two' });
    expect(again.status).toBe(409);
    expect(await rowsOf(again.headers['x-request-id'])).toEqual([]);
    await expect(
      app.database.db.transaction().execute(async (trx) => {
        await sql`update ${t('plans')} set name = 'Rolled back' where slug = 'dupe'`.execute(trx);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    const after = (await sql<{ n: number }>`select count(*)::int as n from ${t('audit_log')}`.execute(app.database.db)).rows[0]?.n;
    expect(after).toBe((before ?? 0) + (await rowsOf(dup.headers['x-request-id'])).length);
    expect((await svc().get('/v1/audit/verify')).body).toMatchObject({ ok: true });
  });

  it('UPDATE, DELETE and TRUNCATE are refused for the owning role; the API has no write route', async () => {
    const any = (await sql<{ id: string }>`select id from ${t('audit_log')} limit 1`.execute(app.database.db)).rows[0]?.id;
    expect(any).toBeDefined();
    const db = app.database.db;
    expect(await failure(() => sql`update ${t('audit_log')} set action = 'user.updated' where id = ${any}`.execute(db))).toBe('42501');
    expect(await failure(() => sql`update ${t('audit_log')} set hash = 'x', seq = seq where id = ${any}`.execute(db))).toBe('42501');
    expect(await failure(() => sql`delete from ${t('audit_log')} where id = ${any}`.execute(db))).toBe('42501');
    expect(await failure(() => sql`truncate ${t('audit_log')}`.execute(db))).toBe('42501');
    expect(await failure(() => sql`update ${t('audit_chain')} set last_seq = 0`.execute(db))).toBe('42501');
    expect(await failure(() => sql`delete from ${t('audit_chain')}`.execute(db))).toBe('42501');
    // As the request roles, under RLS: not even visible.
    const asUser = await db.transaction().execute(async (trx) => {
      await sql`select set_config('role', 'authenticated', true)`.execute(trx);
      return failure(() => sql`select count(*) from ${t('audit_log')}`.execute(trx));
    });
    expect(asUser).toBe('42501');
    for (const method of ['POST', 'PATCH', 'PUT', 'DELETE'] as const) {
      expect((await svc().call(method, '/v1/audit', { body: {} })).status).toBe(404);
    }
    expect((await svc().get(`/v1/audit?limit=1`)).body.data).toHaveLength(1);
    const me = await signUp(app);
    expect((await me.api.get('/v1/audit')).status).toBe(403);
  });

  it('filters and pages: by actor, action, target, time; the cursor walks the whole log once', async () => {
    const all: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Json = await svc().get(`/v1/audit?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      all.push(...page.body.data.map((r: Json) => r.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(new Set(all).size).toBe(all.length);
    const total = (await sql<{ n: number }>`select count(*)::int as n from ${t('audit_log')}`.execute(app.database.db)).rows[0]?.n;
    expect(all.length).toBe(total);

    const grants = (await svc().get('/v1/audit?action=credits.granted&limit=200')).body.data;
    expect(grants.length).toBeGreaterThan(0);
    expect(grants.every((r: Json) => r.action === 'credits.granted')).toBe(true);
    const users = (await svc().get('/v1/audit?actor_kind=user&limit=200')).body.data;
    expect(users.length).toBeGreaterThan(0);
    const one = users[0];
    expect((await svc().get(`/v1/audit?actor_id=${one.actor.id}&limit=200`)).body.data.every((r: Json) => r.actor.id === one.actor.id)).toBe(true);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect((await svc().get(`/v1/audit?from=${encodeURIComponent(future)}`)).body.data).toEqual([]);
    expect((await svc().get(`/v1/audit?to=${encodeURIComponent(future)}&limit=1`)).body.data).toHaveLength(1);
    expect((await svc().get('/v1/audit?action=nope.nope')).status).toBe(400);
    expect((await svc().get(`/v1/audit?from=${encodeURIComponent(future)}&to=${encodeURIComponent(new Date(0).toISOString())}`)).status).toBe(400);
  });

  it('tampering with the triggers off breaks the hash chain, and verify finds it', async () => {
    expect((await svc().get('/v1/audit/verify')).body).toMatchObject({ ok: true, problems: [] });
    const victim = (await sql<{ id: string; seq: number }>`select id, seq::int as seq from ${t('audit_log')} where seq is not null order by seq limit 1 offset 1`.execute(app.database.db)).rows[0];
    expect(victim).toBeDefined();
    // What a superuser can do: switch the triggers off, rewrite a row, switch them on again.
    await app.database.db.transaction().execute(async (trx) => {
      await sql`alter table ${t('audit_log')} disable trigger user`.execute(trx);
      await sql`update ${t('audit_log')} set after = '{"forged": true}'::jsonb where id = ${victim?.id}`.execute(trx);
      await sql`alter table ${t('audit_log')} enable trigger user`.execute(trx);
    });
    const report = (await svc().get('/v1/audit/verify')).body;
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual(expect.arrayContaining([expect.objectContaining({ seq: victim?.seq, problem: expect.stringContaining('hash') })]));
    // Removing a row instead: a gap in seq.
    await app.database.db.transaction().execute(async (trx) => {
      await sql`alter table ${t('audit_log')} disable trigger user`.execute(trx);
      await sql`delete from ${t('audit_log')} where id = ${victim?.id}`.execute(trx);
      await sql`alter table ${t('audit_log')} enable trigger user`.execute(trx);
    });
    const gap = (await svc().get('/v1/audit/verify')).body;
    expect(gap.problems.some((p: Json) => p.problem.includes('missing'))).toBe(true);
  });
});

describe(`audit log: payments (${TARGET})`, () => {
  let app: TestApp;
  let hooks: Webhooks;
  beforeAll(async () => {
    hooks = await webhookSenders(() => app, { unitAmount: 10, currency: 'usd' });
    app = await createTestApp({ payments: hooks.config });
  });
  afterAll(async () => {
    await hooks.close();
    await app.close();
  });

  it("a payment applied by a provider's webhook names the provider and its event, and links the grant", async () => {
    const svc = client(app.server, app.serviceKey);
    const u = await makeUser(app);
    const event = stripeCheckout({ amount: 1000, metadata: { user_id: u.id } });
    expect((await hooks.stripe(event)).status).toBe(200);
    const rows: Json[] = (await svc.get(`/v1/audit?request_id=webhook:stripe:${event.id}`)).body.data;
    const actions = rows.map((r) => r.action);
    expect(actions).toEqual(expect.arrayContaining(['payment.created', 'credits.granted']));
    expect(rows.every((r) => r.actor.kind === 'provider' && r.actor.id === 'stripe')).toBe(true);
    const grant = rows.find((r) => r.action === 'credits.granted');
    expect(grant.after).toMatchObject({ user_id: u.id, amount: 100, type: 'grant' });
    // The provider's raw payload is never copied into the log.
    for (const r of rows.filter((x) => x.target.table === 'payments')) {
      expect([null, '[redacted]']).toContain(r.after.raw_payload);
    }
  });
});
