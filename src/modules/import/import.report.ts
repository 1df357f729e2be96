import type { Anomaly, ReviewItem, SkipReason } from './import.js';
import type { AccountComparison } from './import.repository.js';

/** What `tally import` answers (printed as JSON with `--json`, written whole to `--report <file>`). */
export interface ImportReport {
  run_id: string;
  source: string;
  shape: string;
  /** How the shape was settled: detected from the tables present, or as asked. */
  detection: string;
  dry_run: boolean;
  strict: boolean;
  /** `--owner`: whom the source's ownerless rows belong to (null: not given). */
  owner: { given: string; user_id: string; from: 'tally' | 'source' } | null;
  resumed: boolean;
  status: 'completed' | 'refused' | 'failed';
  error: string | null;
  tables: TableReport[];
  not_imported: { table: string; why: string }[];
  /** Rows an operator must act on: imported inactive (llm-relay's upstreams, app-builder's cost models), or money owed outside Tally (app-builder's unsettled overage). */
  needs_review: ReviewItem[];
  credits: {
    /** Σ balances and accounts in the source, read from the source. */
    source_total: number;
    source_accounts: number;
    /** Σ opening entries and accounts imported in Tally from this source. */
    tally_total: number;
    tally_accounts: number;
    /** Σ source balances as recorded at import (equals source_total unless the source moved since). */
    recorded_source_total: number;
    /** Every account's opening equals its source balance, and the totals agree, to the credit. */
    match: boolean;
    /** Accounts whose opening differs from the source balance (first 1,000). */
    mismatches: AccountComparison[];
  };
  anomalies: { total: number; by_kind: Record<string, number>; cases: Anomaly[] };
  reconcile: { ok: boolean; accounts: number; drift: number };
  started_at: string;
  finished_at: string;
}

export interface TableReport {
  table: string;
  /** Rows in the source table when it was read. */
  source_rows: number;
  read: number;
  imported: number;
  skipped: number;
  skipped_by_reason: Partial<Record<SkipReason, number>>;
}

/** The report for people: one line per table, the credits, the anomalies by kind, the verdict. */
export function humanReport(r: ImportReport): string {
  const lines: string[] = [];
  lines.push(`import ${r.run_id}: ${r.shape} from ${r.source}${r.dry_run ? ' (dry run: nothing was kept)' : ''}${r.resumed ? ' (resumed)' : ''}`);
  lines.push(`  ${r.detection}`);
  if (r.owner) lines.push(`  owner of the ownerless rows: ${r.owner.user_id} (${r.owner.from === 'tally' ? 'a Tally user' : 'imported from the source'})`);
  lines.push('  table                     source     read  imported  skipped');
  for (const t of r.tables) {
    const reasons = Object.entries(t.skipped_by_reason).map(([k, v]) => `${k} ${v}`).join(', ');
    lines.push(`  ${t.table.padEnd(24)} ${String(t.source_rows).padStart(7)} ${String(t.read).padStart(8)} ${String(t.imported).padStart(9)} ${String(t.skipped).padStart(8)}${reasons ? `  (${reasons})` : ''}`);
  }
  for (const n of r.not_imported) lines.push(`  ${n.table.padEnd(24)} not imported: ${n.why}`);
  if (r.needs_review.length > 0) lines.push(`  needs review (${r.needs_review.length}, each says what to do):`);
  for (const n of r.needs_review) {
    const facts = Object.entries(n.details).map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : String(v)}`).join(', ');
    lines.push(`    ${n.target_table} ${n.target_id} (source ${n.table} ${n.source_id}): ${facts} — ${n.why}`);
  }
  const c = r.credits;
  lines.push(`  credits: source ${c.source_total} in ${c.source_accounts} accounts; Tally ${c.tally_total} in ${c.tally_accounts} accounts — ${c.match ? 'match to the credit' : 'MISMATCH'}`);
  for (const m of c.mismatches.slice(0, 20)) lines.push(`    ${m.source_id}: source ${m.source}, opening ${m.opening}, balance now ${m.balance ?? 'none'}`);
  if (r.anomalies.total > 0) {
    lines.push(`  anomalies: ${Object.entries(r.anomalies.by_kind).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    const seen = new Set<string>();
    for (const a of r.anomalies.cases) {
      if (seen.has(a.kind)) continue;
      seen.add(a.kind);
      lines.push(`    ${a.kind}: ${a.rule}`);
    }
  } else lines.push('  anomalies: none');
  lines.push(`  reconcile: ${r.reconcile.ok ? 'ok' : `${r.reconcile.drift} problem(s)`} over ${r.reconcile.accounts} accounts`);
  lines.push(r.status === 'completed' ? (c.match && r.reconcile.ok ? 'ok' : 'FAILED: credits do not match') : `${r.status.toUpperCase()}: ${r.error ?? ''}`);
  return `${lines.join('\n')}\n`;
}
