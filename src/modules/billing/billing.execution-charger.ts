import type { Executor } from '../../db/database.js';
import type { ExecutionCharge, ExecutionCharger, ExecutionChargeResult } from '../ide/ide.charger.js';
import type { UsageService } from './billing.usage.service.js';

/**
 * A code run's time as a usage event (docs/billing.md, "Code executions"): priced by the metric's
 * cost model, paid in billing's order (or by the workspace pool), in the transaction of the run's
 * final move, and idempotent by the run's id (the event's action_hash) — a retried completion,
 * or an event the app already recorded for the run, charges once.
 */
export class UsageExecutionCharger implements ExecutionCharger {
  constructor(
    private readonly usage: UsageService,
    readonly metric: string,
  ) {}

  async charge(trx: Executor, charge: ExecutionCharge): Promise<ExecutionChargeResult> {
    const payer = 'userId' in charge.owner ? { user_id: charge.owner.userId } : { user_id: charge.owner.memberId, workspace_id: charge.owner.workspaceId };
    const result = await this.usage.chargeIn(
      trx,
      { ...payer, metric: this.metric, quantity: charge.quantity, action_hash: charge.actionHash, metadata: charge.metadata },
      `code_execution:${charge.actionHash}`,
    );
    return { charged: Number(result['charged']), eventId: String(result['event_id']) };
  }
}
