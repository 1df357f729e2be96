import type { Executor } from '../../db/database.js';
import type { GatewayConfig } from '../../config/config.js';
import type { SecretBox } from '../../lib/secret-box.js';
import { credentialsAad, modelMatches, type UpstreamState, type UpstreamType } from './gateway.js';
import { upstreamRecordOutcome, upstreamRecordRefusal, upstreamsRoutable } from './gateway.repository.js';

/** An upstream the relay may call, with its credential opened. */
export interface Candidate {
  id: string;
  type: UpstreamType;
  baseUrl: string;
  credentials: string;
  /** Its host sells dearer tiers by default: send the standard tier named (config standardTierHosts). */
  standardTier: boolean;
}

interface Entry extends Candidate {
  models: string[];
  priority: number;
  weight: number;
  state: UpstreamState;
  failures: number;
  cooldownUntil: number;
  /** A half-open circuit lets one probe through at a time. */
  probing: boolean;
}

/** How long the cached list of upstreams is trusted before it is read again (other processes' edits). */
const REFRESH_MS = 2_000;

/**
 * Why an attempt failed. `auth` (401): the credential itself is refused. `refused` (403): this
 * request is not permitted to this credential (a model or feature it may not use) — a verdict on the
 * request, which a hostile client can provoke at will, so it neither disables the upstream nor counts
 * against its circuit; another upstream may still take the request.
 */
export type Failure = { kind: 'retryable'; error: string; retryAfterMs: number | null } | { kind: 'auth'; error: string } | { kind: 'refused'; error: string };

/**
 * Picks upstreams and keeps their circuits: priority tiers (lower first), weighted random order
 * within a tier; an upstream that failed `failureThreshold` times in a row is open for the cooldown
 * (or the upstream's Retry-After), then half-open for one probe; 401 disables it until an
 * operator PATCHes it (a 403 refuses one request, not the credential: see Failure). The circuit lives in memory (the hot path reads no rows) and is written
 * through to the upstream's row for the health view.
 */
export class UpstreamRouter {
  private entries: Entry[] = [];
  private loadedAt = -Infinity;
  private loading: Promise<void> | null = null;
  /** Bumped by every edit, so a load that started before an edit is not trusted after it. */
  private generation = 0;
  /** Health writes still in flight (awaited at shutdown). */
  private readonly writes = new Set<Promise<void>>();

  constructor(
    private readonly db: Executor,
    private readonly box: SecretBox,
    private readonly settings: GatewayConfig,
    private readonly now: () => Date,
    private readonly onWriteError: (err: unknown) => void,
    private readonly random: () => number = Math.random,
  ) {}

  /** An upstream was created, changed or deleted in this process: read them again on next use. */
  invalidate(): void {
    this.generation++;
    this.loadedAt = -Infinity;
  }

  /** Each upstream's circuit as this process sees it (GET /metrics). */
  async health(): Promise<{ id: string; type: UpstreamType; state: UpstreamState }[]> {
    await this.fresh();
    return this.entries.map((e) => ({ id: e.id, type: e.type, state: e.state }));
  }

  /** The upstreams to try for a model, in order (at most maxAttempts). Empty: none can serve it now. */
  async candidates(type: UpstreamType, model: string, opts: { peek?: boolean } = {}): Promise<Candidate[]> {
    await this.fresh();
    const now = Date.now();
    const usable = this.entries.filter(
      (e) => e.type === type && e.state !== 'disabled' && modelMatches(model, e.models) && (opts.peek ? e.state === 'closed' || now >= e.cooldownUntil : this.admits(e, now)),
    );
    const tiers = new Map<number, Entry[]>();
    for (const e of usable) tiers.set(e.priority, [...(tiers.get(e.priority) ?? []), e]);
    const ordered = [...tiers.keys()].sort((a, b) => a - b).flatMap((p) => this.weightedOrder(tiers.get(p) ?? []));
    // A half-open upstream admitted as a probe but left out by the attempt limit is no probe.
    for (const e of ordered.slice(this.settings.maxAttempts)) e.probing = false;
    return ordered.slice(0, this.settings.maxAttempts).map(({ id, type: t, baseUrl, credentials, standardTier }) => ({ id, type: t, baseUrl, credentials, standardTier }));
  }

  /** Closed serves; open serves nothing until its cooldown ends, then one half-open probe at a time. */
  private admits(e: Entry, now: number): boolean {
    if (e.state === 'closed') return true;
    if (now < e.cooldownUntil) return false;
    if (e.probing) return false;
    e.state = 'half_open';
    e.probing = true;
    return true;
  }

  /** Weighted random order without replacement (each pick ∝ weight among those left). */
  private weightedOrder(tier: Entry[]): Entry[] {
    const left = [...tier];
    const out: Entry[] = [];
    while (left.length > 0) {
      const total = left.reduce((s, e) => s + e.weight, 0);
      let r = this.random() * total;
      let i = 0;
      for (; i < left.length - 1; i++) {
        r -= (left[i] as Entry).weight;
        if (r < 0) break;
      }
      out.push(...left.splice(i, 1));
    }
    return out;
  }

  /**
   * A candidate the request never called (an earlier one served it): if it was admitted as its
   * half-open probe, the probe is free again — else it would wait for an outcome that never comes
   * and stay out of service (attacker review F2).
   */
  release(id: string): void {
    const e = this.entries.find((x) => x.id === id);
    if (e) e.probing = false;
  }

  succeeded(id: string): void {
    const e = this.entries.find((x) => x.id === id);
    const at = this.now();
    if (e) {
      e.probing = false;
      e.failures = 0;
      if (e.state !== 'disabled') e.state = 'closed';
      e.cooldownUntil = 0;
    }
    this.track(upstreamRecordOutcome(this.db, id, { ok: true, at }));
  }

  private track(write: Promise<void>): void {
    const p = write.catch(this.onWriteError).finally(() => this.writes.delete(p));
    this.writes.add(p);
  }

  /** Waits for the health writes in flight (the server's shutdown). */
  async drain(): Promise<void> {
    await Promise.all([...this.writes]);
  }

  failed(id: string, failure: Failure): void {
    const e = this.entries.find((x) => x.id === id);
    const at = this.now();
    if (failure.kind === 'refused') {
      // Said in the health view, but the circuit is left as it is; a probe that drew a 403 says
      // nothing of the upstream's health, so the next request may probe (attacker review F1).
      if (e) e.probing = false;
      if (e) this.track(upstreamRecordRefusal(this.db, id, at, `request refused: ${failure.error}`));
      return;
    }
    let state: UpstreamState = 'closed';
    let failures = 1;
    let cooldownUntil: number | null = null;
    if (e) {
      e.probing = false;
      e.failures += 1;
      if (failure.kind === 'auth') e.state = 'disabled';
      else if (e.state === 'half_open' || e.failures >= this.settings.failureThreshold || failure.retryAfterMs !== null) {
        e.state = 'open';
        e.cooldownUntil = Date.now() + Math.max(failure.retryAfterMs ?? 0, failure.retryAfterMs === null ? this.settings.cooldownMs : 0);
      }
      state = e.state;
      failures = e.failures;
      cooldownUntil = e.state === 'open' ? e.cooldownUntil : null;
    } else if (failure.kind === 'auth') state = 'disabled';
    this.track(upstreamRecordOutcome(this.db, id, {
      ok: false,
      at,
      error: failure.kind === 'auth' ? `credential refused: ${failure.error}` : failure.error,
      state,
      consecutiveFailures: failures,
      cooldownUntil: cooldownUntil === null ? null : new Date(at.getTime() + (cooldownUntil - Date.now())),
    }));
  }

  private async fresh(): Promise<void> {
    if (Date.now() - this.loadedAt < REFRESH_MS) return;
    if (!this.loading) {
      const generation = this.generation;
      this.loading = this.load(generation).finally(() => {
        this.loading = null;
      });
    }
    await this.loading;
  }

  private async load(generation: number): Promise<void> {
    const rows = await upstreamsRoutable(this.db);
    const known = new Map(this.entries.map((e) => [e.id, e]));
    const nowDate = this.now();
    this.entries = rows.flatMap((r) => {
      const credentials = this.box.open(r.credentials_enc, credentialsAad(r.id));
      if (credentials === null) {
        this.onWriteError(new Error(`upstream ${r.id}: its credentials do not open with this server's keys`));
        return [];
      }
      const prev = known.get(r.id);
      const stored = r.state as UpstreamState;
      const cooldown = r.cooldown_until ? Date.now() + (r.cooldown_until.getTime() - nowDate.getTime()) : 0;
      return [
        {
          id: r.id,
          type: r.type as UpstreamType,
          baseUrl: r.base_url,
          credentials,
          standardTier: this.settings.standardTierHosts?.includes(hostOf(r.base_url)) ?? false,
          models: r.models,
          priority: r.priority,
          weight: r.weight,
          // This process's circuit wins over the row (its writes may still be in flight), except
          // that an operator's re-enable (closed in the row) or a disable elsewhere is taken.
          state: stored === 'disabled' || !prev ? stored : stored === 'closed' && prev.state === 'disabled' ? 'closed' : prev.state,
          failures: prev?.failures ?? r.consecutive_failures,
          cooldownUntil: prev?.cooldownUntil ?? cooldown,
          probing: prev?.probing ?? false,
        },
      ];
    });
    if (generation === this.generation) this.loadedAt = Date.now();
  }
}

function hostOf(baseUrl: string): string {
  try {
    return new URL(baseUrl).hostname.toLowerCase();
  } catch {
    return '';
  }
}
