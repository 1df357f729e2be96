import type { FastifyInstance } from 'fastify';
import { httpAnswers } from './http/answers.js';
import { Invalidations } from './lib/invalidations.js';
import { InvalidationBus } from './db/invalidation-bus.js';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from './config/config.js';
import type { Database } from './db/database.js';
import { Authenticator } from './http/authenticate.js';
import { createThrottles } from './http/rate-limits.js';
import type { RouteDeps } from './http/route.js';
import { registerAdminRoutes } from './modules/admin/admin.routes.js';
import { AdminService } from './modules/admin/admin.service.js';
import { defaultDashboardDir, registerDashboard } from './modules/dashboard/dashboard.routes.js';
import { registerApiKeyRoutes } from './modules/api-keys/api-keys.routes.js';
import { ApiKeysService } from './modules/api-keys/api-keys.service.js';
import { registerAuthRoutes } from './modules/auth/auth.routes.js';
import { AuthService } from './modules/auth/auth.service.js';
import { TokenService } from './modules/auth/auth.tokens.js';
import { RefreshTokens } from './modules/auth/auth.refresh.js';
import { PasswordResetService } from './modules/auth/auth.password-reset.js';
import { registerPasswordResetRoutes } from './modules/auth/auth.password-reset.routes.js';
import { MailService } from './modules/mail/mail.service.js';
import { registerMailRoutes } from './modules/mail/mail.routes.js';
import { logTransport, smtpTransport } from './modules/mail/mail.transport.js';
import { EmailVerificationService } from './modules/auth/auth.email-verification.js';
import { registerEmailVerificationRoutes } from './modules/auth/auth.email-verification.routes.js';
import { registerHealthRoutes } from './modules/health/health.routes.js';
import { registerCreditRoutes } from './modules/credits/credits.routes.js';
import { CatalogService } from './modules/billing/billing.catalog.service.js';
import { GuardsService } from './modules/billing/billing.guards.service.js';
import { type BillingServices, registerBillingRoutes } from './modules/billing/billing.routes.js';
import { SubscriptionsService } from './modules/billing/billing.subscriptions.service.js';
import { UsageService } from './modules/billing/billing.usage.service.js';
import { UsageMessageCharger } from './modules/billing/billing.message-charger.js';
import { DEFAULT_BILLING, DEFAULT_EMAIL_VERIFICATION, DEFAULT_MAIL, DEFAULT_PASSWORD_RESET } from './config/config.js';
import { CreditsService } from './modules/credits/credits.service.js';
import { registerPaymentRoutes } from './modules/payments/payments.routes.js';
import type { SubscriptionPort } from './modules/payments/payments.ports.js';
import { referenceKey } from './modules/payments/payments.reference.js';
import { PaymentsService } from './modules/payments/payments.service.js';
import { registerIdentityRoutes } from './modules/identities/identities.routes.js';
import { IdentitiesService } from './modules/identities/identities.service.js';
import { registerUserRoutes } from './modules/users/users.routes.js';
import { UsersService } from './modules/users/users.service.js';
import { registerWorkspaceRoutes } from './modules/workspaces/workspaces.routes.js';
import { WorkspacesService } from './modules/workspaces/workspaces.service.js';
import { registerJobRoutes } from './modules/jobs/jobs.routes.js';
import { JobsService } from './modules/jobs/jobs.service.js';
import type { MessageCharger } from './modules/projects/projects.charger.js';
import { registerProjectRoutes } from './modules/projects/projects.routes.js';
import { ProjectsService } from './modules/projects/projects.service.js';
import { QueueService } from './modules/queue/queue.service.js';
import { registerSecretRoutes } from './modules/secrets/secrets.routes.js';
import { SecretsService } from './modules/secrets/secrets.service.js';
import { SecretBox } from './lib/secret-box.js';
import { CreditsSdk } from './sdk/credits.sdk.js';
import { createServer } from './server.js';
import { VERSION } from './version.js';

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
  /** The dashboard's built files (default: dist/dashboard in the package; a missing folder is served as "not built"). */
  dashboardDir?: string;
}

export interface Services {
  users: UsersService;
  auth: AuthService;
  emailVerification: EmailVerificationService;
  mail: MailService;
  passwordReset: PasswordResetService;
  apiKeys: ApiKeysService;
  workspaces: WorkspacesService;
  tokens: TokenService;
  authenticator: Authenticator;
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
  /** Operator views over the whole database (the dashboard's overview and reconcile pages). */
  admin: AdminService;
  /** The typed in-process SDK: same validation, operations and idempotency as the HTTP routes. */
  sdk: { credits: CreditsSdk };
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
  const credits = new CreditsService(database, config.credits, clock, httpAnswers, invalidations);
  const billingConfig = config.billing ?? DEFAULT_BILLING;
  const catalog = new CatalogService(billingConfig);
  const billing: BillingServices = {
    catalog,
    subscriptions: new SubscriptionsService(database, catalog, credits, clock, invalidations),
    // Usage events batch like the ledger's own operations, with its settings.
    usage: new UsageService(database, credits, catalog, billingConfig, clock, httpAnswers, {
      maxBatch: config.credits.maxBatch ?? 256,
      maxParallel: config.credits.maxParallel ?? 1,
      ...(config.credits.maxBacklog ? { maxBacklog: config.credits.maxBacklog } : {}),
    }, invalidations, billingConfig.checkCache),
    guards: new GuardsService(billingConfig, clock),
  };
  const queue = new QueueService(database, clock, deps.logger, {}, invalidations);
  billing.subscriptions.registerWith(queue);
  const mailConfig = config.mail ?? DEFAULT_MAIL;
  const mailTransport = mailConfig.smtpUrl ? smtpTransport(mailConfig.smtpUrl) : logTransport(deps.logger);
  const mail = new MailService(secrets, queue, mailTransport, mailConfig.from, clock);
  const projects = new ProjectsService(clock, deps.messageCharger ?? new UsageMessageCharger(billing.usage));
  const services: Services = {
    users,
    tokens,
    auth: new AuthService(users, tokens, new RefreshTokens(config.auth.refreshTtlSeconds, clock)),
    mail,
    passwordReset: new PasswordResetService(config.passwordReset ?? DEFAULT_PASSWORD_RESET, mail, clock),
    emailVerification: new EmailVerificationService(config.emailVerification ?? DEFAULT_EMAIL_VERIFICATION, clock),
    apiKeys: new ApiKeysService(clock),
    workspaces: new WorkspacesService(),
    authenticator: new Authenticator(database.db, config.auth.serviceKey, tokens),
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
      clock,
      logger: deps.logger,
    }),
    queue,
    jobs: new JobsService(credits, queue, clock),
    projects,
    secretsStore: new SecretsService(secrets, projects),
    admin: new AdminService(database, clock),
    sdk: { credits: new CreditsSdk(credits) },
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
  registerHealthRoutes(server, routeDeps, database, {
    queue: () => services.queue.status(),
    cacheListening: () => invalidations.trusted,
    backlog: () => ({ ledger: services.credits.waiting, usage: services.billing.usage.waiting, max: config.credits.maxBacklog ?? 10_000 }),
  });
  registerAuthRoutes(server, routeDeps, services.auth);
  registerEmailVerificationRoutes(server, routeDeps, services.emailVerification);
  registerPasswordResetRoutes(server, routeDeps, services.passwordReset);
  registerMailRoutes(server, routeDeps, services.mail);
  server.addHook('onClose', async () => mailTransport.close());
  registerUserRoutes(server, routeDeps, services.users);
  registerApiKeyRoutes(server, routeDeps, services.apiKeys);
  registerIdentityRoutes(server, routeDeps, services.identities);
  registerWorkspaceRoutes(server, routeDeps, services.workspaces);
  registerCreditRoutes(server, routeDeps, services.credits, services.workspaces);
  registerBillingRoutes(server, routeDeps, services.billing);
  registerPaymentRoutes(server, routeDeps, services.payments);
  registerProjectRoutes(server, routeDeps, services.projects);
  registerSecretRoutes(server, routeDeps, services.secretsStore);
  registerAdminRoutes(server, routeDeps, services.admin);
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
