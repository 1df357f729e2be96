import type { ConsumeTier, GrantState } from './credits.js';

/**
 * The order credits are taken in. Consumption order: soonest expiry, then priority (lower
 * first), then oldest — the same for debits, captures, usage tiers, expiry and clawbacks.
 */
export function compareGrants(a: GrantState, b: GrantState): number {
  const ea = a.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  const eb = b.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  if (ea !== eb) return ea < eb ? -1 : 1;
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ca = a.createdAt.getTime();
  const cb = b.createdAt.getTime();
  if (ca !== cb) return ca - cb;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Whether a grant belongs to a tier. `other` is every grant whose source no named tier lists: an
 * allowance of another class (a hybrid plan's separate pool) is in no tier, so it is never taken.
 */
export function inConsumeTier(g: GrantState, tier: ConsumeTier, tiers: ConsumeTier[]): boolean {
  if (tier.sources === 'other') {
    return !tiers.some((t) => t.sources !== 'other' && t.sources.includes(g.source));
  }
  return tier.sources.includes(g.source) && (tier.classes === null || tier.classes.includes(g.class));
}

/**
 * What a consumption over these tiers could take from `live` (in consumption order), per tier,
 * up to `want` and to what is available.
 */
export function coverableOf(live: GrantState[], available: number, tiers: ConsumeTier[], want = Number.POSITIVE_INFINITY): { name: string; amount: number }[] {
  let left = Math.min(Math.max(available, 0), want);
  return tiers.map((tier) => {
    const inTier = live.filter((g) => inConsumeTier(g, tier, tiers)).reduce((s, g) => s + g.remaining, 0);
    const amount = Math.min(inTier, left);
    left -= amount;
    return { name: tier.name, amount };
  });
}
