import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { MessageCharge, MessageCharger, MessageChargeResult } from '../projects/projects.charger.js';
import type { UsageService } from './billing.usage.service.js';

/**
 * A project message's cost as a usage event: priced by the metric's cost model, paid in billing's
 * order (free quota → allowance → rollover → credits → overage), in the message's transaction, and
 * idempotent by the message id (the event's action_hash).
 */
export class UsageMessageCharger implements MessageCharger {
  constructor(private readonly usage: UsageService) {}

  async charge(trx: Executor | null, charge: MessageCharge): Promise<MessageChargeResult> {
    if (!('userId' in charge.owner)) {
      throw errors.invalidRequest('Charging a workspace-owned project is not supported yet: usage events name a user', { field: 'charge' });
    }
    if (!trx) throw new Error('UsageMessageCharger needs the message transaction');
    const result = await this.usage.chargeIn(
      trx,
      { user_id: charge.owner.userId, metric: charge.metric, quantity: charge.quantity, action_hash: charge.actionHash, metadata: charge.metadata },
      `message:${charge.actionHash}`,
    );
    return { charged: Number(result['charged']), eventId: String(result['event_id']) };
  }
}
