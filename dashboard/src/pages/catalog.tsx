import { type FormEvent, useState } from 'react';
import { api, type Body, newIdempotencyKey, type Ok, valuesOf } from '../api';
import { Badge, Card, ErrorBox, fmtNum, fmtPrice, LoadedTable, plural, useAction, useLoad } from '../ui';

// What the API answers and accepts, from its OpenAPI document: never written by hand here.
type Plan = Ok<'/v1/plans', 'get'>['data'][number];
type PlanCreate = Body<'/v1/plans', 'post'>;
type PlanUpdate = Body<'/v1/plans/{id}', 'patch'>;
type Allowance = Plan['allowances'][number];
type CostModel = Ok<'/v1/cost-models', 'get'>['data'][number];
type CostModelCreate = Body<'/v1/cost-models', 'post'>;
type CreditClasses = Ok<'/v1/credit-classes', 'get'>;

const WINDOWS = valuesOf<Allowance['window']>({ daily: true, monthly: true, yearly: true });
const ROLLOVERS = valuesOf<Allowance['rollover_policy']>({ none: true, '1_cycle': true, annual: true });

/** "19.00" → 1900 (minor units); "" → null (the interval is not offered). Anything else is refused here. */
export function parseMoney(text: string): number | null {
  const t = text.trim();
  if (t === '') return null;
  const m = /^(\d{1,11})(?:\.(\d{1,2}))?$/.exec(t);
  if (!m) throw new Error(`“${text}” is not an amount (e.g. 19 or 19.99)`);
  return Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0'));
}
const moneyText = (minor: number | null): string => (minor === null ? '' : (minor / 100).toFixed(2));

/**
 * A credit class, chosen from the classes the server is configured with (GET /v1/credit-classes).
 * A stored value the server no longer lists stays selectable, marked, so an edit never changes it
 * silently; `empty` (when given) is the label of "no class" (the API's default).
 */
function ClassSelect({ value, onChange, name, empty }: { value: string; onChange: (v: string) => void; name?: string; empty?: string }) {
  const classes = useLoad(() => api<CreditClasses>('GET', '/v1/credit-classes'), []);
  const names = classes.data?.data.map((c) => c.name) ?? [];
  const options = value !== '' && !names.includes(value) ? [...names, value] : names;
  return (
    <>
      <select name={name} required={empty === undefined} value={value} onChange={(e) => onChange(e.target.value)} disabled={classes.loading && !classes.data}>
        {empty !== undefined ? <option value="">{empty}</option> : <option value="" disabled>{classes.data ? 'choose a class' : 'loading…'}</option>}
        {options.map((n) => (
          <option key={n} value={n}>
            {classes.data && !names.includes(n) ? `${n} (not configured)` : n}
          </option>
        ))}
      </select>
      <ErrorBox error={classes.error} />
    </>
  );
}

interface AllowanceDraft {
  class: string;
  amount: string;
  window: Allowance['window'];
  rollover_policy: Allowance['rollover_policy'];
}

/** Plans: the list, and a form that creates one or edits the one picked (PATCH /v1/plans/:id). */
export function Plans() {
  const plans = useLoad(() => api<Ok<'/v1/plans', 'get'>>('GET', '/v1/plans?include_inactive=true'), []);
  const [editing, setEditing] = useState<Plan | 'new' | null>(null);
  return (
    <div className="stack">
      <div className="page-head">
        <h1>Plans</h1>
        <button onClick={() => setEditing('new')}>New plan</button>
      </div>
      {editing && (
        <PlanForm
          key={editing === 'new' ? 'new' : editing.id}
          plan={editing === 'new' ? null : editing}
          onDone={() => {
            setEditing(null);
            plans.reload();
          }}
          onCancel={() => setEditing(null)}
        />
      )}
      <Card title="Plans">
        <LoadedTable
          label="Plans"
          loaded={plans}
          empty="No plans yet."
          columns={[
            { label: 'Name', render: (p) => `${p.name} (${p.slug})` },
            { label: 'Monthly', render: (p) => fmtPrice(p.price_monthly, p.currency) },
            { label: 'Yearly', render: (p) => fmtPrice(p.price_yearly, p.currency) },
            { label: 'Trial', render: (p) => (p.trial_days === 0 ? 'none' : plural(p.trial_days, 'day')) },
            { label: 'Pay as you go', render: (p) => (p.pay_as_you_go ? 'yes' : 'no') },
            {
              label: 'Allowances',
              render: (p) => p.allowances.map((a) => `${fmtNum(a.amount)} ${a.class}/${a.window}`).join(', ') || '—',
            },
            { label: 'State', render: (p) => <Badge value={p.is_active ? 'active' : 'inactive'} /> },
            {
              label: 'Edit',
              render: (p) => (
                <button className="secondary" aria-label={`Edit ${p.name}`} onClick={() => setEditing(p)}>
                  Edit
                </button>
              ),
            },
          ]}
        />
      </Card>
      <CostModels />
    </div>
  );
}

function PlanForm({ plan, onDone, onCancel }: { plan: Plan | null; onDone: () => void; onCancel: () => void }) {
  const [slug, setSlug] = useState('');
  const [name, setName] = useState(plan?.name ?? '');
  const [description, setDescription] = useState(plan?.description ?? '');
  const [monthly, setMonthly] = useState(moneyText(plan?.price_monthly ?? null));
  const [yearly, setYearly] = useState(moneyText(plan?.price_yearly ?? null));
  const [currency, setCurrency] = useState(plan?.currency ?? 'usd');
  const [trialDays, setTrialDays] = useState(String(plan?.trial_days ?? 0));
  const [payg, setPayg] = useState(plan?.pay_as_you_go ?? false);
  const [overage, setOverage] = useState(plan?.overage_unit_amount ?? '0');
  const [active, setActive] = useState(plan?.is_active ?? true);
  const [allowances, setAllowances] = useState<AllowanceDraft[]>(
    (plan?.allowances ?? []).map((a) => ({ class: a.class, amount: String(a.amount), window: a.window, rollover_policy: a.rollover_policy })),
  );
  // A refused attempt is recorded under its key: the next attempt (the input corrected) needs a new one.
  const [idem, setIdem] = useState(() => newIdempotencyKey('plan'));
  const { busy, error, run } = useAction();
  const setAllowance = (i: number, patch: Partial<AllowanceDraft>) => setAllowances((all) => all.map((a, j) => (j === i ? { ...a, ...patch } : a)));

  const submit = (e: FormEvent) => {
    e.preventDefault();
    return run(async () => {
      const fields = {
        name: name.trim(),
        description: description.trim() === '' ? null : description.trim(),
        price_monthly: parseMoney(monthly),
        price_yearly: parseMoney(yearly),
        currency: currency.trim().toLowerCase(),
        trial_days: Number(trialDays),
        pay_as_you_go: payg,
        overage_unit_amount: overage.trim(),
        is_active: active,
        allowances: allowances.map((a) => ({ class: a.class.trim(), amount: Number(a.amount), window: a.window, rollover_policy: a.rollover_policy })),
      } satisfies PlanUpdate;
      if (plan) await api('PATCH', `/v1/plans/${encodeURIComponent(plan.id)}`, { body: fields });
      else await api('POST', '/v1/plans', { body: { slug: slug.trim(), ...fields } satisfies PlanCreate, idempotencyKey: idem });
      onDone();
    }, () => setIdem(newIdempotencyKey('retry')));
  };
  const title = plan ? `Edit plan ${plan.name}` : 'New plan';
  return (
    <Card title={title}>
      <form className="stack" onSubmit={submit} aria-label={title}>
        <div className="form-row">
          {!plan && (
            <label>
              Slug
              <input name="slug" required pattern="[a-z0-9][a-z0-9_\-]{0,63}" value={slug} onChange={(e) => setSlug(e.target.value)} placeholder="pro" />
            </label>
          )}
          <label className="grow">
            Plan name
            <input name="name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <label className="grow">
            Description
            <input name="description" maxLength={2000} value={description} onChange={(e) => setDescription(e.target.value)} />
          </label>
        </div>
        <div className="form-row">
          <label>
            Monthly price
            <input name="price-monthly" inputMode="decimal" value={monthly} onChange={(e) => setMonthly(e.target.value)} placeholder="empty: not offered" />
          </label>
          <label>
            Yearly price
            <input name="price-yearly" inputMode="decimal" value={yearly} onChange={(e) => setYearly(e.target.value)} placeholder="empty: not offered" />
          </label>
          <label>
            Currency
            <input name="currency" required pattern="[a-zA-Z]{3}" size={4} value={currency} onChange={(e) => setCurrency(e.target.value)} />
          </label>
          <label>
            Trial days
            <input name="trial-days" type="number" min={0} max={365} required value={trialDays} onChange={(e) => setTrialDays(e.target.value)} />
          </label>
          <label>
            Overage per credit
            <input name="overage" required pattern="(0|[1-9][0-9]{0,11})(\.[0-9]{1,6})?" value={overage} onChange={(e) => setOverage(e.target.value)} />
          </label>
          <label className="inline">
            <input type="checkbox" checked={payg} onChange={(e) => setPayg(e.target.checked)} /> Pay as you go
          </label>
          <label className="inline">
            <input type="checkbox" checked={active} onChange={(e) => setActive(e.target.checked)} /> Active
          </label>
        </div>
        <fieldset className="stack">
          <legend>Allowances (credits granted per window, in one of the server's configured credit classes)</legend>
          {allowances.length === 0 && <p className="muted">No allowances.</p>}
          {allowances.map((a, i) => (
            <div className="form-row" key={i} role="group" aria-label={`Allowance ${i + 1}`}>
              <label>
                Class
                <ClassSelect value={a.class} onChange={(v) => setAllowance(i, { class: v })} />
              </label>
              <label>
                Amount
                <input type="number" min={1} max={1e9} required value={a.amount} onChange={(e) => setAllowance(i, { amount: e.target.value })} />
              </label>
              <label>
                Window
                <select value={a.window} onChange={(e) => setAllowance(i, { window: e.target.value as Allowance['window'] })}>
                  {WINDOWS.map((w) => (
                    <option key={w}>{w}</option>
                  ))}
                </select>
              </label>
              <label>
                Rollover
                <select value={a.rollover_policy} onChange={(e) => setAllowance(i, { rollover_policy: e.target.value as Allowance['rollover_policy'] })}>
                  {ROLLOVERS.map((r) => (
                    <option key={r}>{r}</option>
                  ))}
                </select>
              </label>
              <button type="button" className="danger" onClick={() => setAllowances((all) => all.filter((_, j) => j !== i))}>
                Remove
              </button>
            </div>
          ))}
          <div>
            <button
              type="button"
              className="secondary"
              onClick={() => setAllowances((all) => [...all, { class: '', amount: '100', window: 'monthly', rollover_policy: 'none' }])}
            >
              Add allowance
            </button>
          </div>
        </fieldset>
        <div className="form-row">
          <button type="submit" disabled={busy}>
            {busy ? 'Saving…' : plan ? 'Save plan' : 'Create plan'}
          </button>
          <button type="button" className="secondary" onClick={onCancel}>
            Cancel
          </button>
        </div>
        <ErrorBox error={error} />
      </form>
    </Card>
  );
}

/** Cost models (one per metric): the list, and a form that creates one or edits the one picked. */
function CostModels() {
  const models = useLoad(() => api<Ok<'/v1/cost-models', 'get'>>('GET', '/v1/cost-models?include_inactive=true'), []);
  const [editing, setEditing] = useState<CostModel | 'new' | null>(null);
  return (
    <Card title="Cost models" actions={<button onClick={() => setEditing('new')}>New cost model</button>}>
      {editing && (
        <CostModelForm
          key={editing === 'new' ? 'new' : editing.metric}
          model={editing === 'new' ? null : editing}
          onDone={() => {
            setEditing(null);
            models.reload();
          }}
          onCancel={() => setEditing(null)}
        />
      )}
      <LoadedTable
        label="Cost models"
        loaded={{ ...models, data: models.data && { data: models.data.data.map((m) => ({ ...m, id: m.metric })) } }}
        empty="No cost models yet."
        columns={[
          { label: 'Metric', render: (m) => <code>{m.metric}</code> },
          { label: 'Unit', render: (m) => m.unit },
          { label: 'Formula', render: (m) => <code>{m.formula}</code> },
          { label: 'Base rate', render: (m) => m.base_rate },
          { label: 'Class', render: (m) => m.class },
          { label: 'Free per day', render: (m) => fmtNum(m.daily_free_quota) },
          { label: 'State', render: (m) => <Badge value={m.is_active ? 'active' : 'inactive'} /> },
          {
            label: 'Edit',
            render: (m) => (
              <button className="secondary" aria-label={`Edit ${m.metric}`} onClick={() => setEditing(m)}>
                Edit
              </button>
            ),
          },
        ]}
      />
    </Card>
  );
}

function CostModelForm({ model, onDone, onCancel }: { model: CostModel | null; onDone: () => void; onCancel: () => void }) {
  const [metric, setMetric] = useState('');
  const [unit, setUnit] = useState(model?.unit ?? 'unit');
  const [formula, setFormula] = useState(model?.formula ?? 'quantity * base_rate');
  const [baseRate, setBaseRate] = useState(model?.base_rate ?? '1');
  const [klass, setKlass] = useState(model?.class ?? '');
  const [free, setFree] = useState(String(model?.daily_free_quota ?? 0));
  const [active, setActive] = useState(model?.is_active ?? true);
  // A refused attempt is recorded under its key: the next attempt (the input corrected) needs a new one.
  const [idem, setIdem] = useState(() => newIdempotencyKey('cost-model'));
  const { busy, error, run } = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    return run(async () => {
      // No class: the API's default class for the metric.
      const fields = {
        unit: unit.trim(),
        formula: formula.trim(),
        base_rate: baseRate.trim(),
        ...(klass.trim() ? { class: klass.trim() } : {}),
        daily_free_quota: Number(free),
        is_active: active,
      };
      if (model) await api('PATCH', `/v1/cost-models/${encodeURIComponent(model.metric)}`, { body: fields });
      else await api('POST', '/v1/cost-models', { body: { metric: metric.trim(), ...fields } satisfies CostModelCreate, idempotencyKey: idem });
      onDone();
    }, () => setIdem(newIdempotencyKey('retry')));
  };
  const title = model ? `Edit cost model ${model.metric}` : 'New cost model';
  return (
    <form className="stack sub-form" onSubmit={submit} aria-label={title}>
      <h3>{title}</h3>
      <div className="form-row">
        {!model && (
          <label>
            Metric
            <input name="metric" required pattern="[A-Za-z0-9_.:\-]{1,64}" value={metric} onChange={(e) => setMetric(e.target.value)} placeholder="tokens" />
          </label>
        )}
        <label>
          Unit
          <input name="unit" required maxLength={32} value={unit} onChange={(e) => setUnit(e.target.value)} />
        </label>
        <label className="grow">
          Formula
          <input name="formula" required maxLength={500} value={formula} onChange={(e) => setFormula(e.target.value)} />
        </label>
        <label>
          Base rate
          <input name="base-rate" required pattern="(0|[1-9][0-9]{0,11})(\.[0-9]{1,6})?" value={baseRate} onChange={(e) => setBaseRate(e.target.value)} />
        </label>
        <label>
          Credit class
          <ClassSelect name="class" value={klass} onChange={setKlass} {...(model ? {} : { empty: "the API's default" })} />
        </label>
        <label>
          Free per day
          <input name="free" type="number" min={0} required value={free} onChange={(e) => setFree(e.target.value)} />
        </label>
        <label className="inline">
          <input type="checkbox" checked={active} onChange={(e) => setActive(e.target.checked)} /> Active
        </label>
      </div>
      <p className="muted">
        The formula may use <code>quantity</code>, <code>complexity</code> and <code>base_rate</code> (docs/billing.md); the API checks it.
      </p>
      <div className="form-row">
        <button type="submit" disabled={busy}>
          {busy ? 'Saving…' : model ? 'Save cost model' : 'Create cost model'}
        </button>
        <button type="button" className="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}
