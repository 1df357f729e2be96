import type { FastifyInstance } from 'fastify';
import { httpAnswers } from './http/answers.js';
import { Invalidations } from './lib/invalidations.js';
import { InvalidationBus } from './db/invalidation-bus.js';
import { poolRunner } from './db/statements.js';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from './config/config.js';
import type { Database } from './db/database.js';
import { Authenticator } from './http/authenticate.js';
import { KeyUses } from './modules/api-keys/api-keys.uses.js';
import { DEFAULT_KEY_CACHE, KeyResolver } from './modules/api-keys/api-keys.resolver.js';
import { createThrottles } from './http/rate-limits.js';
import type { RouteDeps } from './http/route.js';
import { registerAdminRoutes } from './modules/admin/admin.routes.js';
import { registerAuditRoutes } from './modules/audit/audit.routes.js';
import { registerAnalyticsRoutes } from './modules/analytics/analytics.routes.js';
import { AnalyticsService } from './modules/analytics/analytics.service.js';
import { AuditService } from './modules/audit/audit.service.js';
import { AdminService } from './modules/admin/admin.service.js';
import { defaultDashboardDir, registerDashboard } from './modules/dashboard/dashboard.routes.js';
import { registerApiKeyRoutes } from './modules/api-keys/api-keys.routes.js';
import { ApiKeysService } from './modules/api-keys/api-keys.service.js';
import { registerAuthRoutes } from './modules/auth/auth.routes.js';
import { AuthService } from './modules/auth/auth.service.js';
import { TokenService } from './modules/auth/auth.tokens.js';
import { RefreshTokens } from './modules/auth/auth.refresh.js';
import { PasswordResetService } from './modules/auth/auth.password-reset.js';
import { PasswordHasher } from './modules/auth/auth.passwords.js';
import { registerPasswordResetRoutes } from './modules/auth/auth.password-reset.routes.js';
import { MailService } from './modules/mail/mail.service.js';
import { WebhooksOutService } from './modules/webhooks-out/webhooks-out.service.js';
import { registerWebhooksOutRoutes } from './modules/webhooks-out/webhooks-out.routes.js';
import { httpTransport, type WebhookTransport } from './modules/webhooks-out/webhooks-out.transport.js';
import { registerMailRoutes } from './modules/mail/mail.routes.js';
import { logTransport, smtpTransport } from './modules/mail/mail.transport.js';
import { EmailVerificationService } from './modules/auth/auth.email-verification.js';
import { SignupConfirmation } from './modules/auth/auth.signup-confirm.js';
import { registerEmailVerificationRoutes } from './modules/auth/auth.email-verification.routes.js';
import { registerHealthRoutes } from './modules/health/health.routes.js';
import { registerCreditRoutes } from './modules/credits/credits.routes.js';
import { CatalogService } from './modules/billing/billing.catalog.service.js';
import { GuardsService } from './modules/billing/billing.guards.service.js';
import { type BillingServices, registerBillingRoutes } from './modules/billing/billing.routes.js';
import { SubscriptionsService } from './modules/billing/billing.subscriptions.service.js';
import { UsageService } from './modules/billing/billing.usage.service.js';
import { UsageMessageCharger } from './modules/billing/billing.message-charger.js';
import { UsageExecutionCharger } from './modules/billing/billing.execution-charger.js';
import { DEFAULT_ANALYTICS, DEFAULT_BILLING, DEFAULT_EMAIL_VERIFICATION, DEFAULT_GATEWAY, DEFAULT_MAIL, DEFAULT_PASSWORD_RESET, DEFAULT_WEBHOOKS_OUT } from './config/config.js';
import { CreditsService } from './modules/credits/credits.service.js';
import { registerPaymentRoutes } from './modules/payments/payments.routes.js';
import type { SubscriptionPort } from './modules/payments/payments.ports.js';
import { referenceKey } from './modules/payments/payments.reference.js';
import { checkoutKey } from './modules/payments/checkout/checkout.signing.js';
import { registerCheckoutRoutes } from './modules/payments/checkout/checkout.routes.js';
import { PaymentsService } from './modules/payments/payments.service.js';
import { registerIdentityRoutes } from './modules/identities/identities.routes.js';
import { IdentitiesService } from './modules/identities/identities.service.js';
import { registerUserRoutes } from './modules/users/users.routes.js';
import { UsersService } from './modules/users/users.service.js';
import { registerWorkspaceRoutes } from './modules/workspaces/workspaces.routes.js';
import { WorkspacesService } from './modules/workspaces/workspaces.service.js';
import { registerSpendCapRoutes } from './modules/workspaces/workspaces.spend-caps.routes.js';
import { SpendCapsService } from './modules/workspaces/workspaces.spend-caps.service.js';
import { registerJobRoutes } from './modules/jobs/jobs.routes.js';
import { JobsService } from './modules/jobs/jobs.service.js';
import type { MessageCharger } from './modules/projects/projects.charger.js';
import { registerProjectRoutes } from './modules/projects/projects.routes.js';
import { ProjectsService } from './modules/projects/projects.service.js';
import { ProjectFilesService } from './modules/projects/projects.files.service.js';
import { registerProjectFileRoutes } from './modules/projects/projects.files.routes.js';
import { QueueService } from './modules/queue/queue.service.js';
import { IdeServices } from './modules/ide/ide.service.js';
import { registerIdeRoutes } from './modules/ide/ide.routes.js';
import { registerSecretRoutes } from './modules/secrets/secrets.routes.js';
import { SecretsService } from './modules/secrets/secrets.service.js';
import { SecretBox } from './lib/secret-box.js';
import { LinkSigner } from './modules/storage/storage.links.js';
import { createDriver } from './modules/storage/storage.drivers.js';
import { StorageMeter } from './modules/storage/storage.meter.js';
import { createStaging } from './modules/storage/storage.staging.js';
import { newId } from './lib/ids.js';
import { registerStorageRoutes } from './modules/storage/storage.routes.js';
import { registerResumableUploads } from './modules/storage/storage.uploads.routes.js';
import { join } from 'node:path';
import { BUCKET_CACHE_MS, StorageService } from './modules/storage/storage.service.js';
import { UpstreamsService } from './modules/gateway/gateway.upstreams.service.js';
import { UpstreamRouter } from './modules/gateway/gateway.router.js';
import { registerGatewayRoutes } from './modules/gateway/gateway.routes.js';
import { GatewayUsageService } from './modules/gateway/gateway.usage.service.js';
import { registerRelayRoutes } from './modules/gateway/gateway.relay.routes.js';
import { reapStale, RelayService } from './modules/gateway/gateway.relay.service.js';
import { keyWindowsPrune } from './modules/gateway/gateway.key-limits.repository.js';
import { MINUTE_MS } from './modules/gateway/gateway.key-limits.js';
import { UpstreamClient } from './modules/gateway/gateway.upstream-call.js';
import { creditsLedger } from './modules/gateway/gateway.ledger.js';
import { CreditsSdk } from './sdk/credits.sdk.js';
import { createServer } from './server.js';
import { VERSION } from './version.js';
import { errors } from './core/errors.js';
import { ObservabilityService } from './modules/observability/observability.service.js';
import { Scrubber } from './modules/observability/observability.scrub.js';
import { registerObservabilityRoutes } from './modules/observability/observability.routes.js';

export interface AppDeps {
  config: Config;
  database: Database;
  logger: FastifyBaseLogger;
  /** The clock every service reads; tests pass a fake one. */
  clock?: () => Date;
  /** Billing's subscription port for payment webhooks (null/absent: subscription events are logged only). */
  subscriptions?: SubscriptionPort | null;
  /**
   * Charges a message's cost to the project owner's credits (a usage event). None yet: until the
   * billing module wires one, message costs are recorded but not charged (docs/projects.md).
   */
  messageCharger?: MessageCharger;
  /** How outgoing webhooks are sent (default: HTTP with the SSRF guard); tests may wrap it. */
  webhookTransport?: WebhookTransport;
  /** The dashboard's built files (default: dist/dashboard in the package; a missing folder is served as "not built"). */
  dashboardDir?: string;
}

export interface Services {
  users: UsersService;
  auth: AuthService;
  emailVerification: EmailVerificationService;
  /** Sign-up by confirmation mail (TALLY_SIGNUP_CONFIRM_EMAIL); null = sign-up answers a session. */
  signupConfirmation: SignupConfirmation | null;
  mail: MailService;
  webhooksOut: WebhooksOutService;
  passwordReset: PasswordResetService;
  apiKeys: ApiKeysService;
  workspaces: WorkspacesService;
  /** Per-member spend caps on workspace pools (the ledger enforces them). */
  spendCaps: SpendCapsService;
  tokens: TokenService;
  authenticator: Authenticator;
  /** API keys' use counts, buffered (flush() writes them now). */
  keyUses: KeyUses;
  secrets: SecretBox;
  credits: CreditsService;
  identities: IdentitiesService;
  billing: BillingServices;
  payments: PaymentsService;
  /** The one background queue: other modules enqueue in their transactions and register handlers. */
  queue: QueueService;
  jobs: JobsService;
  projects: ProjectsService;
  secretsStore: SecretsService;
  /** Buckets and objects on the configured driver (docs/storage.md). */
  storage: StorageService;
  /** Stored bytes as daily `storage_mb` usage events (run by the scheduler). */
  storageMeter: StorageMeter;
  /** Project files and versions, on the storage driver (seed 002). */
  projectFiles: ProjectFilesService;
  /** Seed 002's project resources: editor/terminal sessions, code runs and analyses, git, deployments (docs/ide.md). */
  ide: IdeServices;
  /** Operator views over the whole database (the dashboard's overview and reconcile pages). */
  admin: AdminService;
  /** The audit log: read, verified, and named by the ledger for its movements (docs/audit.md). */
  audit: AuditService;
  /** Product analytics events apps send, and their retention (docs/analytics.md). */
  analytics: AnalyticsService;
  /** The typed in-process SDK: same validation, operations and idempotency as the HTTP routes. */
  sdk: { credits: CreditsSdk };
  /** Request and error logs, /metrics, route latency and retention (docs/observability.md). */
  observability: ObservabilityService;
  /** The LLM gateway (docs/gateway.md): upstream accounts and the router that picks among them. */
  gateway: {
    upstreams: UpstreamsService;
    router: UpstreamRouter;
    relay: RelayService;
    usage: GatewayUsageService;
    /** Settles requests a dead process left pending (the scheduler calls it); answers how many. */
    reap: () => Promise<number>;
  };
}

export interface App {
  server: FastifyInstance;
  services: Services;
  database: Database;
  config: Config;
}

/** The one composition root: every service is built here, with its dependencies explicit. */
export async function createApp(deps: AppDeps): Promise<App> {
  const { config, database } = deps;
  const clock = deps.clock ?? (() => new Date());
  const tokens = new TokenService(config.auth.jwtSecret, config.auth.jwtTtlSeconds, clock);
  const users = new UsersService();
  const secrets = new SecretBox(config.encryptionKey, config.encryptionKeysOld ?? []);
  // Writers tell in-process caches what they changed once their transactions settle.
  const invalidations = new Invalidations();
  const queue = new QueueService(database, clock, deps.logger, {}, invalidations);
  // Outgoing webhooks: the event sink every module reports to, in its own transaction.
  const webhooksOutConfig = config.webhooksOut ?? DEFAULT_WEBHOOKS_OUT;
  const webhookTransport = deps.webhookTransport ?? httpTransport(webhooksOutConfig);
  const workspaces = new WorkspacesService();
  const webhooksOut = new WebhooksOutService(secrets, queue, webhookTransport, webhooksOutConfig, clock, database.schema, workspaces);
  const audit = new AuditService(database.schema);
  const credits = new CreditsService(database, config.credits, clock, httpAnswers, invalidations, webhooksOut, audit);
  const billingConfig = config.billing ?? DEFAULT_BILLING;
  const catalog = new CatalogService(billingConfig);
  const billing: BillingServices = {
    catalog,
    subscriptions: new SubscriptionsService(database, catalog, credits, clock, invalidations, webhooksOut),
    // Usage events batch like the ledger's own operations, with its settings.
    usage: new UsageService(database, credits, catalog, billingConfig, clock, httpAnswers, {
      maxBatch: config.credits.maxBatch ?? 256,
      maxParallel: config.credits.maxParallel ?? 1,
      ...(config.credits.maxBacklog ? { maxBacklog: config.credits.maxBacklog } : {}),
    }, invalidations, billingConfig.checkCache, webhooksOut),
    guards: new GuardsService(billingConfig, clock),
  };
  billing.subscriptions.registerWith(queue);
  const mailConfig = config.mail ?? DEFAULT_MAIL;
  const mailTransport = mailConfig.smtpUrl ? smtpTransport(mailConfig.smtpUrl) : logTransport(deps.logger);
  const mail = new MailService(secrets, queue, mailTransport, mailConfig.from, clock);
  // Resumable uploads gather their pieces on local disk (next to the local driver's objects, or in the data directory).
  const tusDirectory = config.storage?.driver === 'local' ? join(config.storage.root, '.tus') : join(config.dataDir, 'tus-uploads');
  const staging = createStaging(tusDirectory);
  const storage = new StorageService(database.db, createDriver(config.storage, config.dataDir), new LinkSigner(config.encryptionKey), clock, staging, {
    schema: database.schema,
    run: poolRunner(database),
    invalidations,
    bucketCacheMs: BUCKET_CACHE_MS,
  });
  const gatewayConfig = config.gateway ?? DEFAULT_GATEWAY;
  const router = new UpstreamRouter(database.db, secrets, gatewayConfig, clock, (err) => deps.logger.warn({ err }, 'gateway: upstream health write failed'));
  const upstreamClient = new UpstreamClient(gatewayConfig);
  // API keys' use counts, written once a second instead of on every request (api-keys.uses.ts).
  const keyUses = new KeyUses(database.db, database.schema, clock, 1_000, (err) => deps.logger.warn({ err }, 'api key use counts could not be written'));
  // One API-key lookup for the Authenticator and the gateway (api-keys.resolver.ts).
  // Kept in process once resolved, emptied by every settled write (docs/auth.md, "API key cache").
  const keyResolver = new KeyResolver(poolRunner(database), database.schema, keyUses, { settings: config.auth.keyCache ?? DEFAULT_KEY_CACHE, invalidations, clock });
  const relay = new RelayService(
    database.db,
    database.schema,
    creditsLedger(credits),
    router,
    upstreamClient,
    gatewayConfig,
    clock,
    (err, requestId) => deps.logger.error({ err, requestId }, 'gateway: settlement failed; the reaper settles it'),
    keyResolver,
    (err, batch) => deps.logger.warn({ err, batch }, 'gateway: a batch failed; its requests ran again one by one'),
  );
  const projects = new ProjectsService(clock, deps.messageCharger ?? new UsageMessageCharger(billing.usage));
  const emailVerificationConfig = config.emailVerification ?? DEFAULT_EMAIL_VERIFICATION;
  const passwords = new PasswordHasher(config.auth.passwordHashing);
  const emailVerification = new EmailVerificationService(emailVerificationConfig, clock);
  const observability = new ObservabilityService(
    database.db,
    database.schema,
    config.observability,
    new Scrubber(knownSecrets(config)),
    clock,
    {
      queue: () => queue.backlog(),
      ledgerWaiting: () => ({ ledger: credits.waiting, usage: billing.usage.waiting }),
      upstreams: () => router.health(),
    },
    deps.logger,
  );
  credits.observeBatches((size, seconds, ok) => observability.metrics.ledgerBatch('ledger', size, seconds, ok));
  webhooksOut.observeDeliveries((outcome) => observability.metrics.webhookDelivery(outcome));
  const services: Services = {
    observability,
    users,
    tokens,
    auth: new AuthService(users, tokens, new RefreshTokens(config.auth.refreshTtlSeconds, clock), passwords),
    mail,
    webhooksOut,
    passwordReset: new PasswordResetService(config.passwordReset ?? DEFAULT_PASSWORD_RESET, mail, clock, passwords),
    emailVerification,
    signupConfirmation: emailVerificationConfig.confirmSignup ? new SignupConfirmation(users, emailVerification, mail, emailVerificationConfig, database.schema, passwords) : null,
    apiKeys: new ApiKeysService(clock),
    workspaces,
    spendCaps: new SpendCapsService(credits),
    authenticator: new Authenticator(database.db, config.auth.serviceKey, tokens, keyResolver),
    keyUses,
    secrets,
    credits,
    identities: new IdentitiesService(secrets),
    billing,
    payments: new PaymentsService({
      database,
      credits,
      subscriptions: deps.subscriptions ?? billing.subscriptions,
      config: config.payments,
      referenceKeys: [config.encryptionKey, ...(config.encryptionKeysOld ?? [])].map(referenceKey),
      checkoutKeys: [config.encryptionKey, ...(config.encryptionKeysOld ?? [])].map(checkoutKey),
      clock,
      logger: deps.logger,
      events: webhooksOut,
    }),
    queue,
    jobs: new JobsService(credits, queue, clock, webhooksOut),
    projects,
    secretsStore: new SecretsService(secrets, projects),
    admin: new AdminService(database, clock),
    audit,
    analytics: new AnalyticsService(clock, config.analyticsRetentionDays, config.analytics ?? DEFAULT_ANALYTICS, config.rateLimits?.entries),
    storage,
    projectFiles: new ProjectFilesService(projects, storage.driver),
    ide: new IdeServices(
      database.db, projects, secrets, clock, webhooksOut,
      billingConfig.codeExecutionMetric ? new UsageExecutionCharger(billing.usage, billingConfig.codeExecutionMetric, billingConfig.codeExecutionHoldMs) : null,
    ),
    storageMeter: new StorageMeter(
      database.db,
      {
        record: async (e) => {
          const outcome = await billing.usage.record(
            [{ user_id: e.userId, ...(e.workspaceId ? { workspace_id: e.workspaceId } : {}), metric: e.metric, quantity: e.quantity, action_hash: e.actionHash, metadata: e.metadata }],
            { requestId: newId('request'), idem: null, respond: (outcomes) => outcomes[0] ?? { ok: false, error: errors.internal(), requestId: '' } },
          );
          return outcome.ok ? { ok: true } : { ok: false, code: outcome.error.code };
        },
      },
      clock,
      database.schema,
    ),
    sdk: { credits: new CreditsSdk(credits) },
    gateway: { upstreams: new UpstreamsService(secrets, () => router.invalidate()), router,
      relay,
      usage: new GatewayUsageService(),
      reap: async () => {
        const reaped = await reapStale(relay, database.db, clock(), gatewayConfig.reapAfterMs);
        // Key limits look back one minute: older windows only take room.
        await keyWindowsPrune(database.db, new Date(clock().getTime() - 2 * MINUTE_MS));
        return reaped;
      },
    },
  };
  // Every user gets an account and the sign-up bonus in the transaction that creates them.
  users.onUserCreated(async (trx, user) => {
    const owner = { userId: user.id };
    await services.credits.openAccount(trx, owner);
    const bonus = services.credits.signupBonusOp(user.id);
    if (bonus) await services.credits.executeIn(trx, owner, [bonus]);
  });

  const server = await createServer({
    bodyLimit: config.http.bodyLimit,
    requestLog: config.http.requestLog ?? false,
    deadlineMs: config.http.deadlineMs ?? 0,
    ...(config.http.trustProxy !== undefined ? { trustProxy: config.http.trustProxy } : {}),
    logger: deps.logger,
    version: VERSION,
  });
  // Other Tally processes on the same PostgreSQL hear what this one wrote, and it hears theirs.
  if (database.pool) {
    const bus = new InvalidationBus(database.pool, database.schema, invalidations, deps.logger, { listen: true, listenConfig: database.listen ?? null });
    await bus.start();
    server.addHook('onClose', async () => bus.close());
  }
  const routeDeps: RouteDeps = { db: database.db, authenticator: services.authenticator, secrets: services.secrets, invalidations };
  if (config.rateLimits) routeDeps.throttles = await createThrottles(server, config.rateLimits);
  // First: its hook reports every request answered by any route registered after it (and the 404s).
  registerObservabilityRoutes(server, routeDeps, services.observability, {
    serviceKey: config.auth.serviceKey,
    ...(config.observability?.metricsToken ? { metricsToken: config.observability.metricsToken } : {}),
    now: clock,
  });
  registerHealthRoutes(server, routeDeps, database, {
    queue: () => services.queue.status(),
    cacheListening: () => invalidations.trusted,
    backlog: () => ({ ledger: services.credits.waiting, usage: services.billing.usage.waiting, max: config.credits.maxBacklog ?? 10_000 }),
  });
  registerAuthRoutes(server, routeDeps, services.auth, services.signupConfirmation);
  registerEmailVerificationRoutes(server, routeDeps, services.emailVerification);
  registerPasswordResetRoutes(server, routeDeps, services.passwordReset);
  registerMailRoutes(server, routeDeps, services.mail);
  server.addHook('onClose', async () => mailTransport.close());
  registerWebhooksOutRoutes(server, routeDeps, services.webhooksOut);
  if (!deps.webhookTransport) server.addHook('onClose', async () => webhookTransport.close());
  registerUserRoutes(server, routeDeps, services.users);
  registerApiKeyRoutes(server, routeDeps, services.apiKeys);
  registerIdentityRoutes(server, routeDeps, services.identities);
  registerWorkspaceRoutes(server, routeDeps, services.workspaces);
  registerSpendCapRoutes(server, routeDeps, services.spendCaps);
  registerCreditRoutes(server, routeDeps, services.credits, services.workspaces);
  registerBillingRoutes(server, routeDeps, services.billing);
  registerPaymentRoutes(server, routeDeps, services.payments);
  registerCheckoutRoutes(server, routeDeps, services.payments.checkouts);
  registerProjectRoutes(server, routeDeps, services.projects);
  registerSecretRoutes(server, routeDeps, services.secretsStore);
  registerAdminRoutes(server, routeDeps, services.admin);
  registerAuditRoutes(server, routeDeps, services.audit);
  registerAnalyticsRoutes(server, routeDeps, services.analytics);
  registerStorageRoutes(server, routeDeps, services.storage, { publicUrl: config.storage?.publicUrl });
  registerProjectFileRoutes(server, routeDeps, services.projectFiles);
  registerIdeRoutes(server, routeDeps, services.ide);
  registerResumableUploads(server, routeDeps, services.storage, { directory: tusDirectory, datastore: staging });
  registerGatewayRoutes(server, routeDeps, services.gateway.upstreams, services.gateway.usage);
  registerRelayRoutes(server, services.gateway.relay, config.http.bodyLimit);
  server.addHook('onClose', async () => {
    await upstreamClient.close();
    // Settlements already queued commit before the database closes (the reaper is for crashes).
    await services.gateway.relay.drained();
    await router.drain();
    await keyUses.close();
  });
  const providerSecrets = new Map(Object.entries(config.jobs.providerSecrets ?? {}));
  await registerJobRoutes(server, routeDeps, services.jobs, {
    secretFor: (provider) => providerSecrets.get(provider) ?? config.jobs.callbackSecret,
    toleranceSeconds: config.jobs.callbackToleranceSeconds,
    now: clock,
  });
  await registerDashboard(server, deps.dashboardDir ?? defaultDashboardDir());
  await server.ready();
  return { server, services, database, config };
}

/** Every secret the configuration holds, for the log scrubber to take out of stored text. */
function knownSecrets(config: Config): string[] {
  const key = (b: Buffer) => [b.toString('base64'), b.toString('hex')];
  const payments = config.payments;
  return [
    config.auth.serviceKey,
    config.auth.jwtSecret,
    config.observability?.metricsToken ?? '',
    config.jobs.callbackSecret,
    ...Object.values(config.jobs.providerSecrets ?? {}),
    ...key(config.encryptionKey),
    ...(config.encryptionKeysOld ?? []).flatMap(key),
    ...(payments?.stripe?.webhookSecrets ?? []),
    payments?.lemonsqueezy?.webhookSecret ?? '',
    payments?.creem?.webhookSecret ?? '',
    payments?.paypal?.clientSecret ?? '',
    payments?.checkout?.stripe?.secretKey ?? '',
    payments?.checkout?.lemonsqueezy?.apiKey ?? '',
    payments?.checkout?.creem?.apiKey ?? '',
    config.storage?.driver === 's3' ? (config.storage.secretAccessKey ?? '') : '',
    config.mail?.smtpUrl ?? '',
  ];
}
