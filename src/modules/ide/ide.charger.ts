import type { Executor } from '../../db/database.js';

/** Who pays for a run: the project's user, or its workspace's pool for the member who ran it. */
export type ExecutionPayer = { userId: string } | { workspaceId: string; memberId: string };

/**
 * How a code run reaches its project owner's credits (docs/ide.md, "Billing runs"): prepaid by a
 * ledger hold taken when it starts, and charged as a usage event of the configured metric, paid
 * by capturing that hold, when it ends — through billing's public usage service. The composition
 * root wires one only when the deployment opts in (`TALLY_CODE_EXECUTION_METRIC`); without one,
 * runs are not billed.
 */
export interface ExecutionCharge {
  owner: ExecutionPayer;
  /** Milliseconds the run took (≥ 1). */
  quantity: number;
  /** The run's id: the usage event's idempotency (`action_hash`), so the run is billed once. */
  actionHash: string;
  metadata: Record<string, unknown>;
  /** The hold taken when the run started (null: none — a run started before holds, or one priced 0). */
  holdId: string | null;
}

export interface ExecutionChargeResult {
  charged: number;
  eventId: string;
}

export interface ExecutionCharger {
  /** The usage metric runs are billed as (its cost model prices them). */
  readonly metric: string;
  /**
   * Reserves the price of the longest billed run on the payer, inside the caller's transaction
   * (the run's move to running): the payer's role, spend cap and credits are checked here, and a
   * refusal (402, 403, 404, an unpriced metric 400) refuses the start. Answers the hold's id (null
   * when the price is 0).
   */
  hold(trx: Executor, hold: { owner: ExecutionPayer; runId: string; metadata: Record<string, unknown> }): Promise<{ holdId: string | null; amount: number }>;
  /**
   * Charges inside the caller's transaction: the run's final move and its charge commit together.
   * With an open hold, the charge captures it (at most the hold, the rest released) and re-checks
   * nothing about the payer.
   */
  charge(trx: Executor, charge: ExecutionCharge): Promise<ExecutionChargeResult>;
}
