import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { BillingConfig } from '../../config/config.js';
import { compileFormula, type Formula } from './cost-formula.js';
import {
  type CostModelBody,
  costModelOf,
  type CostModelUpdateBody,
  type PlanCreateBody,
  planOf,
  type PlanUpdateBody,
  type PlanView,
} from './billing.js';
import {
  costModelFind,
  costModelInsert,
  costModelList,
  costModelUpdate,
  planAllowancesReplace,
  planFind,
  planFindClash,
  planFindNameClash,
  planInsert,
  planList,
  planLockForUpdate,
  planPartsOf,
  planPriceFind,
  planPriceFindTaken,
  planPricesReplace,
  planUpdate,
} from './billing.catalog.repository.js';
import { must } from '../../lib/must.js';

const noInterval = () =>
  errors.invalidRequest('A plan must offer at least one billing interval (price_monthly or price_yearly not null)', { field: 'price_monthly' });

/**
 * A new plan's prices: null = the interval is not offered, 0 = free on it. A plan that names no
 * price is free on both; one that names one price offers only that interval unless it names the
 * other too (before issue 13 the unnamed one was 0 — free — which gave paid plans away).
 */
function pricesOf(body: Static<typeof PlanCreateBody>): { price_monthly: number | null; price_yearly: number | null } {
  if (body.price_monthly === undefined && body.price_yearly === undefined) return { price_monthly: 0, price_yearly: 0 };
  const prices = { price_monthly: body.price_monthly ?? null, price_yearly: body.price_yearly ?? null };
  if (prices.price_monthly === null && prices.price_yearly === null) throw noInterval();
  return prices;
}

/** Variables a cost-model formula may read. */
export const FORMULA_VARIABLES = ['quantity', 'complexity', 'base_rate'] as const;

/**
 * The catalogue: plans (with their allowances and provider prices) and cost models. Service-only
 * writes; anyone signed in may read active entries.
 */
export class CatalogService {
  private readonly formulas = new Map<string, Formula>();

  constructor(private readonly config: BillingConfig) {}

  /** The credit classes plans and cost models may name (TALLY_CREDIT_CLASSES), in configured order. */
  creditClasses(): readonly string[] {
    return this.config.creditClasses;
  }

  // ---- plans ---------------------------------------------------------------------------------

  async createPlan(db: Executor, body: Static<typeof PlanCreateBody>) {
    this.checkPlan(body);
    const id = body.id ?? `plan_${body.slug}`;
    const clash = await planFindClash(db, { id, slug: body.slug, name: body.name });
    if (clash) {
      const field = clash.id === id ? 'id' : clash.slug === body.slug ? 'slug' : 'name';
      throw errors.conflict(`A plan with this ${field} already exists`, { field });
    }
    await planInsert(db, {
      id,
      slug: body.slug,
      name: body.name,
      description: body.description ?? null,
      pool_mode: body.pool_mode ?? 'hybrid',
      pay_as_you_go: body.pay_as_you_go ?? false,
      overage_unit_amount: body.overage_unit_amount ?? '0',
      usage_bonus_rate: String(body.usage_bonus_rate ?? 0),
      trial_days: body.trial_days ?? 1,
      ...pricesOf(body),
      currency: body.currency ?? 'usd',
      features: JSON.stringify(body.features ?? []),
      limits: JSON.stringify(body.limits ?? {}),
      metadata: JSON.stringify(body.metadata ?? {}),
      is_active: body.is_active ?? true,
      sort_order: body.sort_order ?? 0,
    });
    await this.replaceAllowances(db, id, body.allowances ?? []);
    await this.replacePrices(db, id, body.prices ?? []);
    return must(await this.getPlan(db, id), 'a plan just written is found');
  }

  async updatePlan(db: Executor, idOrSlug: string, body: Static<typeof PlanUpdateBody>) {
    this.checkPlan(body);
    const existing = await planLockForUpdate(db, idOrSlug);
    if (!existing) throw errors.notFound('Plan', idOrSlug);
    const id = existing.id;
    // A price of null withdraws an interval; at least one must stay on offer.
    const monthly = body.price_monthly !== undefined ? body.price_monthly : existing.price_monthly;
    const yearly = body.price_yearly !== undefined ? body.price_yearly : existing.price_yearly;
    if (monthly === null && yearly === null) throw noInterval();
    if (body.name !== undefined) {
      const clash = await planFindNameClash(db, body.name, id);
      if (clash) throw errors.conflict('A plan with this name already exists', { field: 'name' });
    }
    const json = (v: unknown) => (v === undefined ? undefined : JSON.stringify(v));
    await planUpdate(db, id, {
      name: body.name,
      description: body.description,
      pool_mode: body.pool_mode,
      pay_as_you_go: body.pay_as_you_go,
      overage_unit_amount: body.overage_unit_amount,
      trial_days: body.trial_days,
      price_monthly: body.price_monthly,
      price_yearly: body.price_yearly,
      currency: body.currency,
      is_active: body.is_active,
      sort_order: body.sort_order,
      usage_bonus_rate: body.usage_bonus_rate === undefined ? undefined : String(body.usage_bonus_rate),
      features: json(body.features),
      limits: json(body.limits),
      metadata: json(body.metadata),
    });
    // Allowance changes apply from the next window each subscription opens; open windows keep theirs.
    if (body.allowances !== undefined) await this.replaceAllowances(db, id, body.allowances);
    if (body.prices !== undefined) await this.replacePrices(db, id, body.prices);
    return must(await this.getPlan(db, id), 'a plan just written is found');
  }

  async getPlan(db: Executor, idOrSlug: string): Promise<PlanView | null> {
    const plan = await planFind(db, idOrSlug);
    if (!plan) return null;
    const { allowances, prices } = await planPartsOf(db, [plan.id]);
    return planOf(plan, allowances, prices);
  }

  async requirePlan(db: Executor, idOrSlug: string): Promise<PlanView> {
    const plan = await this.getPlan(db, idOrSlug);
    if (!plan) throw errors.notFound('Plan', idOrSlug);
    return plan;
  }

  async listPlans(db: Executor, opts: { includeInactive: boolean }): Promise<PlanView[]> {
    const plans = await planList(db, opts);
    if (plans.length === 0) return [];
    const { allowances, prices } = await planPartsOf(
      db,
      plans.map((p) => p.id),
    );
    return plans.map((p) =>
      planOf(
        p,
        allowances.filter((a) => a.plan_id === p.id),
        prices.filter((x) => x.plan_id === p.id),
      ),
    );
  }

  /** The plan a provider price buys (payments). */
  async planByProviderPrice(db: Executor, provider: string, providerPriceId: string) {
    return planPriceFind(db, provider, providerPriceId);
  }

  private checkPlan(body: Static<typeof PlanUpdateBody>): void {
    const seen = new Set<string>();
    for (const [i, a] of (body.allowances ?? []).entries()) {
      if (!this.config.creditClasses.includes(a.class)) {
        throw errors.invalidRequest(`Unknown credit class "${a.class}" (configured: ${this.config.creditClasses.join(', ')})`, {
          field: `allowances[${i}].class`,
        });
      }
      const key = `${a.class}/${a.window ?? 'monthly'}`;
      if (seen.has(key)) throw errors.invalidRequest(`Two allowances for ${key}`, { field: `allowances[${i}]` });
      seen.add(key);
    }
    const prices = new Set<string>();
    for (const [i, p] of (body.prices ?? []).entries()) {
      const key = `${p.provider}/${p.provider_price_id}`;
      if (prices.has(key)) throw errors.invalidRequest(`Price ${key} listed twice`, { field: `prices[${i}]` });
      prices.add(key);
    }
    if (body.pay_as_you_go && body.overage_unit_amount !== undefined && Number(body.overage_unit_amount) === 0) {
      throw errors.invalidRequest('A pay-as-you-go plan needs an overage_unit_amount above 0', { field: 'overage_unit_amount' });
    }
  }

  private async replaceAllowances(db: Executor, planId: string, allowances: NonNullable<Static<typeof PlanCreateBody>['allowances']>) {
    await planAllowancesReplace(
      db,
      planId,
      allowances.map((a) => ({ class: a.class, amount: a.amount, window: a.window ?? 'monthly', rollover_policy: a.rollover_policy ?? 'none' })),
    );
  }

  private async replacePrices(db: Executor, planId: string, prices: NonNullable<Static<typeof PlanCreateBody>['prices']>) {
    const taken = await planPriceFindTaken(db, planId, prices);
    if (taken) {
      throw errors.conflict(`Price ${taken.provider}/${taken.provider_price_id} already buys plan ${taken.plan_id}`, {
        field: 'prices',
      });
    }
    await planPricesReplace(
      db,
      planId,
      prices.map((p) => ({ provider: p.provider, provider_price_id: p.provider_price_id, billing_interval: p.billing_interval })),
    );
  }

  // ---- cost models ---------------------------------------------------------------------------

  async createCostModel(db: Executor, body: Static<typeof CostModelBody>) {
    const fields = this.checkCostModel(body);
    const clash = await costModelFind(db, body.metric);
    if (clash) throw errors.conflict(`A cost model for "${body.metric}" already exists`, { field: 'metric' });
    const defaultQuota = this.config.freeQuotaMetrics.includes(body.metric) ? this.config.dailyFreeQuota : 0;
    const row = await costModelInsert(db, {
      metric: body.metric,
      unit: fields.unit ?? 'unit',
      formula: fields.formula ?? 'quantity * base_rate',
      base_rate: fields.base_rate ?? '1',
      class: fields.class ?? 'Usage',
      daily_free_quota: fields.daily_free_quota ?? defaultQuota,
      currency: fields.currency ?? 'usd',
      metadata: JSON.stringify(fields.metadata ?? {}),
      is_active: fields.is_active ?? true,
    });
    return costModelOf(row);
  }

  async updateCostModel(db: Executor, metric: string, body: Static<typeof CostModelUpdateBody>) {
    const fields = this.checkCostModel(body);
    const { metadata, ...rest } = fields;
    const set = { ...rest, metadata: metadata === undefined ? undefined : JSON.stringify(metadata) };
    // Nothing to set: no write (no updated_at bump), the model as it is.
    const row = Object.values(set).every((v) => v === undefined) ? await costModelFind(db, metric) : await costModelUpdate(db, metric, set);
    if (!row) throw errors.notFound('Cost model', metric);
    return costModelOf(row);
  }

  async listCostModels(db: Executor, opts: { includeInactive: boolean }) {
    return (await costModelList(db, opts)).map(costModelOf);
  }

  async getCostModel(db: Executor, metric: string) {
    const row = await costModelFind(db, metric);
    if (!row) throw errors.notFound('Cost model', metric);
    return costModelOf(row);
  }

  /** A compiled formula (cached by its text: formulas are pure). */
  formula(source: string): Formula {
    let f = this.formulas.get(source);
    if (!f) {
      const compiled = compileFormula(source, FORMULA_VARIABLES);
      if (!compiled.ok) throw errors.invalidRequest(`Invalid cost formula: ${compiled.error}`, { field: 'formula' });
      f = compiled.formula;
      if (this.formulas.size > 1000) this.formulas.clear();
      this.formulas.set(source, f);
    }
    return f;
  }

  private checkCostModel(body: Static<typeof CostModelUpdateBody>) {
    if (body.class !== undefined && !this.config.creditClasses.includes(body.class)) {
      throw errors.invalidRequest(`Unknown credit class "${body.class}" (configured: ${this.config.creditClasses.join(', ')})`, {
        field: 'class',
      });
    }
    if (body.formula !== undefined) {
      const f = this.formula(body.formula);
      // A formula must price a typical event as a finite, non-negative number.
      for (const quantity of [1, 1000]) {
        const r = f.evaluate({ quantity, complexity: 1, base_rate: Number(body.base_rate ?? 1) });
        if (!r.ok || !Number.isFinite(r.value) || r.value < 0) {
          throw errors.invalidRequest(`The formula does not give a non-negative cost for quantity ${quantity}${r.ok ? '' : `: ${r.error}`}`, {
            field: 'formula',
          });
        }
      }
    }
    return body;
  }
}
