import type { Executor } from '../../db/database.js';

/**
 * How a message's cost reaches the owner's credits: a usage event (POST /v1/events, the billing
 * module). The composition root wires an implementation once billing exists; until then none is
 * wired and a message's cost is recorded on the message and its session but not charged.
 */
export interface MessageCharge {
  owner: { userId: string } | { workspaceId: string };
  metric: string;
  quantity: number;
  /** The message id: the usage event's idempotency (`action_hash`), so a retry charges once. */
  actionHash: string;
  metadata: Record<string, unknown>;
}

export interface MessageChargeResult {
  /** Credits the event charged (its `charged`). */
  charged: number;
  /** The usage event's id, kept on the message. */
  eventId: string;
}

export interface MessageCharger {
  /** Charges inside the caller's transaction when given one, so the message and its charge commit together. */
  charge(trx: Executor | null, charge: MessageCharge): Promise<MessageChargeResult>;
}
