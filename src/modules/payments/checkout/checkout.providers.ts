import type { CheckoutConfig } from '../../../config/config.js';
import { errors } from '../../../core/errors.js';
import { PROVIDERS, type ProviderName } from '../payments.provider.js';
import type { CheckoutPlugin, CheckoutProvider } from './checkout.provider.js';
import { creemCheckout } from './creem.js';
import { lemonsqueezyCheckout } from './lemonsqueezy.js';
import { paypalCheckout } from './paypal.js';
import { stripeCheckout } from './stripe.js';

/** One checkout plug-in per provider name (a name without one is a compile error). */
const PLUGINS: { readonly [P in ProviderName]: CheckoutPlugin<P> } = {
  stripe: stripeCheckout,
  paypal: paypalCheckout,
  creem: creemCheckout,
  lemonsqueezy: lemonsqueezyCheckout,
};

/** Every configured provider's checkout client, built once (PayPal's keeps its token). */
export class CheckoutProviders {
  private readonly built = new Map<ProviderName, CheckoutProvider>();

  constructor(config: CheckoutConfig | undefined, clock: () => Date) {
    for (const name of PROVIDERS) {
      const provider = build(PLUGINS[name], config?.[name] ?? null, clock);
      if (provider) this.built.set(name, provider);
    }
  }

  /** The provider's client; unconfigured → 503 naming the settings it needs. */
  require(name: ProviderName): CheckoutProvider {
    const provider = this.built.get(name);
    if (!provider) throw errors.unavailable(`${name} checkouts are not configured on this server (set ${PLUGINS[name].settings})`, { provider: name });
    return provider;
  }
}

function build<P extends ProviderName>(plugin: CheckoutPlugin<P>, config: CheckoutConfig[P] | null, clock: () => Date): CheckoutProvider | null {
  return config ? plugin.build(config, clock) : null;
}
