/**
 * The payment providers Tally speaks to: one closed list, shared by payments (which verifies and
 * normalises their deliveries) and billing (whose subscriptions they may manage). Adding one also
 * needs a migration for the database's check constraints (docs/payments.md).
 */
export const PROVIDERS = ['stripe', 'paypal', 'creem', 'lemonsqueezy'] as const;
export type ProviderName = (typeof PROVIDERS)[number];
