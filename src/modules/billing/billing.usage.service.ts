import type { Static } from 'typebox';
import { type DomainEvent, type EventSink, NO_EVENTS } from '../../core/events.js';
import type { Database, Executor } from '../../db/database.js';
import { inStatementTransaction, kyselyRunner, poolRunner, type RunStatement } from '../../db/statements.js';
import { type DomainError, errors, isRefusal } from '../../core/errors.js';
import { type AnswerCodec, created, done, type IdempotencyScope, type Operation, operation, type Outcome, refused, unwrap } from '../idempotency/idempotency.js';
import { idempotencyClaim, idempotencyComplete } from '../idempotency/idempotency.repository.js';
import { legacyRequestHash } from '../idempotency/idempotency.legacy.js';
import type { Invalidations } from '../../lib/invalidations.js';
import { LedgerQueue } from '../../lib/ledger-queue.js';
import { queueLimits } from '../../db/faults.js';
import { SnapshotCache } from '../../lib/snapshot-cache.js';
import { newId } from '../../lib/ids.js';
import type { BillingConfig } from '../../config/config.js';
import { accountIdOf, type ConsumeTier, type ConsumingAccount, type Ledger, type LedgerSnapshot, type Payer } from '../credits/credits.port.js';
import type { CatalogService } from './billing.catalog.service.js';
import { EVENT_ANSWER_EXTRAS, type EventBody, eventAnswer, toMicros } from './billing.js';
import { dateKey, localDay, localMonth, nextWindow } from './billing.periods.js';
import { type BillingState, type BillingWrites, type CounterWrite, type EventWrite, UsageSql } from './billing.usage-sql.js';

export type EventInput = Static<typeof EventBody>;
export type EventOutcome = Outcome;

/** Usage's operations: a request's Idempotency-Key is recorded under one of these (POST /v1/events, /v1/events/batch). */
export const USAGE_OPERATIONS: { readonly event: Operation; readonly events: Operation } = {
  event: operation('usage.event', '/v1/events'),
  events: operation('usage.events', '/v1/events/batch'),
};

interface Model {
  metric: string;
  formula: string;
  baseRate: number;
  class: string;
  dailyFreeQuota: number;
  active: boolean;
}
interface Sub {
  id: string;
  status: string;
  periodStart: Date;
  periodEnd: Date;
  payg: boolean;
  poolMode: string;
  unitAmount: string;
  unitMicros: number;
  currency: string;
}

/** What POST /v1/check prices over: one user's ledger and billing state, as loaded. */
interface CheckSnapshot {
  ledger: LedgerSnapshot;
  billing: BillingState;
}

export interface CheckCacheConfig {
  /** How long a snapshot may be served (0 = every check reads the database). */
  ttlMs: number;
  maxEntries: number;
}

const ceilCredits = (v: number): number => Math.max(0, Math.ceil(v - 1e-9));

/** One event waiting in the usage queue, with the request it came in (for error bodies). */
interface QueuedEvent {
  event: EventInput;
  requestId: string;
  /** A hold that prepaid the event (a billed code run's): its capture pays it, re-checking nothing. */
  holdId?: string | null;
}

/**
 * Usage events: priced by their metric's cost model and paid, in order, from the daily free
 * quota, the period allowance of the metric's class, rollover buckets, other credits, and — on a
 * pay-as-you-go plan — overage, after the budget guard said yes.
 *
 * Events go through the same kind of queue as the ledger's own operations (src/lib/ledger-queue.ts):
 * per user in arrival order, an account in at most one running transaction, everything that
 * arrives meanwhile grouped into the next transactions — on any mix of users, from any mix of
 * requests. A transaction is one lock, two loads, the pricing in memory and two writes (ledger,
 * billing). So concurrent requests never queue on each other's row locks, and a thousand single
 * events on one user cost a handful of transactions, not a thousand.
 *
 * The money side is the ledger's (credits.port.ts `consumeIn`): it locks, loads and writes the
 * accounts, and its engine takes the credits; usage prices and keeps billing's own rows.
 */
export class UsageService {
  private readonly sql: UsageSql;
  private readonly queue: LedgerQueue<QueuedEvent, EventOutcome>;

  constructor(
    private readonly database: Database,
    /** The ledger's port: every credit usage consumes goes through it. */
    private readonly ledger: Ledger,
    private readonly catalog: CatalogService,
    private readonly config: BillingConfig,
    private readonly now: () => Date,
    /** How answers are recorded under Idempotency-Keys (the composition root passes src/http/answers.ts). */
    private readonly answers: AnswerCodec,
    batching: { maxBatch: number; maxParallel: number; maxBacklog?: number } = { maxBatch: 256, maxParallel: 1 },
    private readonly invalidations?: Invalidations,
    checkCache: CheckCacheConfig = { ttlMs: 0, maxEntries: 0 },
    /** Where usage tells the app (budget_guard.alert|tripped, usage.quota_exhausted; docs/webhooks-out.md). */
    private readonly sink: EventSink = NO_EVENTS,
  ) {
    this.sql = new UsageSql(database.schema, ledger.snapshots.columns);
    this.queue = new LedgerQueue((items) => this.runQueued(items.map((i) => i.op)), batching.maxBatch, batching.maxParallel, undefined, queueLimits(batching.maxBacklog));
    // Untrusted while other processes' notices may be missed (docs/billing.md): read the database.
    this.checks = new SnapshotCache(checkCache.ttlMs, checkCache.maxEntries, () => this.now().getTime(), () => invalidations?.trusted ?? true);
    invalidations?.onAccounts((ids) => {
      for (const id of ids) if (id.startsWith('acc_u_')) this.checks.invalidate(id.slice(6));
    });
    invalidations?.onAny(() => this.checks.clear());
  }

  /** Usage events waiting in this process for a transaction (GET /ready). */
  get waiting(): number {
    return this.queue.waitingCount;
  }

  /** POST /v1/check's snapshots per (user, metric); see docs/billing.md ("Entitlement checks"). */
  private readonly checks: SnapshotCache<CheckSnapshot>;

  /**
   * Records a batch of events (one, for POST /v1/events). Each gets its own answer; a refused
   * event changes nothing, the others still apply. A request's events may commit in several
   * transactions (grouped by user); each is idempotent by its action_hash forever, which is what
   * makes the request's Idempotency-Key safe across them: the key is claimed first (another body
   * under it → 409 and nothing charged), answered when every event is, and a request that died
   * in between is simply run again (its committed events replay).
   */
  async record(events: EventInput[], ctx: { requestId: string; idem: IdempotencyScope | null; respond: (outcomes: EventOutcome[]) => EventOutcome }): Promise<EventOutcome> {
    if (ctx.idem) {
      const claim = await idempotencyClaim(this.database.db, ctx.idem);
      if (claim.kind === 'mismatch') return refused(errors.idempotencyKeyReused(), ctx.requestId);
      // status 0: claimed by a request that has not answered (running, or died): run again.
      if (claim.kind === 'replay' && claim.response.status !== 0) return { ...this.answers.decode(claim.response), replayed: true };
    }
    const outcomes = await Promise.all(events.map((event) => this.queue.submit(payerAccount(event), { event, requestId: ctx.requestId })));
    const answer = ctx.respond(outcomes);
    if (ctx.idem) await idempotencyComplete(this.database.db, ctx.idem, this.answers.encode(answer));
    return answer;
  }

  /** One transaction of queued events (any users), run again when it lost a race it can replay. */
  private async runQueued(items: QueuedEvent[]): Promise<EventOutcome[]> {
    try {
      return await this.runQueuedOnce(items);
    } finally {
      this.invalidations?.accountsChanged([...new Set(items.map((i) => payerAccount(i.event)))]);
    }
  }

  private async runQueuedOnce(items: QueuedEvent[]): Promise<EventOutcome[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await inStatementTransaction(this.database, (run) => this.recordIn(run, items));
      } catch (err) {
        // Another process committed the same action_hash (or opened an account) meanwhile: run
        // again, which now replays it.
        if (attempt < 2 && isRetryable(err)) continue;
        throw err;
      }
    }
  }

  /**
   * One event inside a caller's transaction (a project message's cost): the message and its
   * charge commit together. A refusal throws its API error, which rolls the caller back.
   */
  async chargeIn(trx: Executor, event: EventInput, requestId: string, holdId: string | null = null): Promise<Record<string, unknown>> {
    const [outcome] = await this.recordIn(kyselyRunner(trx), [{ event, requestId, holdId }]);
    if (!outcome) throw new Error('usage: no outcome for the charge');
    return unwrap(outcome) as Record<string, unknown>;
  }

  /**
   * Reserves what `quantity` of the metric costs at its cost model's full price (no free quota:
   * that is counted when the event is recorded) as a hold on the payer, inside the caller's
   * transaction: a billed code run's authorization before it runs. Refused (thrown) as the event
   * would be: no cost model, credits short (402), a pool member's role or cap. A price of 0 holds
   * nothing (null).
   */
  async holdIn(
    trx: Executor,
    event: { user_id: string; workspace_id?: string; metric: string; quantity: number },
    hold: { expiresInSeconds: number; metadata: Record<string, unknown> },
    requestId: string,
  ): Promise<{ holdId: string | null; amount: number }> {
    const run = kyselyRunner(trx);
    return this.ledger.consumeIn(run, [payerOf(event)], async (accounts, now) => {
      const session = accounts.get(payerAccount(event));
      if (!session) throw noPayer(event);
      const state = await this.sql.load(run, { ...quotaBounds(now), userIds: [event.user_id], metrics: [event.metric], keys: [] });
      const amount = new Pricing(this.catalog, this.config, state, now).priceOf(event);
      if (amount === 0) return { holdId: null, amount };
      const holdId = session.hold({
        requestId,
        amount,
        expiresInSeconds: hold.expiresInSeconds,
        metadata: { reason: `usage hold: ${event.metric}`, ...hold.metadata },
        memberId: event.workspace_id === undefined ? null : event.user_id,
      });
      return { holdId, amount };
    });
  }

  /**
   * One transaction's events: the ledger locks the users' accounts (in id order: never a deadlock
   * with its own batches), loads them and — once pricing took what it took — writes them; billing's
   * state is loaded after the locks and written after the ledger.
   */
  private async recordIn(run: RunStatement, items: QueuedEvent[]): Promise<EventOutcome[]> {
    const events = items.map((i) => i.event);
    const userIds = [...new Set(events.map((e) => e.user_id))].sort();
    const payers = items.map(({ event: e, holdId }) => ({ ...payerOf(e), ...(holdId ? { holdIds: [holdId] } : {}) }));
    const { pricing, outcomes } = await this.ledger.consumeIn(run, payers, async (accounts, now) => {
      const state = await this.sql.load(run, {
        ...quotaBounds(now),
        userIds,
        metrics: [...new Set(events.map((e) => e.metric))],
        keys: events.map((e) => ({ userId: e.user_id, actionHash: e.action_hash })),
      });
      const pricing = new Pricing(this.catalog, this.config, state, now);
      const outcomes = items.map(({ event, requestId, holdId }) => {
        try {
          return pricing.apply(event, accounts.get(payerAccount(event)) ?? null, holdId ?? null);
        } catch (err) {
          if (isRefusal(err)) return refused(err, requestId);
          throw err;
        }
      });
      return { pricing, outcomes };
    });
    await this.sql.write(run, pricing.writes());
    // What this batch tells, in its transaction: one statement (none when it tells nothing).
    await this.sink.record(run, pricing.told);
    return outcomes;
  }

  /**
   * What an event would do now, without doing it (no locks, nothing written). Priced over a
   * snapshot of the user's ledger and billing state that this process keeps for a short while
   * (TALLY_CHECK_CACHE_MS) and drops the moment one of its own writes to that user settles.
   */
  async check(input: { user_id: string; metric: string; quantity?: number; complexity_score?: number }) {
    const snap = await this.checks.get(input.user_id, `${input.user_id}\n${input.metric}`, () => this.loadCheck(input.user_id, input.metric));
    const now = this.now();
    const account = this.ledger.quote(snap.ledger, now);
    const event = { user_id: input.user_id, metric: input.metric, quantity: input.quantity ?? 1, complexity_score: input.complexity_score };
    return new Pricing(this.catalog, this.config, snap.billing, now).quote(event, account);
  }

  /** One round trip, no transaction: a check is a snapshot and writes nothing. */
  private async loadCheck(userId: string, metric: string): Promise<CheckSnapshot> {
    const run = poolRunner(this.database);
    const now = this.now();
    const st = await this.sql.loadForCheck(run, {
      ...quotaBounds(now),
      userIds: [userId],
      metrics: [metric],
      keys: [],
      accountId: accountIdOf({ userId }),
      // Holds that come due while the snapshot may be served: the session expires them on time.
      now: new Date(now.getTime() + this.checks.ttlMs),
    });
    const ledger = this.ledger.snapshots.snapshotOf(st.ledger);
    if (!ledger) throw errors.notFound('User', userId);
    return { ledger, billing: st.billing };
  }

}

/** Who pays an event: the user, or the workspace pool it names, for its member (role and cap). */
function payerOf(event: { user_id: string; workspace_id?: string | undefined }): Payer {
  return event.workspace_id === undefined ? { owner: { userId: event.user_id } } : { owner: { workspaceId: event.workspace_id }, memberId: event.user_id };
}

/** The refusal for an event whose payer has no account: no such user, or (for a stranger too) no such workspace. */
function noPayer(event: { user_id: string; workspace_id?: string | undefined }) {
  return event.workspace_id === undefined ? errors.notFound('User', event.user_id) : errors.notFound('Workspace', event.workspace_id);
}

/** The account an event is paid from: its workspace's pool when it names one, else its user's. */
function payerAccount(event: { user_id: string; workspace_id?: string | undefined }): string {
  return event.workspace_id === undefined ? accountIdOf({ userId: event.user_id }) : accountIdOf({ workspaceId: event.workspace_id });
}

/** Who pays an event, in consumption order, leaving out sources that paid nothing. */
function breakdownOf(freeCredits: number, tiers: { name: string; amount: number }[], overage: number) {
  return [
    { source: 'free_quota', amount: freeCredits },
    ...tiers.map((t) => ({ source: t.name as 'allowance' | 'rollover' | 'credits', amount: t.amount })),
    { source: 'overage', amount: overage },
  ].filter((b) => b.amount > 0);
}

/**
 * The quota windows pricing needs: the latest of each (user, metric) chain, if it ended recently
 * enough to matter (a window that began before it ended starts at its end: nextWindow). A local
 * day is at most 25 hours, so two days back covers it; a snapshot priced up to its TTL later too.
 */
function quotaBounds(now: Date): { quotaFrom: string; quotaTo: string } {
  const t = now.getTime();
  return { quotaFrom: new Date(t - 2 * 86_400_000).toISOString(), quotaTo: new Date(t + 2 * 86_400_000).toISOString() };
}

interface QuotaWindow {
  user_id: string;
  metric: string;
  date_key: string;
  window_start: Date;
  window_end: Date;
  consumed: number;
  quota: number;
  dirty: boolean;
}

function isRetryable(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === '23505' || code === '40P01' || code === '40001';
}

/**
 * The pricing rules over one batch's loaded state. Pure but for the state it accumulates (quota
 * used, counters, overage, guard spend), which `writes()` turns into rows.
 */
class Pricing {
  private readonly models = new Map<string, Model>();
  private readonly subs = new Map<string, Sub>();
  private readonly tz = new Map<string, string>();
  /** The latest quota window of each (user, metric) — a chain that never overlaps. */
  private readonly quotas = new Map<string, QuotaWindow>();
  private readonly seen = new Map<string, { requestHash: string; result: Record<string, unknown> }>();
  private readonly guards = new Map<string, { id: string; cap: number; behavior: string; notify: boolean; zone: string; windowStart: Date; windowEnd: Date; spend: number; a80: Date | null; a100: Date | null; dirty: boolean }>();
  private readonly overages = new Map<string, { id: string; user_id: string; subscription_id: string; metric: string; period_start: Date; period_end: Date; credits: number; unitAmount: string; unitMicros: number; currency: string; dirty: boolean }>();
  private readonly counters = new Map<string, CounterWrite>();
  private readonly events: EventWrite[] = [];
  /** What this batch tells the app (docs/webhooks-out.md), written with its rows. */
  readonly told: DomainEvent[] = [];

  constructor(
    private readonly catalog: CatalogService,
    private readonly config: BillingConfig,
    state: BillingState,
    private readonly now: Date,
  ) {
    for (const u of state.users) this.tz.set(u.id, u.time_zone ?? config.timeZone);
    for (const m of state.models) {
      this.models.set(m.metric, {
        metric: m.metric,
        formula: m.formula,
        baseRate: m.base_rate,
        class: m.class,
        dailyFreeQuota: m.daily_free_quota,
        active: m.is_active,
      });
    }
    for (const s of state.subs) {
      // numeric, as json gives it: a number; the decimal text is what toMicros reads.
      const unitAmount = String(s.overage_unit_amount);
      this.subs.set(s.user_id, {
        id: s.id,
        status: s.status,
        periodStart: new Date(s.current_period_start),
        periodEnd: new Date(s.current_period_end),
        payg: s.pay_as_you_go ?? s.plan_payg,
        poolMode: s.pool_mode,
        unitAmount,
        unitMicros: toMicros(unitAmount),
        currency: s.currency,
      });
    }
    for (const q of state.quotas) {
      const key = `${q.user_id}\n${q.metric}`;
      const windowEnd = new Date(q.window_end);
      const known = this.quotas.get(key);
      if (known && known.window_end >= windowEnd) continue;
      this.quotas.set(key, {
        user_id: q.user_id,
        metric: q.metric,
        date_key: q.date_key,
        window_start: new Date(q.window_start),
        window_end: windowEnd,
        consumed: q.consumed,
        quota: q.quota,
        dirty: false,
      });
    }
    for (const e of state.seen) this.seen.set(`${e.user_id}\n${e.action_hash}`, { requestHash: e.request_hash, result: eventAnswer(e) });
    for (const g of state.guards) {
      // The guard's own zone, fixed when the service set it — never the user's current one.
      const zone = g.time_zone ?? config.timeZone;
      const windowStart = new Date(g.window_start);
      this.guards.set(g.user_id, {
        id: g.id,
        cap: g.monthly_cap,
        behavior: g.behavior,
        notify: g.notify,
        zone,
        windowStart,
        // Guards from before 0008 kept no end: their month's, in their zone, worked out once.
        windowEnd: g.window_end ? new Date(g.window_end) : localMonth(windowStart, zone).end,
        spend: g.current_window_spend,
        a80: g.alerted_80_at ? new Date(g.alerted_80_at) : null,
        a100: g.alerted_100_at ? new Date(g.alerted_100_at) : null,
        dirty: false,
      });
    }
    for (const o of state.overages) {
      this.overages.set(`${o.subscription_id}\n${o.metric}`, {
        id: o.id,
        user_id: o.user_id,
        subscription_id: o.subscription_id,
        metric: o.metric,
        period_start: new Date(o.period_start),
        period_end: new Date(o.period_end),
        credits: o.credits,
        unitAmount: String(o.unit_amount),
        unitMicros: toMicros(String(o.unit_amount)),
        currency: o.currency,
        dirty: false,
      });
    }
  }

  /** An event's full price (no free quota), by its metric's cost model (unknown or inactive: refused). */
  priceOf(event: { metric: string; quantity: number }): number {
    return this.pricer(event).price(event.quantity);
  }

  private pricer(event: { metric: string; complexity_score?: number | undefined }) {
    const model = this.models.get(event.metric);
    if (!model || !model.active) {
      throw errors.invalidRequest(`Unknown metric "${event.metric}": create its cost model first`, { field: 'metric' });
    }
    const formula = this.catalog.formula(model.formula);
    const price = (q: number): number => {
      if (q <= 0) return 0;
      const r = formula.evaluate({ quantity: q, complexity: event.complexity_score ?? 0, base_rate: model.baseRate });
      if (!r.ok || !Number.isFinite(r.value) || r.value < 0) {
        throw errors.invalidRequest(`The cost model of "${model.metric}" gives no valid cost for this event${r.ok ? '' : `: ${r.error}`}`, {
          field: 'quantity',
        });
      }
      if (r.value > 1e12) throw errors.invalidRequest('The event costs more than 10^12 credits', { field: 'quantity' });
      return ceilCredits(r.value);
    };
    return { model, price };
  }

  /** Prices an event and works out who pays what — the shared core of `apply` and `quote`. */
  private plan(event: { user_id: string; workspace_id?: string | undefined; metric: string; quantity: number; complexity_score?: number | undefined }, session: ConsumingAccount) {
    // A pool pays from its own credits: the member's plan, allowances, daily free quota and budget
    // guard are theirs, not the pool's, so none of them applies (docs/ledger.md, "Workspace pools").
    const pool = event.workspace_id !== undefined;
    const { model, price } = this.pricer(event);
    const tz = this.tz.get(event.user_id) ?? this.config.timeZone;
    const quotaKey = `${event.user_id}\n${model.metric}`;
    // The current window of the chain, or the next one (not yet stored; apply stores it if used).
    const latest = this.quotas.get(quotaKey);
    let quota: QuotaWindow | undefined = !pool && latest && this.now < latest.window_end ? latest : undefined;
    if (!pool && !quota && model.dailyFreeQuota > 0) {
      const w = nextWindow(latest?.window_end ?? null, this.now, tz, 'day');
      quota = {
        user_id: event.user_id, metric: model.metric, date_key: dateKey(w.start, tz), window_start: w.start, window_end: w.end,
        consumed: 0, quota: model.dailyFreeQuota, dirty: false,
      };
    }
    const quotaLimit = quota?.quota ?? 0;
    const quotaLeft = Math.max(0, quotaLimit - (quota?.consumed ?? 0));
    const freeUnits = Math.min(event.quantity, quotaLeft);
    const cost = price(event.quantity);
    const payable = price(event.quantity - freeUnits);
    const freeCredits = Math.max(0, cost - payable);

    const sub = pool ? null : (this.subs.get(event.user_id) ?? null);
    const live = sub && (sub.status === 'active' || sub.status === 'trialing');
    const classes = sub && sub.poolMode === 'shared_pool' ? null : [model.class];
    const tiers: ConsumeTier[] = [
      { name: 'allowance', sources: ['allowance'], classes },
      { name: 'rollover', sources: ['rollover'], classes },
      { name: 'credits', sources: 'other', classes: null },
    ];
    const covered = session.coverable(tiers, payable);
    const coveredTotal = covered.reduce((s, c) => s + c.amount, 0);
    const overage = payable - coveredTotal;
    const payg = Boolean(live && sub?.payg);
    const overageMicros = overage > 0 && sub ? overage * sub.unitMicros : 0;
    return { model, tz, quotaKey, quota, quotaLimit, quotaLeft, freeUnits, cost, payable, freeCredits, sub, tiers, covered, coveredTotal, overage, payg, overageMicros };
  }

  /**
   * The budget guard, rolled on once its stored month has ended (in the guard's own zone, never
   * starting before the last one ended): would this much more spend pass?
   */
  private guardFor(userId: string) {
    const guard = this.guards.get(userId);
    if (!guard) return null;
    if (this.now >= guard.windowEnd) {
      const month = nextWindow(guard.windowEnd, this.now, guard.zone, 'month');
      Object.assign(guard, { windowStart: month.start, windowEnd: month.end, spend: 0, a80: null, a100: null, dirty: true });
    }
    return guard;
  }

  /** A budget guard's event: the guard's month and spend (major units, rounded up) as it stands. */
  private tellGuard(userId: string, guard: NonNullable<ReturnType<Pricing['guardFor']>>, type: 'budget_guard.alert' | 'budget_guard.tripped', refusedMicros: number): void {
    this.told.push({
      type,
      userId,
      data: {
        user_id: userId,
        guard_id: guard.id,
        monthly_cap: guard.cap,
        behavior: guard.behavior,
        spend: Math.ceil(guard.spend / 1e6),
        percent: type === 'budget_guard.alert' ? 80 : 100,
        // Tripped by a refusal: what the refused charge would have added.
        refused_amount: refusedMicros > 0 ? Math.ceil(refusedMicros / 1e6) : null,
        window_start: guard.windowStart.toISOString(),
        window_end: guard.windowEnd.toISOString(),
      },
    });
  }

  private refuseByGuard(guard: NonNullable<ReturnType<Pricing['guardFor']>>, addMicros: number): DomainError | null {
    if (addMicros <= 0 || guard.spend + addMicros <= guard.cap * 1e6) return null;
    const details = { monthly_cap: guard.cap, spend: Math.ceil(guard.spend / 1e6), would_add: Math.ceil(addMicros / 1e6) };
    return guard.behavior === 'suspend'
      ? errors.budgetExceeded('This charge would exceed the monthly budget cap', details)
      : errors.rateLimited('Usage is throttled: this charge would exceed the monthly budget cap', details);
  }

  /**
   * Records an event. With `holdId` (a billed code run's hold, still open) the event is paid by
   * capturing its price from that hold — at most the hold, the rest released — and nothing about
   * the payer is checked again (role, cap, credits, budget guard): the hold was the authorization.
   * A repeat of a recorded event releases the hold. A hold no longer open (expired) leaves the
   * event to be paid as any other.
   */
  apply(event: EventInput, session: ConsumingAccount | null, holdId: string | null = null): EventOutcome {
    if (!session) throw noPayer(event);
    // An event's identity is its action_hash; its request hash is the one events have always had
    // (stored in usage_events.request_hash), so it stays the pre-0017 form.
    const hash = legacyRequestHash('POST', 'event', { ...event, occurred_at: event.occurred_at ?? null });
    const seenKey = `${event.user_id}\n${event.action_hash}`;
    const seen = this.seen.get(seenKey);
    if (seen) {
      if (seen.requestHash !== hash) {
        throw errors.idempotencyKeyReused('action_hash was already used for a different event');
      }
      // Already paid (the app recorded it): the hold that would have paid it is given back.
      if (holdId !== null) session.settleHold({ requestId: holdId, holdId, amount: 0, metadata: {} });
      return done(seen.result);
    }
    const p = this.plan(event, session);
    const eventId = newId('event');
    if (holdId !== null) {
      const prepaid = session.settleHold({ requestId: eventId, holdId, amount: p.payable, metadata: { event_id: eventId, metric: p.model.metric, action_hash: event.action_hash } });
      if (prepaid.open) return this.record(event, session, p, { hash, seenKey, eventId, transactionId: prepaid.transactionId, paid: [{ name: 'credits', amount: prepaid.captured }], holdId, uncharged: p.payable - prepaid.captured });
    }
    // A pool's member: a spending role (a stranger's answer is "no such workspace") and the cap.
    if (event.workspace_id !== undefined) session.assertMaySpend(event.user_id, p.payable);
    if (p.overage > 0 && !p.payg) {
      throw errors.insufficientCredits(`Not enough credits: ${p.payable} needed, ${p.coveredTotal} available`, {
        needed: p.payable,
        available: p.coveredTotal,
      });
    }
    const guard = event.workspace_id === undefined ? this.guardFor(event.user_id) : null;
    const refusal = guard ? this.refuseByGuard(guard, p.overageMicros) : null;
    if (refusal) {
      // The first refusal of the month trips the guard: marked (alerted_100_at) and told once.
      if (guard?.notify && !guard.a100) {
        guard.a100 = this.now;
        guard.dirty = true;
        this.tellGuard(event.user_id, guard, 'budget_guard.tripped', p.overageMicros);
      }
      throw refusal;
    }

    // Charge: the ledger first (it can still refuse), then billing's own state.
    let transactionId: string | null = null;
    let paid: { name: string; amount: number }[] = [];
    if (p.coveredTotal > 0) {
      try {
        const taken = session.consume({
          requestId: eventId,
          amount: p.coveredTotal,
          reason: `usage: ${p.model.metric}`,
          metadata: { event_id: eventId, metric: p.model.metric, action_hash: event.action_hash },
          tiers: p.tiers,
          memberId: event.workspace_id === undefined ? null : event.user_id,
        });
        transactionId = taken.transactionId;
        paid = taken.byTier;
      } catch (err) {
        if (isRefusal(err)) throw new Error('usage: the ledger refused what it said it could cover');
        throw err;
      }
    }
    return this.record(event, session, p, { hash, seenKey, eventId, transactionId, paid, guard, overage: p.overage });
  }

  /** Billing's side of a paid event: free quota, counters, overage, the event row and its answer. */
  private record(
    event: EventInput,
    session: ConsumingAccount,
    p: ReturnType<Pricing['plan']>,
    r: {
      hash: string; seenKey: string; eventId: string; transactionId: string | null; paid: { name: string; amount: number }[];
      guard?: ReturnType<Pricing['guardFor']>; overage?: number;
      /** Prepaid by a hold: its id, and what its price exceeded the hold by (not charged). */
      holdId?: string; uncharged?: number;
    },
  ): EventOutcome {
    const { hash, seenKey, eventId, transactionId, paid } = r;
    const guard = r.guard ?? null;
    const overage = r.overage ?? 0;
    const coveredTotal = paid.reduce((sum, t) => sum + t.amount, 0);
    if (p.freeUnits > 0 && p.quota) {
      p.quota.consumed += p.freeUnits;
      p.quota.dirty = true;
      this.quotas.set(p.quotaKey, p.quota);
      if (p.quota.consumed >= p.quota.quota && p.quota.consumed - p.freeUnits < p.quota.quota) {
        const q = p.quota;
        this.told.push({
          type: 'usage.quota_exhausted',
          userId: event.user_id,
          data: { user_id: event.user_id, metric: q.metric, quota: q.quota, consumed: q.consumed, window_start: q.window_start.toISOString(), window_end: q.window_end.toISOString() },
        });
      }
    }
    const charged = coveredTotal + overage;
    this.count(event, p.tz, p.sub, coveredTotal, overage);
    let overageAmount = 0;
    if (overage > 0 && p.sub) {
      const k = `${p.sub.id}\n${p.model.metric}`;
      const o = this.overages.get(k) ?? {
        id: newId('overageCharge'), user_id: event.user_id, subscription_id: p.sub.id, metric: p.model.metric,
        period_start: p.sub.periodStart, period_end: p.sub.periodEnd, credits: 0, unitAmount: p.sub.unitAmount,
        unitMicros: p.sub.unitMicros, currency: p.sub.currency, dirty: true,
      };
      o.credits += overage;
      o.dirty = true;
      this.overages.set(k, o);
      overageAmount = Math.ceil((overage * o.unitMicros) / 1e6);
      if (guard) {
        guard.spend += p.overageMicros;
        guard.dirty = true;
        if (guard.notify && !guard.a80 && guard.spend >= guard.cap * 0.8e6) {
          guard.a80 = this.now;
          this.tellGuard(event.user_id, guard, 'budget_guard.alert', 0);
        }
        if (guard.notify && !guard.a100 && guard.spend >= guard.cap * 1e6) {
          guard.a100 = this.now;
          this.tellGuard(event.user_id, guard, 'budget_guard.tripped', 0);
        }
      }
    }
    const account = session;
    const result = {
      event_id: eventId,
      user_id: event.user_id,
      workspace_id: event.workspace_id ?? null,
      metric: p.model.metric,
      quantity: event.quantity,
      action_hash: event.action_hash,
      cost: p.cost,
      charged,
      free_units: p.freeUnits,
      breakdown: breakdownOf(p.freeCredits, paid, overage),
      overage,
      overage_amount: overageAmount,
      currency: p.sub?.currency ?? null,
      transaction_id: transactionId,
      subscription_id: p.sub?.id ?? null,
      balance: account.balance,
      available: account.balance - account.held,
      occurred_at: event.occurred_at ?? this.now.toISOString(),
    };
    this.seen.set(seenKey, { requestHash: hash, result });
    this.events.push({
      id: eventId, user_id: event.user_id, metric: p.model.metric, quantity: event.quantity, complexity_score: event.complexity_score ?? null,
      action_hash: event.action_hash, request_hash: hash, subscription_id: p.sub?.id ?? null, free_units: p.freeUnits, cost: p.cost,
      charged, overage, transaction_id: transactionId,
      metadata: r.holdId === undefined ? (event.metadata ?? {}) : { ...event.metadata, hold_id: r.holdId, ...(r.uncharged ? { uncharged: r.uncharged } : {}) },
      // Only what the columns do not hold (eventAnswer rebuilds the rest): half the bytes to write.
      result: Object.fromEntries(EVENT_ANSWER_EXTRAS.map((k) => [k, result[k]])),
      occurred_at: result.occurred_at, created_at: this.now, workspace_id: event.workspace_id ?? null,
    });
    return created(result);
  }

  /** The answer of POST /v1/check: what the event would do now. */
  quote(event: { user_id: string; metric: string; quantity: number; complexity_score?: number | undefined }, session: ConsumingAccount) {
    const p = this.plan(event, session);
    const remaining = session.coverable(p.tiers).reduce((s, c) => s + c.amount, 0);
    const base = {
      remaining,
      cost: p.cost,
      free_units_remaining: p.quotaLimit > 0 ? p.quotaLeft : null,
      breakdown: breakdownOf(p.freeCredits, p.covered, p.overage),
      overage: p.overage,
      overage_amount: p.sub ? Math.ceil(p.overageMicros / 1e6) : 0,
    };
    if (p.overage > 0 && !p.payg) return { allowed: false, reason: 'insufficient_credits', ...base };
    const guard = this.guardFor(event.user_id);
    const refusal = guard ? this.refuseByGuard(guard, p.overageMicros) : null;
    if (refusal) return { allowed: false, reason: refusal.code, ...base };
    return { allowed: true, ...base };
  }

  /** The local day and month of this batch's instant, per time zone (the same for every event). */
  private readonly calendar = new Map<string, [string, Date, Date][]>();

  private count(event: EventInput, tz: string, sub: Sub | null, credits: number, overage: number): void {
    let local = this.calendar.get(tz);
    if (!local) {
      const day = localDay(this.now, tz);
      const month = localMonth(this.now, tz);
      local = [
        ['day', day.start, day.end],
        ['month', month.start, month.end],
      ];
      this.calendar.set(tz, local);
    }
    const windows = [...local];
    if (sub) windows.push(['period', sub.periodStart, sub.periodEnd]);
    for (const [window, start, end] of windows) {
      const key = `${event.user_id}\n${event.metric}\n${window}\n${start.toISOString()}`;
      const c = this.counters.get(key) ?? {
        user_id: event.user_id, metric: event.metric, window, window_start: start, window_end: end, quantity: 0, credits: 0, overage: 0, events: 0,
      };
      c.quantity += event.quantity;
      c.credits += credits;
      c.overage += overage;
      c.events += 1;
      this.counters.set(key, c);
    }
  }

  writes(): BillingWrites {
    return {
      events: this.events,
      quotas: [...this.quotas.values()].filter((q) => q.dirty).map(({ dirty: _d, ...q }) => q),
      counters: [...this.counters.values()],
      overages: [...this.overages.values()].filter((o) => o.dirty).map((o) => ({
        id: o.id, user_id: o.user_id, subscription_id: o.subscription_id, metric: o.metric, period_start: o.period_start,
        period_end: o.period_end, credits: o.credits, amount: Math.ceil((o.credits * o.unitMicros) / 1e6), unit_amount: o.unitAmount,
        currency: o.currency,
      })),
      guards: [...this.guards.values()].filter((g) => g.dirty).map((g) => ({
        id: g.id, window_start: g.windowStart, window_end: g.windowEnd, spend: g.spend, alerted_80_at: g.a80, alerted_100_at: g.a100,
      })),
    };
  }
}

