import { Type } from 'typebox';
import { iso, isoOrNull, NullableTimestamp, Timestamp } from '../../core/schemas.js';

/**
 * A member's spend cap on a workspace pool (docs/ledger.md, "Workspace pools"): at most `amount`
 * credits per `period` — `month` (the UTC calendar month, as Stripe's and OpenAI's monthly limits)
 * or `lifetime`. Debits, captures and usage the member makes from the pool count; so do their open
 * holds, until they resolve. The ledger enforces it atomically with each spend.
 */
export const SPEND_CAP_PERIODS = ['month', 'lifetime'] as const;
export type SpendCapPeriod = (typeof SPEND_CAP_PERIODS)[number];

export const SetSpendCapBody = Type.Object(
  {
    amount: Type.Integer({ minimum: 0, maximum: 1_000_000_000_000, description: 'Credits the member may spend from the pool per period (0: none)' }),
    period: Type.Union(SPEND_CAP_PERIODS.map((p) => Type.Literal(p)), { description: "'month': the UTC calendar month; 'lifetime': ever" }),
  },
  { additionalProperties: false },
);

export const SpendCap = Type.Object(
  {
    workspace_id: Type.String(),
    user_id: Type.String(),
    amount: Type.Integer(),
    period: Type.Union(SPEND_CAP_PERIODS.map((p) => Type.Literal(p))),
    spent: Type.Integer({ description: "The member's debits and captures on the pool in this period" }),
    held: Type.Integer({ description: "The member's open holds on the pool (they count until they resolve)" }),
    remaining: Type.Integer({ description: 'amount − spent − held, never below 0' }),
    period_start: NullableTimestamp,
    period_end: NullableTimestamp,
    set_by: Type.Union([Type.String(), Type.Null()]),
    updated_at: Timestamp,
  },
  { title: 'SpendCap' },
);

export interface SpendCapRow {
  workspace_id: string;
  user_id: string;
  amount: number;
  period: string;
  set_by: string | null;
  updated_at: Date | string;
}

export function spendCapToApi(row: SpendCapRow, spend: { spent: number; held: number; periodStart: Date | null; periodEnd: Date | null }) {
  const amount = Number(row.amount);
  return {
    workspace_id: row.workspace_id,
    user_id: row.user_id,
    amount,
    period: row.period as SpendCapPeriod,
    spent: spend.spent,
    held: spend.held,
    remaining: Math.max(0, amount - spend.spent - spend.held),
    period_start: isoOrNull(spend.periodStart),
    period_end: isoOrNull(spend.periodEnd),
    set_by: row.set_by,
    updated_at: iso(row.updated_at),
  };
}
