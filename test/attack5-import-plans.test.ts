import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TARGET } from './support/harness.js';
import { importHarness } from './support/import-cli.js';
import { createSource, fillVideoCredits, type Source, SOURCE_URL } from './support/import-source.js';

vi.setConfig({ testTimeout: 180_000 });

/**
 * Attacker review 5: a hostile video-credits (001) source names, in `user_subscriptions.plan_type`,
 * the deployment's own paid plan — or an internal one it does not offer — for users who never paid
 * Tally for it. Before, the subscription joined that plan service-managed, and the scheduler renewed
 * it (and granted its allowance) every month, for free. Now (import.plans.ts `renewalTerms`): without
 * a provider link it is the user's own — it renews only while the plan is free — and on a plan the
 * deployment does not offer it ends at the current period's end; linked, the provider's paid
 * invoices renew it.
 */
describe(`attack 5: an import cannot give a paid plan for free (${TARGET})`, () => {
  const ih = importHarness('a5p');
  const { run, q } = ih;
  let src: Source;
  let users: string[];

  beforeAll(async () => {
    await ih.start();
    src = await createSource('video-credits');
    await fillVideoCredits(src, 3);
    await src.query('alter table user_subscriptions drop constraint user_subscriptions_user_id_fkey');
    users = (await src.query<{ id: string }>("select id::text as id from users where email like 'u%@example.com' order by email")).map((u) => u.id);
    const [u0, u1, u2] = users as [string, string, string];
    const sub = (user: string, plan: string, providerId: string | null) =>
      src.query("insert into user_subscriptions (user_id, plan_type, plan_status, subscription_id, created_at) values ($1, $2, 'active', $3, now() - interval '40 days')", [user, plan, providerId]);
    await sub(u0, 'pro', null); // the deployment's paid plan, nobody paying
    await sub(u1, 'staff', null); // an internal free plan the deployment does not offer
    await sub(u2, 'pro', 'sub_a5_paid'); // a provider subscription: its invoices renew it
  }, 300_000);
  afterAll(async () => {
    await src?.drop();
    await ih.stop();
  });

  it('the unlinked subscriptions end at their period end instead of renewing; the linked one is left to its provider', async () => {
    const t = ih.newTarget();
    expect((await run(t, 'migrate')).code).toBe(0);
    await q(t, `insert into T.plans (id, slug, name, price_monthly, is_active) values ('plan_a5_pro', 'pro', 'Pro', 2000, true), ('plan_a5_staff', 'staff', 'Staff', 0, false)`);
    await q(t, `insert into T.plan_allowances (plan_id, class, amount) values ('plan_a5_pro', 'default', 1000), ('plan_a5_staff', 'default', 100000)`);
    const imported = await run(t, 'import', '--from', SOURCE_URL, '--source-schema', src.schema, '--json');
    expect(imported.code, imported.err).toBe(0);

    const subs = async () =>
      q<{ user_id: string; plan_id: string; status: string; self_service: boolean; cancel_at_period_end: boolean; end: string }>(
        t,
        'select user_id, plan_id, status, self_service, cancel_at_period_end, current_period_end::text as end from T.subscriptions order by user_id',
      );
    const [u0, u1, u2] = users as [string, string, string];
    const before = await subs();
    expect(before.find((s) => s.user_id === u0)).toMatchObject({ plan_id: 'plan_a5_pro', status: 'active', self_service: true, cancel_at_period_end: false });
    expect(before.find((s) => s.user_id === u1)).toMatchObject({ plan_id: 'plan_a5_staff', status: 'active', self_service: true, cancel_at_period_end: true });
    expect(before.find((s) => s.user_id === u2)).toMatchObject({ plan_id: 'plan_a5_pro', status: 'active', self_service: false, cancel_at_period_end: false });

    // An hour past the latest period end: the scheduler would have renewed and granted them.
    const ends = before.map((s) => new Date(s.end).getTime());
    const at = new Date(Math.max(...ends) + 3_600_000).toISOString();
    // The linked one is inside its provider's 3-day grace at `at`: it stays due, and `billing run`
    // once looped on it forever (found by attacker review 5); it must finish.
    expect((await run(t, 'billing', 'run', '--at', at)).code).toBe(0);
    const after = await subs();
    expect(after.find((s) => s.user_id === u0)?.status).toBe('canceled');
    expect(after.find((s) => s.user_id === u1)?.status).toBe('canceled');
    expect(after.find((s) => s.user_id === u2)?.status).toBe('active'); // its provider decides
    // No allowance of either plan reached the unpaid subscribers.
    const grants = await q<{ n: number }>(t, `select count(*)::int as n from T.credit_grants g where g.user_id in ('${u0}', '${u1}') and g.source not in ('import', 'debt', 'signup_bonus')`);
    expect(grants[0]?.n).toBe(0);
  });
});
