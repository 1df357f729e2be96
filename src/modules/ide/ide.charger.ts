import type { Executor } from '../../db/database.js';

/**
 * How a finished code run reaches its project owner's credits (docs/ide.md, "Billing runs"): a
 * usage event of the configured metric, through billing's public usage service. The composition
 * root wires one only when the deployment opts in (`TALLY_CODE_EXECUTION_METRIC`); without one,
 * runs are not billed.
 */
export interface ExecutionCharge {
  /** Who pays: the project's user, or its workspace's pool for the member who ran it. */
  owner: { userId: string } | { workspaceId: string; memberId: string };
  /** Milliseconds the run took (≥ 1). */
  quantity: number;
  /** The run's id: the usage event's idempotency (`action_hash`), so the run is billed once. */
  actionHash: string;
  metadata: Record<string, unknown>;
}

export interface ExecutionChargeResult {
  charged: number;
  eventId: string;
}

export interface ExecutionCharger {
  /** The usage metric runs are billed as (its cost model prices them). */
  readonly metric: string;
  /** Charges inside the caller's transaction: the run's final move and its charge commit together. */
  charge(trx: Executor, charge: ExecutionCharge): Promise<ExecutionChargeResult>;
}
