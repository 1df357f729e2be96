import type { OpeningBucket } from '../credits/credits.port.js';
import type { BatchContext } from './import.js';

/**
 * Opens an imported user's account and carries its balance over as one opening entry, exactly
 * (credits.engine.opening.ts): positive as a grant of source `import`, negative as debt. No sign-up
 * bonus, no events. Answers the opening entry's id (null for a zero balance: no entry is written).
 */
export async function openingBalance(ctx: BatchContext, userId: string, balance: number, shape: string, facts: Record<string, unknown>, buckets?: OpeningBucket[]): Promise<string | null> {
  const owner = { userId };
  await ctx.ledger.openAccount(ctx.trx, owner);
  if (balance === 0) return null;
  if (ctx.balanceCap !== null && balance > ctx.balanceCap) {
    ctx.anomaly({
      kind: 'over_cap',
      table: String(facts.source_table ?? 'users'),
      source_id: String(facts.source_id ?? userId),
      rule: 'Imported as it is (the cap limits new credits; these already exist): the account takes no new grant until it is spent below the cap',
      details: { balance, cap: ctx.balanceCap },
    });
  }
  const [result] = await ctx.ledger.executeIn(ctx.trx, owner, [
    { kind: 'open', requestId: `import:${userId}`, idem: null, amount: balance, reason: `opening balance imported from ${shape}`, metadata: { imported_from: shape, source: ctx.source, ...facts }, ...(buckets ? { buckets } : {}) },
  ]);
  if (!result?.ok) {
    // A refusal here is a bug or a user that already had entries (the insert would have conflicted first).
    throw new Error(`opening balance of ${userId} refused: ${result ? result.error.message : 'no answer'}`);
  }
  return (result.value as { transaction: { id: string } }).transaction.id;
}
