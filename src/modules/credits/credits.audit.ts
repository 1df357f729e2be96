import type { LedgerAuditEntry } from '../../core/audit.js';
import type { LedgerOp, OpResult } from './credits.js';

const ACTIONS: Partial<Record<LedgerOp['kind'], LedgerAuditEntry['action']>> = {
  grant: 'credits.granted',
  adjust: 'credits.adjusted',
  refund: 'credits.refunded',
  clawback: 'credits.clawed_back',
};

/**
 * The movements of a batch the audit log names: each grant, adjustment, refund and clawback that
 * wrote an entry now (not replays, not refusals, not a duplicate key's follower).
 */
export function auditedMovements(items: readonly { op: LedgerOp }[], results: readonly (OpResult | undefined)[]): LedgerAuditEntry[] {
  const out: LedgerAuditEntry[] = [];
  const seen = new Set<string>();
  items.forEach(({ op }, index) => {
    const action = ACTIONS[op.kind];
    const result = results[index];
    if (!action || !result?.ok || !result.created || result.replayed) return;
    const entry = (result.value as { transaction?: Record<string, unknown> } | null)?.transaction;
    const id = entry?.id;
    if (!entry || typeof id !== 'string' || seen.has(id)) return;
    seen.add(id);
    out.push({ action, transactionId: id, entry, principal: op.idem?.principal ?? null, requestId: op.idem ? op.requestId : null });
  });
  return out;
}
