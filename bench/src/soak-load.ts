import http from 'node:http';
import Stripe from 'stripe';
import { signCallback, SIGNATURE_HEADER } from '../../src/modules/jobs/jobs.signature.js';
import type { KindWindow, SoakTotals, Window } from './soak-judge.js';
import { BENCH_METRIC } from './scenarios.js';
import { Latencies, sleep } from './stats.js';
import { must } from '../../src/lib/must.js';

/**
 * The soak's traffic: an open-loop generator (arrivals at a fixed rate, whatever the answers take)
 * of mixed flows over two Tally processes, and the recorder of every answer.
 */

export const KINDS = [
  'debit_hot',
  'debit_spread',
  'debit_replay',
  'hold',
  'hold_expiring',
  'capture',
  'release',
  'event',
  'event_batch',
  'check',
  'webhook',
  'webhook_repeat',
  'job_create',
  'job_callback',
  'job_callback_repeat',
] as const;
export type Kind = (typeof KINDS)[number];

/** Share of debits sent a second time with the same key (must replay); of webhooks and job callbacks delivered twice. */
const REPLAY_P = 0.1;
/** Share of holds left to expire (short TTL), so the sweeper works; the others are captured or released. */
const EXPIRE_P = 0.1;
export const EXPIRING_HOLD_TTL_S = 5;
const HOLD_TTL_S = 120;
const EVENTS_PER_BATCH = 20;
export const PACKAGE = { credits: 100, price: 500, currency: 'usd' };
export const JOB_PROVIDER = 'soak';

/** Each flow: how often it starts (weight) and how many requests it sends on average. */
const FLOWS = [
  { flow: 'debit_hot', weight: 12, requests: 1 + REPLAY_P },
  { flow: 'debit_spread', weight: 18, requests: 1 + REPLAY_P },
  { flow: 'hold', weight: 12, requests: 1 + (1 - EXPIRE_P) },
  { flow: 'event', weight: 14, requests: 1 },
  { flow: 'event_batch', weight: 2, requests: 1 },
  { flow: 'check', weight: 30, requests: 1 },
  { flow: 'webhook', weight: 2, requests: 1 + REPLAY_P },
  { flow: 'job', weight: 4, requests: 2 + REPLAY_P },
] as const;
type Flow = (typeof FLOWS)[number]['flow'];
const TOTAL_WEIGHT = FLOWS.reduce((s, f) => s + f.weight, 0);
/** Requests per flow on average: flows start at rate ÷ this, so requests arrive at `rate`. */
export const REQUESTS_PER_FLOW = FLOWS.reduce((s, f) => s + (f.weight / TOTAL_WEIGHT) * f.requests, 0);

/** The mix as text, for the report. */
export const MIX = FLOWS.map((f) => `${f.flow} ${Math.round((f.weight / TOTAL_WEIGHT) * 100)}%`).join(', ');

export interface Target {
  name: string;
  url: string;
}

export interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * Keep-alive, with idle sockets closed by this side after 30 s: Fastify closes them after 72 s, and
 * without an agent timeout Node keeps a free socket until the server closes it, so a request sent
 * on it as the server closes it fails with ECONNRESET (the one-hour soak of 2026-12-06 got two,
 * in a burst after a stall, on sockets idle since the previous burst: never sent, never charged).
 */
const agent = new http.Agent({ keepAlive: true, maxSockets: 512, timeout: 30_000 });

/** One request; rejects on a connection error or after `timeoutMs`. */
export function request(base: string, method: 'GET' | 'POST', path: string, body: string | null, headers: Record<string, string>, timeoutMs = 30_000): Promise<Answer> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        hostname: url.hostname,
        port: url.port,
        path: url.pathname,
        method,
        headers: body === null ? headers : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new TimeoutError()));
    req.on('error', reject);
    if (body !== null) req.write(body);
    req.end();
  });
}

class TimeoutError extends Error {
  constructor() {
    super('request timed out');
  }
}

/** Every answer, by kind: the current sampling window, and the whole run. */
export class Recorder {
  private window = new Map<Kind, { ms: number[]; statuses: Map<number, number> }>();
  private windowErrors = 0;
  private windowTimeouts = 0;
  private windowRequests = 0;
  private windowLag = 0;
  private windowLoads: number[] = [];
  private windowStart = Date.now();
  readonly whole = new Map<Kind, Latencies>();
  private readonly statuses = new Map<Kind, Map<number, number>>();
  private readonly unexpected = new Map<string, { kind: string; what: string; count: number; example: string }>();
  requests = 0;
  errors = 0;
  timeouts = 0;
  dropped = 0;
  /** 5xx answered by sending the same request again (same bytes, same key). */
  retries = 0;
  clientKeysAnswered = 0;
  /** Keyed requests that got no answer (timeout, broken connection): each may or may not have committed. */
  clientKeysUnknown = 0;
  firstError = '';

  answer(kind: Kind, status: number, ms: number): void {
    this.requests++;
    this.windowRequests++;
    let w = this.window.get(kind);
    if (!w) this.window.set(kind, (w = { ms: [], statuses: new Map() }));
    w.ms.push(ms);
    w.statuses.set(status, (w.statuses.get(status) ?? 0) + 1);
    let all = this.statuses.get(kind);
    if (!all) this.statuses.set(kind, (all = new Map()));
    all.set(status, (all.get(status) ?? 0) + 1);
    let lat = this.whole.get(kind);
    if (!lat) this.whole.set(kind, (lat = new Latencies()));
    lat.add(ms);
  }

  failure(kind: Kind, err: unknown): void {
    this.requests++;
    this.windowRequests++;
    if (err instanceof TimeoutError) {
      this.timeouts++;
      this.windowTimeouts++;
    } else {
      this.errors++;
      this.windowErrors++;
    }
    this.firstError ||= `${kind}: ${err instanceof Error ? err.message : String(err)}`;
  }

  /** An answer that is not what this request must get. */
  wrong(kind: string, what: string, example: string): void {
    const key = `${kind} ${what}`;
    const u = this.unexpected.get(key);
    if (u) u.count++;
    else this.unexpected.set(key, { kind, what, count: 1, example });
  }

  /** The machine's load average, read now (every few seconds). */
  load(value: number): void {
    this.windowLoads.push(value);
  }

  lag(ms: number): void {
    if (ms > this.windowLag) this.windowLag = ms;
  }

  /** Closes the current window and starts the next. */
  cut(): Window {
    const kinds: Record<string, KindWindow> = {};
    for (const kind of KINDS) {
      const w = this.window.get(kind);
      if (!w || w.ms.length === 0) continue;
      const sorted = Float64Array.from(w.ms).sort();
      const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
      kinds[kind] = {
        count: sorted.length,
        p50: round2(at(50)),
        p99: round2(at(99)),
        max: round2(sorted[sorted.length - 1] ?? 0),
        statuses: Object.fromEntries([...w.statuses].sort(([a], [b]) => a - b).map(([s, n]) => [String(s), n])),
      };
    }
    const now = Date.now();
    const window: Window = {
      seconds: Math.round((now - this.windowStart) / 100) / 10,
      requests: this.windowRequests,
      kinds,
      errors: this.windowErrors,
      timeouts: this.windowTimeouts,
      max_lag_ms: Math.round(this.windowLag),
      load_mean: this.windowLoads.length ? round2(this.windowLoads.reduce((a, b) => a + b, 0) / this.windowLoads.length) : 0,
    };
    this.windowLoads = [];
    this.window = new Map();
    this.windowErrors = this.windowTimeouts = this.windowRequests = this.windowLag = 0;
    this.windowStart = now;
    return window;
  }

  totals(targetRate: number, seconds: number): SoakTotals {
    return {
      target_rate: targetRate,
      achieved_rate: seconds > 0 ? this.requests / seconds : 0,
      requests: this.requests,
      dropped: this.dropped,
      retries: this.retries,
      errors: this.errors,
      timeouts: this.timeouts,
      statuses: Object.fromEntries(
        [...this.statuses].map(([k, by]) => [k, Object.fromEntries([...by].sort(([a], [b]) => a - b).map(([s, n]) => [String(s), n]))]),
      ),
      unexpected: [...this.unexpected.values()],
      client_keys_answered: this.clientKeysAnswered,
      client_keys_unknown: this.clientKeysUnknown,
    };
  }
}

export const round2 = (n: number) => Math.round(n * 100) / 100;

export interface LoadSetup {
  targets: Target[];
  serviceKey: string;
  /** Prefix of every Idempotency-Key, action hash and provider id this run sends. */
  tag: string;
  hot: string;
  spread: string[];
  stripeSecret: string;
  stripePriceId: string;
  jobSecret: string;
  recorder: Recorder;
  maxInflight: number;
}

/**
 * Open loop: flows start at `rate ÷ REQUESTS_PER_FLOW` per second on a fixed schedule, whether or not
 * earlier ones were answered (a closed loop would slow down with the server and hide it). Follow-up
 * requests of a flow (capture, replay, callback) go out when their flow gets there.
 */
export class Generator {
  private stopped = false;
  private inflight = new Set<Promise<void>>();
  private n = 0;
  private readonly stripe = new Stripe('sk_test_unused');
  private readonly auth: string;

  constructor(private readonly s: LoadSetup) {
    this.auth = `Bearer ${s.serviceKey}`;
  }

  /** Runs until stop(); resolves when the schedule ends (flows may still be in flight: drain()). */
  async run(rate: number): Promise<void> {
    const flowsPerMs = rate / REQUESTS_PER_FLOW / 1000;
    const t0 = performance.now();
    let started = 0;
    while (!this.stopped) {
      const now = performance.now();
      const due = Math.floor((now - t0) * flowsPerMs);
      if (due > started) this.s.recorder.lag(now - (t0 + (started + 1) / flowsPerMs));
      while (started < due && !this.stopped) {
        started++;
        if (this.inflight.size >= this.s.maxInflight) {
          this.s.recorder.dropped++;
          continue;
        }
        const p: Promise<void> = this.flow(pickFlow())
          .catch((err: unknown) => this.s.recorder.wrong('bench', 'exception in a flow', err instanceof Error ? (err.stack ?? err.message) : String(err)))
          .finally(() => this.inflight.delete(p));
        this.inflight.add(p);
      }
      await sleep(5);
    }
  }

  stop(): void {
    this.stopped = true;
  }

  /** Waits for every flow in flight (at most `ms`); how many were still running after it. */
  async drain(ms: number): Promise<number> {
    const deadline = Date.now() + ms;
    while (this.inflight.size > 0 && Date.now() < deadline) await Promise.race([Promise.all(this.inflight), sleep(250)]);
    return this.inflight.size;
  }

  get inFlight(): number {
    return this.inflight.size;
  }

  private key(prefix: string): string {
    return `${this.s.tag}-${prefix}-${this.n++}`;
  }

  private target(): Target {
    return must(this.s.targets[Math.floor(Math.random() * this.s.targets.length)], 'hot targets were set up');
  }

  private user(): string {
    return must(this.s.spread[Math.floor(Math.random() * this.s.spread.length)], 'spread accounts were set up');
  }

  /**
   * Sends one request and records every attempt; null when it got no answer (recorded as an error or
   * timeout). A 5xx is retried after its Retry-After or 1 s (at most 4 times, the same bytes and
   * key), as Tally asks clients to for a 503 (docs/operations.md) and as payment providers do for
   * any 5xx: each 5xx still counts, and fails the soak, but the flow goes on with the answer the
   * retry got, so holds, jobs, keys and payments stay accounted for.
   */
  private async send(kind: Kind, method: 'GET' | 'POST', path: string, body: string | null, headers: Record<string, string>, keyed: boolean): Promise<Answer | null> {
    for (let attempt = 1; ; attempt++) {
      const t0 = performance.now();
      let a: Answer;
      try {
        a = await request(this.target().url, method, path, body, headers);
      } catch (err) {
        this.s.recorder.failure(kind, err);
        if (keyed) this.s.recorder.clientKeysUnknown++;
        return null;
      }
      this.s.recorder.answer(kind, a.status, performance.now() - t0);
      if (a.status >= 500 && attempt < 5) {
        this.s.recorder.retries++;
        this.s.recorder.wrong(kind, `status ${a.status} (sent again)`, a.body);
        const after = Number(a.headers['retry-after']);
        await sleep((Number.isFinite(after) && after > 0 ? after : 1) * 1000);
        continue;
      }
      if (keyed && a.status < 500) this.s.recorder.clientKeysAnswered++;
      return a;
    }
  }

  private service(key?: string): Record<string, string> {
    return key ? { authorization: this.auth, 'idempotency-key': key } : { authorization: this.auth };
  }

  /** Checks the status; records anything else as unexpected. */
  private expect(kind: Kind, a: Answer | null, ...ok: number[]): a is Answer {
    if (!a) return false;
    if (ok.includes(a.status)) return true;
    this.s.recorder.wrong(kind, `status ${a.status}`, a.body);
    return false;
  }

  private async flow(flow: Flow): Promise<void> {
    switch (flow) {
      case 'debit_hot':
        return this.debit('debit_hot', this.s.hot);
      case 'debit_spread':
        return this.debit('debit_spread', this.user());
      case 'hold':
        return this.hold();
      case 'event':
        return this.event();
      case 'event_batch':
        return this.eventBatch();
      case 'check':
        return this.check();
      case 'webhook':
        return this.webhook();
      case 'job':
        return this.job();
    }
  }

  private async debit(kind: Kind, user: string): Promise<void> {
    const key = this.key('d');
    const body = `{"user_id":"${user}","amount":1,"reason":"soak"}`;
    const a = await this.send(kind, 'POST', '/v1/credits/debit', body, this.service(key), true);
    if (!this.expect(kind, a, 201, 402) || Math.random() >= REPLAY_P) return;
    // The client retries with the same key (on the other process half the time): the stored answer.
    const r = await this.send('debit_replay', 'POST', '/v1/credits/debit', body, this.service(key), false);
    if (!r) return;
    if (r.status !== a.status || r.headers['idempotent-replayed'] !== 'true' || r.body !== a.body) {
      this.s.recorder.wrong('debit_replay', `not a replay (${r.status}, idempotent-replayed: ${String(r.headers['idempotent-replayed'])})`, r.body);
    }
  }

  private async hold(): Promise<void> {
    const expiring = Math.random() < EXPIRE_P;
    const kind: Kind = expiring ? 'hold_expiring' : 'hold';
    const user = Math.random() < 0.2 ? this.s.hot : this.user();
    const body = `{"user_id":"${user}","amount":5,"expires_in_seconds":${expiring ? EXPIRING_HOLD_TTL_S : HOLD_TTL_S}}`;
    const a = await this.send(kind, 'POST', '/v1/holds', body, this.service(this.key('h')), true);
    if (!this.expect(kind, a, 201, 402) || expiring || a.status !== 201) return;
    const id = (JSON.parse(a.body) as { id: string }).id;
    await sleep(Math.random() * 1000);
    if (Math.random() < 0.5) {
      const c = await this.send('capture', 'POST', `/v1/holds/${id}/capture`, '{"amount":3}', this.service(this.key('c')), true);
      this.expect('capture', c, 200);
    } else {
      const r = await this.send('release', 'POST', `/v1/holds/${id}/release`, '{}', this.service(this.key('r')), true);
      this.expect('release', r, 200);
    }
  }

  private async event(): Promise<void> {
    const key = this.key('e');
    const body = `{"user_id":"${this.user()}","metric":"${BENCH_METRIC}","quantity":${1 + Math.floor(Math.random() * 5)},"action_hash":"${key}"}`;
    const a = await this.send('event', 'POST', '/v1/events', body, this.service(key), true);
    this.expect('event', a, 201, 402);
  }

  private async eventBatch(): Promise<void> {
    const key = this.key('b');
    const events = Array.from(
      { length: EVENTS_PER_BATCH },
      (_, i) => `{"user_id":"${this.user()}","metric":"${BENCH_METRIC}","quantity":1,"action_hash":"${key}-${i}"}`,
    );
    const a = await this.send('event_batch', 'POST', '/v1/events/batch', `{"events":[${events.join(',')}]}`, this.service(key), true);
    if (!this.expect('event_batch', a, 200)) return;
    const applied = a.body.match(/"status":201/g)?.length ?? 0;
    if (applied !== EVENTS_PER_BATCH) this.s.recorder.wrong('event_batch', `${applied} of ${EVENTS_PER_BATCH} events 201`, a.body);
  }

  private async check(): Promise<void> {
    const body = `{"user_id":"${this.user()}","metric":"${BENCH_METRIC}","quantity":5}`;
    const a = await this.send('check', 'POST', '/v1/check', body, this.service(), false);
    if (this.expect('check', a, 200) && !a.body.includes('"allowed":true')) this.s.recorder.wrong('check', 'not allowed', a.body);
  }

  /** A Stripe checkout.session.completed for the credit package, signed as Stripe does (the package's own helper). */
  private async webhook(): Promise<void> {
    const id = this.key('w');
    const event = {
      id: `evt_${id}`,
      object: 'event',
      livemode: false,
      type: 'checkout.session.completed',
      data: {
        object: {
          id: `cs_test_${id}`,
          object: 'checkout.session',
          mode: 'payment',
          payment_status: 'paid',
          status: 'complete',
          amount_total: PACKAGE.price,
          amount_subtotal: PACKAGE.price,
          total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
          currency: PACKAGE.currency,
          customer: null,
          client_reference_id: null,
          customer_details: { email: null },
          invoice: null,
          payment_intent: `pi_${id}`,
          metadata: { user_id: this.user(), price_id: this.s.stripePriceId },
        },
      },
    };
    const raw = JSON.stringify(event);
    const headers = { 'stripe-signature': this.stripe.webhooks.generateTestHeaderString({ payload: raw, secret: this.s.stripeSecret }) };
    const a = await this.send('webhook', 'POST', '/v1/webhooks/stripe', raw, headers, false);
    if (!this.expect('webhook', a, 200)) return;
    if (!a.body.includes('"status":"processed"') || !a.body.includes('"replayed":false')) this.s.recorder.wrong('webhook', 'not processed', a.body);
    if (Math.random() >= REPLAY_P) return;
    // The provider delivers it again: acknowledged, nothing bought twice.
    const r = await this.send('webhook_repeat', 'POST', '/v1/webhooks/stripe', raw, headers, false);
    if (this.expect('webhook_repeat', r, 200) && !r.body.includes('"replayed":true')) this.s.recorder.wrong('webhook_repeat', 'not a replay', r.body);
  }

  /** A job holds its cost; its provider completes it through the signed callback (with a smaller actual cost). */
  private async job(): Promise<void> {
    const key = this.key('j');
    const body = `{"user_id":"${this.user()}","kind":"soak","provider":"${JOB_PROVIDER}","input":{"n":1},"cost":10,"timeout_seconds":600}`;
    const a = await this.send('job_create', 'POST', '/v1/jobs', body, this.service(key), true);
    if (!this.expect('job_create', a, 201, 402) || a.status !== 201) return;
    const id = (JSON.parse(a.body) as { id: string }).id;
    await sleep(Math.random() * 2000);
    const raw = `{"event":"completed","cost":7,"tokens_used":42}`;
    const headers = { 'content-type': 'application/json', [SIGNATURE_HEADER]: signCallback(this.s.jobSecret, id, raw, Math.floor(Date.now() / 1000)) };
    const c = await this.send('job_callback', 'POST', `/v1/jobs/${id}/callback`, raw, headers, false);
    if (this.expect('job_callback', c, 200) && !c.body.includes('"applied":true')) this.s.recorder.wrong('job_callback', 'not applied', c.body);
    if (Math.random() >= REPLAY_P) return;
    const r = await this.send('job_callback_repeat', 'POST', `/v1/jobs/${id}/callback`, raw, headers, false);
    if (this.expect('job_callback_repeat', r, 200) && !r.body.includes('"applied":false')) this.s.recorder.wrong('job_callback_repeat', 'applied twice', r.body);
  }
}

function pickFlow(): Flow {
  let r = Math.random() * TOTAL_WEIGHT;
  for (const f of FLOWS) {
    r -= f.weight;
    if (r < 0) return f.flow;
  }
  return must(FLOWS[FLOWS.length - 1], 'the flow table is not empty').flow;
}
