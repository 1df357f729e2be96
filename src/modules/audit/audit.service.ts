import type { Executor } from '../../db/database.js';
import type { RunStatement } from '../../db/statements.js';
import type { LedgerAudit, LedgerAuditEntry } from '../../core/audit.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import type { AuditFilter, AuditVerification } from './audit.js';
import { auditChainChunk, auditHead, auditLedgerInsert, auditList, auditUnsealed, type LedgerAuditRow } from './audit.repository.js';

const CHUNK = 5000;
const MAX_PROBLEMS = 50;

/**
 * The audit log (docs/audit.md): read by the service, verified by `tally audit verify` and
 * `tally reconcile`, written by triggers and — for ledger movements — by the ledger's batches.
 */
export class AuditService implements LedgerAudit {
  constructor(private readonly schema: string) {}

  async list(db: Executor, principal: Principal, page: PageRequest, filter: AuditFilter) {
    if (principal.kind !== 'service') throw errors.forbidden('The audit log is for the service key');
    if (filter.from && filter.to && filter.from >= filter.to) throw errors.invalidRequest('from must be before to', { field: 'from' });
    return auditList(db, page, filter);
  }

  /** Called by the ledger inside its batch's transaction; nothing to name → no statement. */
  async record(run: RunStatement, entries: readonly LedgerAuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await auditLedgerInsert(run, this.schema, entries.map(ledgerRow));
  }

  /**
   * Walks the chain from the first row: each seq follows the last, each prev_hash is the last
   * hash, each hash is what the database computes for the row now, and the head names the last
   * row. A row rewritten, removed or added with the triggers disabled breaks one of these.
   */
  async verify(db: Executor): Promise<AuditVerification> {
    const problems: AuditVerification['problems'] = [];
    const note = (p: AuditVerification['problems'][number]) => {
      if (problems.length < MAX_PROBLEMS) problems.push(p);
    };
    let last = { seq: 0, hash: '' };
    let rows = 0;
    for (;;) {
      const chunk = await auditChainChunk(db, this.schema, last.seq, CHUNK);
      for (const link of chunk) {
        rows += 1;
        const seq = link.seq ?? 0;
        if (seq !== last.seq + 1) note({ seq, id: link.id, problem: `expected seq ${last.seq + 1}: rows ${last.seq + 1}..${seq - 1} are missing` });
        if ((link.prev_hash ?? '') !== last.hash) note({ seq, id: link.id, problem: 'prev_hash is not the previous row’s hash' });
        if (link.hash !== link.digest) note({ seq, id: link.id, problem: 'hash does not match the row’s content' });
        last = { seq, hash: link.hash ?? '' };
      }
      if (chunk.length < CHUNK) break;
    }
    for (const u of await auditUnsealed(db, MAX_PROBLEMS)) note({ seq: null, id: u.id, problem: 'row committed without a seal (triggers were disabled)' });
    const head = await auditHead(db);
    if (!head) note({ seq: null, id: null, problem: 'the chain head (audit_chain) is missing' });
    else if (head.last_seq !== last.seq || head.last_hash !== last.hash) {
      note({ seq: head.last_seq, id: null, problem: `the head names seq ${head.last_seq}, the log ends at ${last.seq}` });
    }
    return { ok: problems.length === 0, rows, last_seq: last.seq, last_hash: last.hash, problems };
  }
}

function ledgerRow(e: LedgerAuditEntry): LedgerAuditRow {
  const actor = actorOf(e.principal);
  // Tally's own callers (payments, jobs) run the ledger inside their transaction, which names the
  // actor and request better (the provider and its event): theirs are taken from the settings.
  return { actor_kind: actor?.kind ?? null, actor_id: actor?.id ?? null, action: e.action, target_id: e.transactionId, after: e.entry, request_id: actor ? e.requestId : null };
}

/** An API caller's idempotency principal as an audit actor (`service`, `user:<id>`); others: null. */
function actorOf(principal: string | null): { kind: string; id: string | null } | null {
  if (principal === 'service') return { kind: 'service', id: null };
  if (principal?.startsWith('user:')) return { kind: 'user', id: principal.slice(5) };
  return null;
}
