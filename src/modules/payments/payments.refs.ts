import type { Executor } from '../../db/database.js';
import type { ProviderName } from './payments.provider.js';
import * as repo from './payments.repository.js';

/**
 * A provider may name one payment by several ids (Stripe: its invoice, payment intent, charge and
 * checkout session — and since API 2025-03-31 no single event names them all). Every id an event
 * names is recorded in `payment_refs` → the id the payment's row is keyed by, so whichever event
 * comes first, later ones naming any known id find the same row (docs/payments.md, "Ids").
 */

/**
 * The provider payment id a payment's row is keyed by, given every id an event names for it:
 * the first one known (a row, or an alias recorded by an earlier event), else the event's own.
 * All the ids are recorded as its aliases.
 */
export async function claimKey(trx: Executor, provider: ProviderName, primary: string, refs: readonly string[]): Promise<string> {
  const all = [primary, ...refs.filter((r) => r !== primary)];
  const known = (await repo.paymentKeyOf(trx, provider, all)) ?? primary;
  await repo.refsRecord(trx, provider, all, known);
  // Read again: a concurrent event may have recorded one of these ids first (we waited for it).
  return (await repo.paymentKeyOf(trx, provider, all)) ?? known;
}

/** The payment a refund or dispute names, by any of its ids (locked); learns the ids it did not know. */
export async function paymentByAnyId(trx: Executor, provider: ProviderName, primary: string, refs: readonly string[]): Promise<repo.PaymentRow | undefined> {
  const all = [primary, ...refs.filter((r) => r !== primary)];
  const key = await repo.paymentKeyOf(trx, provider, all);
  if (!key) return undefined;
  await repo.refsRecord(trx, provider, all, key);
  return repo.paymentLockByProviderId(trx, provider, key);
}
