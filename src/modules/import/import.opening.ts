import type { LedgerOp, OpeningBucket } from '../credits/credits.port.js';
import type { BatchContext } from './import.js';

/**
 * Opens an imported user's account and carries its balance over as one opening entry, exactly
 * (credits.engine.opening.ts): positive as a grant of source `import`, negative as debt. No sign-up
 * bonus, no events. Answers the opening entry's id (null for a zero balance: no entry is written).
 * One user's case of `openingBalances`.
 */
export async function openingBalance(ctx: BatchContext, userId: string, balance: number, shape: string, facts: Record<string, unknown>, buckets?: OpeningBucket[]): Promise<string | null> {
  const [entry] = await openingBalances(ctx, shape, [{ userId, balance, facts, ...(buckets ? { buckets } : {}) }]);
  return entry ?? null;
}

/** One imported user's opening, for `openingBalances`. */
export interface Opening {
  userId: string;
  balance: number;
  facts: Record<string, unknown>;
  /** How the balance splits into classed, expiring grants (app-builder's buckets). */
  buckets?: OpeningBucket[];
}

/**
 * `openingBalance` for a whole batch of users: their accounts opened in one statement and their
 * openings written as one ledger batch (accounts locked together, written together), instead of a
 * ledger batch per user — the import's users step went from ~2 ms a user to a few round trips a
 * batch. Answers each user's opening entry id (null for a zero balance), in the order given.
 */
export async function openingBalances(ctx: BatchContext, shape: string, openings: readonly Opening[]): Promise<(string | null)[]> {
  if (openings.length === 0) return [];
  await ctx.ledger.openAccounts(ctx.trx, openings.map((o) => ({ userId: o.userId })));
  const items: { owner: { userId: string }; op: LedgerOp; at: number }[] = [];
  for (const [at, o] of openings.entries()) {
    if (o.balance === 0) continue;
    if (ctx.balanceCap !== null && o.balance > ctx.balanceCap) {
      ctx.anomaly({
        kind: 'over_cap',
        table: String(o.facts.source_table ?? 'users'),
        source_id: String(o.facts.source_id ?? o.userId),
        rule: 'Imported as it is (the cap limits new credits; these already exist): the account takes no new grant until it is spent below the cap',
        details: { balance: o.balance, cap: ctx.balanceCap },
      });
    }
    const op: LedgerOp = { kind: 'open', requestId: `import:${o.userId}`, idem: null, amount: o.balance, reason: `opening balance imported from ${shape}`, metadata: { imported_from: shape, source: ctx.source, ...o.facts }, ...(o.buckets ? { buckets: o.buckets } : {}) };
    items.push({ owner: { userId: o.userId }, op, at });
  }
  const entries: (string | null)[] = openings.map(() => null);
  const results = await ctx.ledger.executeManyIn(ctx.trx, items.map(({ owner, op }) => ({ owner, op })));
  for (const [i, result] of results.entries()) {
    const item = items[i];
    if (!item) continue;
    // A refusal here is a bug or a user that already had entries (the insert would have conflicted first).
    if (!result?.ok) throw new Error(`opening balance of ${item.owner.userId} refused: ${result ? result.error.message : 'no answer'}`);
    entries[item.at] = (result.value as { transaction: { id: string } }).transaction.id;
  }
  return entries;
}
