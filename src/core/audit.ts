import type { RunStatement } from '../db/statements.js';

/**
 * A ledger movement the audit log names (docs/audit.md). The ledger itself is the record of the
 * money; the audit row says who moved it, from which request, and points at the entry.
 * Debits, captures and usage never come here: the hot path pays nothing for the audit log.
 */
export interface LedgerAuditEntry {
  action: 'credits.granted' | 'credits.adjusted' | 'credits.refunded' | 'credits.clawed_back';
  /** The ledger entry (`txn_…`): the audit row's target in `credit_ledger`. */
  transactionId: string;
  /** The entry as the API shows it (its after-image). */
  entry: Record<string, unknown>;
  /**
   * Who asked, as the idempotency scope names them (`service`, `user:<id>`, `payments`,
   * `job:<id>`); null = whoever the transaction's settings name (the request that runs it).
   */
  principal: string | null;
  /** The request's id; null = the transaction's `tally.request_id`. */
  requestId: string | null;
}

/** Where the ledger reports its audited movements, in its batch's transaction (one statement). */
export interface LedgerAudit {
  record(run: RunStatement, entries: readonly LedgerAuditEntry[]): Promise<void>;
}

/** For compositions without an audit log (unit tests of the engine). */
export const NO_LEDGER_AUDIT: LedgerAudit = { record: async () => {} };
