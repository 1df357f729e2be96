import type { PaymentsConfig } from '../../config/config.js';
import { errors } from '../../core/errors.js';
import { creem } from './payments.creem.js';
import { lemonsqueezy } from './payments.lemonsqueezy.js';
import { paypal } from './payments.paypal.js';
import { type DeliveryVerifier, type PaymentProvider, PROVIDERS, type ProviderName } from './payments.provider.js';
import { stripe } from './payments.stripe.js';

/**
 * The registry: one plug-in per name in `PROVIDERS`. The mapped type makes a name without a
 * plug-in (or a plug-in filed under another name) a compile error, so this is the one place a
 * new provider is wired in.
 */
const PLUGINS: { readonly [P in ProviderName]: PaymentProvider<P> } = { stripe, paypal, creem, lemonsqueezy };

/** The plug-in for a provider name. */
export const providerOf = (name: ProviderName): PaymentProvider => PLUGINS[name];

/**
 * Every provider's verifier, built once from this server's configuration (PayPal's keeps its
 * token and its cache of answers for the server's lifetime).
 */
export class ProviderVerifiers {
  private readonly verifiers: ReadonlyMap<ProviderName, DeliveryVerifier>;

  constructor(config: PaymentsConfig | undefined, clock: () => Date) {
    const built = new Map<ProviderName, DeliveryVerifier>();
    for (const name of PROVIDERS) {
      const verifier = PLUGINS[name].verifier(config, clock);
      if (verifier) built.set(name, verifier);
    }
    this.verifiers = built;
  }

  /**
   * The provider's verifier. Unconfigured → 503 naming the missing settings, not 400: it is the
   * server's fault, and providers retry 5xx, so events sent before the secret is set are not lost.
   */
  require(name: ProviderName): DeliveryVerifier {
    const verifier = this.verifiers.get(name);
    if (!verifier) throw errors.unavailable(`${name} webhooks are not configured on this server (set ${PLUGINS[name].settings})`);
    return verifier;
  }
}
