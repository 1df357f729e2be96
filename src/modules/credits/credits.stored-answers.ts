import type { StoredResponse } from '../idempotency/idempotency.js';
import { transactionBody } from './credits.js';
import { type EntryRow, entryFromRow } from './credits.repository.js';

/**
 * Compact stored answers (issue 21). A movement's answer (`{transaction, balance}`, ~600 bytes of
 * JSON) was the biggest thing a debit wrote. Its transaction half is the ledger row the same batch
 * writes, so the idempotency record keeps only what the row cannot give back — the entry's id, the
 * account's held and totals and its grants at that moment, and the entry's metadata when it has
 * any (jsonb reorders keys, and a replay must return the very bytes of the first answer):
 *
 *   {"$m":"txn_…","h":0,"c":1000,"s":3,"g":[["grt_…","purchased","grant",997,null,100]]}
 *
 * A replay reads the row with the record (`ledgerEntryColumn`) and rebuilds the answer. Anything
 * that is not exactly a movement of that shape is stored whole, as before; so are records written
 * before this change. docs/ledger.md, "Speed".
 */
const PREFIX = '{"$m":"';

type Grant = { id: string; class: string; source: string; remaining: number; expires_at: string | null; priority: number };
type CompactGrant = [string, string, string, number, string | null, number];
interface Compact {
  $m: string;
  h: number;
  c: number;
  s: number;
  g: CompactGrant[];
  m?: Record<string, unknown>;
}

const TRANSACTION_KEYS = 13;
const BALANCE_KEYS = 8;
const GRANT_KEYS = 6;
const count = (o: object): number => Object.keys(o).length;

/** The text to store for an answer: compact for a movement, its JSON otherwise. */
export function storedBodyText(answer: StoredResponse): string {
  return compactMovement(answer.body) ?? JSON.stringify(answer.body ?? null);
}

function compactMovement(body: unknown): string | null {
  if (!body || typeof body !== 'object' || count(body) !== 2) return null;
  const { transaction: t, balance: b } = body as { transaction?: Record<string, unknown>; balance?: Record<string, unknown> };
  if (!t || !b || count(t) !== TRANSACTION_KEYS || count(b) !== BALANCE_KEYS) return null;
  // Only what the row and the compact fields give back exactly (else: stored whole).
  if (typeof t['id'] !== 'string' || /["\\]/.test(t['id'])) return null;
  if (b['balance'] !== t['balance_after'] || b['user_id'] !== t['user_id'] || b['workspace_id'] !== t['workspace_id']) return null;
  const held = b['held'] as number;
  if (b['available'] !== (b['balance'] as number) - held) return null;
  const grants = b['grants'] as Grant[];
  if (!Array.isArray(grants) || grants.some((g) => count(g) !== GRANT_KEYS)) return null;
  const metadata = t['metadata'] as Record<string, unknown> | null;
  if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) return null;
  const compact: Compact = {
    $m: t['id'],
    h: held,
    c: b['total_credited'] as number,
    s: b['total_spent'] as number,
    g: grants.map((g) => [g.id, g.class, g.source, g.remaining, g.expires_at, g.priority]),
  };
  if (count(metadata) > 0) compact.m = metadata;
  return JSON.stringify(compact);
}

/** Whether a stored text is a compact movement (its answer needs the ledger row). */
export const isCompact = (text: string | null): boolean => text !== null && text.startsWith(PREFIX);

/**
 * A select-list column for a replay query over `idempotency_keys k`: the ledger row a compact record
 * names (row_to_json), null for any other record.
 */
export function ledgerEntryColumn(ledgerTable: string): string {
  return `case when left(k.response_body, ${PREFIX.length}) = '${PREFIX}'
      then (select row_to_json(l) from ${ledgerTable} l where l.id = split_part(substr(k.response_body, ${PREFIX.length + 1}), '"', 1)) end as entry`;
}

/** The answer's body from a stored record (and, for a compact one, its ledger row). */
export function storedBody(text: string | null, entry: EntryRow | null): unknown {
  if (text === null) return null;
  if (!isCompact(text)) return JSON.parse(text) as unknown;
  const c = JSON.parse(text) as Compact;
  if (!entry || entry.id !== c.$m) throw new Error(`idempotency: the ledger entry ${c.$m} of a stored answer is missing`);
  const transaction = transactionBody({ ...entryFromRow(entry), metadata: c.m ?? {} });
  return {
    transaction,
    balance: {
      user_id: transaction.user_id,
      workspace_id: transaction.workspace_id,
      balance: transaction.balance_after,
      held: c.h,
      available: transaction.balance_after - c.h,
      total_credited: c.c,
      total_spent: c.s,
      grants: c.g.map(([id, cls, source, remaining, expires_at, priority]) => ({ id, class: cls, source, remaining, expires_at, priority })),
    },
  };
}
