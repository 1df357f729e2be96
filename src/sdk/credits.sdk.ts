import type { Static, TSchema } from 'typebox';
import { DomainError, errors } from '../core/errors.js';
import { validateBody } from '../core/validation.js';
import {
  adjustOp,
  captureOp,
  debitOp,
  grantOp,
  holdOp,
  LEDGER_OPERATIONS as OPS,
  type OpMeta,
  ownerOf,
  payerOf,
  refundOp,
  releaseOp,
} from '../modules/credits/credits.commands.js';
import { AdjustBody, CaptureBody, DebitBody, expectedAccountOf, GrantBody, HoldBody, type OpResult, RefundBody } from '../modules/credits/credits.js';
import type { CreditsService } from '../modules/credits/credits.service.js';
import { newId } from '../lib/ids.js';
import { type Operation, type Params, scopeOf, unwrap } from '../modules/idempotency/idempotency.js';

export interface MoneyOptions {
  /** Required, as on HTTP: the same key replays the first answer forever. */
  idempotencyKey: string;
}

/** What a money call answers: the same JSON the HTTP route returns. */
export type MovementResult = {
  transaction: { id: string; type: string; amount: number; balance_after: number; [k: string]: unknown };
  balance: { balance: number; held: number; available: number; [k: string]: unknown };
};
export type HoldResult = { id: string; status: string; amount: number; captured: number | null; [k: string]: unknown };

/**
 * A refusal, with the API's error code from the closed catalogue (src/core/errors.ts): the same
 * code, message and details the HTTP route answers, without the HTTP status.
 */
export { DomainError as TallyError };

/**
 * The in-process SDK for the ledger. Each call validates with the route's own schema, builds the
 * same operation, and records its key under the operation the route declares (the service's
 * principal), so a key used here and over HTTP is one key.
 */
export class CreditsSdk {
  constructor(private readonly credits: CreditsService) {}

  grant(body: Static<typeof GrantBody>, opts: MoneyOptions): Promise<MovementResult> {
    return this.move(OPS.grant, {}, GrantBody, body, opts, (b, m) => this.credits.execute(ownerOf(b), grantOp(b, m)));
  }

  debit(body: Static<typeof DebitBody>, opts: MoneyOptions): Promise<MovementResult> {
    return this.move(OPS.debit, {}, DebitBody, body, opts, (b, m) => this.credits.execute(payerOf(b).owner, debitOp(b, m)));
  }

  refund(body: Static<typeof RefundBody>, opts: MoneyOptions): Promise<MovementResult> {
    return this.move(OPS.refund, {}, RefundBody, body, opts, (b, m) => this.credits.execute(ownerOf(b), refundOp(b, m)));
  }

  adjust(body: Static<typeof AdjustBody>, opts: MoneyOptions): Promise<MovementResult> {
    return this.move(OPS.adjust, {}, AdjustBody, body, opts, (b, m) => this.credits.execute(ownerOf(b), adjustOp(b, m)));
  }

  hold(body: Static<typeof HoldBody>, opts: MoneyOptions): Promise<HoldResult> {
    return this.move(OPS.hold, {}, HoldBody, body, opts, (b, m) => this.credits.execute(payerOf(b).owner, holdOp(b, m)));
  }

  capture(holdId: string, body: Static<typeof CaptureBody>, opts: MoneyOptions): Promise<HoldResult> {
    return this.move(OPS.capture, { id: holdId }, CaptureBody, body, opts, (b, m) =>
      this.credits.executeOnHold(holdId, captureOp(holdId, b, m), expectedAccountOf(b)),
    );
  }

  release(holdId: string, opts: MoneyOptions): Promise<HoldResult> {
    return this.move(OPS.release, { id: holdId }, null, {}, opts, (_b, m) =>
      this.credits.executeOnHold(holdId, releaseOp(holdId, m)),
    );
  }

  private async move<B, R>(
    op: Operation,
    params: Params,
    schema: TSchema | null,
    body: B,
    opts: MoneyOptions,
    run: (body: B, meta: OpMeta) => Promise<OpResult>,
  ): Promise<R> {
    const requestId = newId('request');
    if (!/^[\x21-\x7e]{1,255}$/.test(opts.idempotencyKey ?? '')) {
      throw errors.invalidRequest('idempotencyKey must be 1–255 printable ASCII characters');
    }
    if (schema) {
      const problem = validateBody(schema, body);
      if (problem) throw errors.invalidRequest(problem);
    }
    return unwrap(await run(body, { requestId, idem: scopeOf(op, { principal: 'service' }, opts.idempotencyKey, { params, body }) })) as R;
  }
}
