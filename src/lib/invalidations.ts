/** What a publisher sends to other processes: these accounts, or everything (null). */
export type InvalidationMessage = readonly string[] | null;

/**
 * In-process notices that committed writes changed state some cache holds. Writers say what they
 * changed after their transaction has settled (committed or rolled back: a notice for nothing is
 * harmless, a missing one is a stale read); caches listen. On PostgreSQL an InvalidationBus
 * (src/db/invalidation-bus.ts) carries each notice to the other Tally processes and brings theirs
 * here; while it cannot vouch that it hears them, `trusted` is false and caches must not serve.
 */
export class Invalidations {
  private readonly accountListeners: ((accountIds: readonly string[]) => void)[] = [];
  private readonly anyListeners: (() => void)[] = [];
  private publisher: ((message: InvalidationMessage) => void) | null = null;
  /** False while other processes' notices may be missed (the bus is reconnecting). */
  trusted = true;

  /** Writes that touched these ledger accounts (and the billing rows of their users) only. */
  onAccounts(listener: (accountIds: readonly string[]) => void): void {
    this.accountListeners.push(listener);
  }

  /** Writes whose reach is not known precisely (plans, subscriptions, guards, users …). */
  onAny(listener: () => void): void {
    this.anyListeners.push(listener);
  }

  /** The bus: every local notice is also sent on. */
  publishWith(publisher: (message: InvalidationMessage) => void): void {
    this.publisher = publisher;
  }

  accountsChanged(accountIds: readonly string[]): void {
    if (accountIds.length === 0) return;
    this.receive(accountIds);
    this.publisher?.(accountIds);
  }

  anythingChanged(): void {
    this.receive(null);
    this.publisher?.(null);
  }

  /** A notice from another process (or a local one): tell the listeners only. */
  receive(message: InvalidationMessage): void {
    if (message === null) for (const l of this.anyListeners) l();
    else for (const l of this.accountListeners) l(message);
  }
}
