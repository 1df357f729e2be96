/**
 * In-process notices that committed writes changed state some cache holds. Writers say what they
 * changed after their transaction has settled (committed or rolled back: a notice for nothing is
 * harmless, a missing one is a stale read); caches listen. Only this process's writes are seen:
 * caches bound how stale other processes' writes may leave them with a time limit of their own.
 */
export class Invalidations {
  private readonly accountListeners: ((accountIds: readonly string[]) => void)[] = [];
  private readonly anyListeners: (() => void)[] = [];

  /** Writes that touched these ledger accounts (and the billing rows of their users) only. */
  onAccounts(listener: (accountIds: readonly string[]) => void): void {
    this.accountListeners.push(listener);
  }

  /** Writes whose reach is not known precisely (plans, subscriptions, guards, users …). */
  onAny(listener: () => void): void {
    this.anyListeners.push(listener);
  }

  accountsChanged(accountIds: readonly string[]): void {
    if (accountIds.length === 0) return;
    for (const l of this.accountListeners) l(accountIds);
  }

  anythingChanged(): void {
    for (const l of this.anyListeners) l();
  }
}
