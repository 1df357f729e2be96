import type { Executor } from '../../db/database.js';
import type { ExecutionCharge, ExecutionCharger, ExecutionChargeResult, ExecutionPayer } from '../ide/ide.charger.js';
import type { UsageService } from './billing.usage.service.js';

/** A billed run's hold outlives its longest billed time by this much (as a job's outlives its timeout). */
const HOLD_GRACE_SECONDS = 3600;

/**
 * A code run's time as a usage event (docs/billing.md, "Code executions"): the price of the
 * longest billed run (`holdMs`) held when it starts, then priced by the metric's cost model and
 * paid by capturing that hold (at most the hold) in the transaction of the run's final move,
 * idempotent by the run's id (the event's action_hash) — a retried completion, or an event the app
 * already recorded for the run, charges once (and the hold is then released).
 */
export class UsageExecutionCharger implements ExecutionCharger {
  constructor(
    private readonly usage: UsageService,
    readonly metric: string,
    private readonly holdMs = 60_000,
  ) {}

  async hold(trx: Executor, hold: { owner: ExecutionPayer; runId: string; metadata: Record<string, unknown> }): Promise<{ holdId: string | null; amount: number }> {
    return this.usage.holdIn(
      trx,
      { ...payerOf(hold.owner), metric: this.metric, quantity: this.holdMs },
      { expiresInSeconds: Math.ceil(this.holdMs / 1000) + HOLD_GRACE_SECONDS, metadata: { ...hold.metadata, code_execution_id: hold.runId, held_ms: this.holdMs } },
      `code_execution:${hold.runId}:hold`,
    );
  }

  async charge(trx: Executor, charge: ExecutionCharge): Promise<ExecutionChargeResult> {
    const result = await this.usage.chargeIn(
      trx,
      { ...payerOf(charge.owner), metric: this.metric, quantity: charge.quantity, action_hash: charge.actionHash, metadata: charge.metadata },
      `code_execution:${charge.actionHash}`,
      charge.holdId,
    );
    return { charged: Number(result['charged']), eventId: String(result['event_id']) };
  }
}

function payerOf(owner: ExecutionPayer): { user_id: string; workspace_id?: string } {
  return 'userId' in owner ? { user_id: owner.userId } : { user_id: owner.memberId, workspace_id: owner.workspaceId };
}
